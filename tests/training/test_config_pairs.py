"""Settings in two parts of a config that each pass on their own but contradict each other are
config errors before anything is built (``cross_key_problems``): ``declutr config`` names both key
paths in one line, instead of a ValueError at the first step."""

from __future__ import annotations

import copy

import pytest

from declutr.core.errors import ConfigurationError
from declutr.training.experiment import validate_experiment
from tests.fixtures.declutr_process import run_declutr

DECLUTR = {
    "dataset_reader": {"type": "declutr", "tokenizer": {"model_name": "m"}},
    "data_loader": {"batch_size": 2},
    "model": {"type": "declutr", "encoder": {"model_name": "m"}},
    "trainer": {},
}
SIMCSE = {**DECLUTR, "dataset_reader": {"type": "simcse_unsupervised", "tokenizer": {"model_name": "m"}}}
SIMCSE["model"] = {"type": "simcse", "encoder": {"model_name": "m"}}
ISBERT = {**DECLUTR, "dataset_reader": {"type": "isbert", "tokenizer": {"model_name": "m"}}}
ISBERT["model"] = {"type": "isbert", "encoder": {"model_name": "m"}}


def problems(base: dict, **changes) -> list[str]:
    """What ``validate_experiment`` (``declutr config``'s check) finds in ``base`` with ``changes``
    (``parent__key=value``: the key set, to null too)."""
    config = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = config
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = value
    try:
        validate_experiment(config)
    except ConfigurationError as error:
        return error.problems
    return []


def test_declutr_config_names_both_keys_of_masking_off_with_the_masked_lm_term_on(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text(
        "{\n"
        '  dataset_reader: { type: "declutr", tokenizer: { model_name: "m" }, mlm_probability: null },\n'
        '  model: { type: "declutr", encoder: { model_name: "m" } },\n'
        "  trainer: {},\n"
        "}\n"
    )
    result = run_declutr("config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert line.startswith("Error: model.mlm_weight: 1.0 asks for the masked-LM term, but "), line
    assert "dataset_reader.mlm_probability is null" in line and "set model.mlm_weight to 0" in line, line
    # the fix it names passes
    fixed = run_declutr("config", str(config), "--overrides", '{"model.mlm_weight": 0}', cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr


SUPERVISED = {**SIMCSE, "dataset_reader": {"type": "simcse_supervised", "tokenizer": {"model_name": "m"}}}
UNMASKED = {"type": "declutr", "tokenizer": {"model_name": "m"}, "mlm_probability": None}
TWO_PROCESSES = {"cuda_devices": [-1, -1]}


@pytest.mark.parametrize(
    "base, changes, expected",
    [
        # the model's terms against what the reader's batches carry: (key path, what it says)
        (
            DECLUTR,
            {"dataset_reader__type": "sentences"},
            [
                ("model.mlm_weight: 1.0", 'but dataset_reader.type "sentences" does not mask'),
                ("model.contrastive_weight: 1.0", 'but dataset_reader.type "sentences" gives no positives'),
            ],
        ),
        (
            DECLUTR,
            {"dataset_reader__type": "windows"},
            [("model.contrastive_weight: 1.0", 'but dataset_reader.type "windows" gives no positives')],
        ),
        (
            {**SIMCSE, "dataset_reader": DECLUTR["dataset_reader"]},
            {},
            [("dataset_reader.mlm_probability: 0.15", 'masks the anchors, but model.type "simcse" has no masked-LM')],
        ),
        (
            {**ISBERT, "dataset_reader": DECLUTR["dataset_reader"]},
            {"dataset_reader__mlm_probability": 0.3},
            [("dataset_reader.mlm_probability: 0.3", 'masks the anchors, but model.type "isbert" has no masked-LM')],
        ),
        (
            SIMCSE,
            {"model__loss": {"type": "info_nce", "hard_negative_weight": 1.0}},
            [("model.loss.hard_negative_weight: 1.0", 'but dataset_reader.type "simcse_unsupervised" gives none')],
        ),
        (
            DECLUTR,
            {"model__loss": {"type": "info_nce", "hard_negative_weight": 1.0}},
            [("model.loss.hard_negative_weight: 1.0", 'but model.type "declutr" passes none to its loss')],
        ),
        # the anchors of a step against the losses
        (SIMCSE, {"data_loader__batch_size": 1}, [("data_loader.batch_size: 1 records x 1", "= 1 anchor a step")]),
        (ISBERT, {"data_loader__batch_size": 1}, [("data_loader.batch_size: 1 records x 1", "= 1 sentence a step")]),
        (
            DECLUTR,
            {"model__mlm_mean_groups": 3, "distributed": TWO_PROCESSES},
            [("model.mlm_mean_groups: 3", "a step has 8 (2 records x 2 (dataset_reader.span_sampler.num_anchors) x 2")],
        ),
        (
            DECLUTR,
            {"model__mlm_mean_groups": 4, "data_loader__batch_size": 4},
            [("model.mlm_mean_groups: 4", "step of an epoch can have 2 (data_loader.drop_last is false)")],
        ),
        # validation batches meet the model too
        (
            DECLUTR,
            {"validation_data_path": "valid.jsonl", "validation_dataset_reader": UNMASKED},
            [("model.mlm_weight: 1.0", "but validation_dataset_reader.mlm_probability is null")],
        ),
    ],
)
def test_contradicting_keys_are_config_errors_naming_both(base, changes, expected):
    found = problems(base, **changes)
    assert len(found) == len(expected), found
    for problem, (start, says) in zip(found, expected):
        assert problem.startswith(start) and says in problem, problem


@pytest.mark.parametrize(
    "base, changes",
    [
        (DECLUTR, {}),
        (DECLUTR, {"dataset_reader__mlm_probability": None, "model__mlm_weight": 0}),  # contrastive-only
        (DECLUTR, {"dataset_reader__type": "windows", "model__contrastive_weight": 0}),  # pretraining
        (DECLUTR, {"model__mlm_weight": 0}),  # masked anchors, no term: the model warns (an ablation)
        (DECLUTR, {"model__mlm_mean_groups": 4, "data_loader__batch_size": 4, "data_loader__drop_last": True}),
        (DECLUTR, {"model__mlm_mean_groups": 2, "data_loader__batch_size": 3}),  # 2 anchors a record: always even
        (DECLUTR, {"data_loader__batch_size": 1, "distributed": TWO_PROCESSES}),  # 1 x 2 x 2 anchors
        (SIMCSE, {}),
        (SUPERVISED, {"model__loss": {"type": "info_nce", "hard_negative_weight": 1}, "data_loader__batch_size": 1}),
        (ISBERT, {}),
        ({**DECLUTR, "trainer": {"type": "no_op"}}, {"dataset_reader__type": "sentences"}),  # nothing is trained
    ],
)
def test_settings_that_agree_pass(base, changes):
    assert problems(base, **changes) == []
