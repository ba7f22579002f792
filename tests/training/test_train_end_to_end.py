"""``declutr train`` end to end on a tiny model: run directory, resume after SIGKILL, the rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.declutr_process import run_declutr

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CONFIG = """
local m = std.extVar("M");
{
  dataset_reader: { type: "declutr", tokenizer: { model_name: m }, mlm_probability: 0.15,
                    span_sampler: { num_anchors: 2, num_positives: 2, min_span_len: 8, max_span_len: 32 } },
  train_data_path: std.extVar("DATA"),
  validation_data_path: std.extVar("DATA"),
  data_loader: { batch_size: 2 },
  model: { type: "declutr", encoder: { model_name: m }, loss: { type: "nt_xent", temperature: 0.05 } },
  trainer: { num_epochs: 2, optimizer: { type: "adamw", lr: 1e-3, correct_bias: false, weight_decay: 0.1 },
             learning_rate_scheduler: { type: "slanted_triangular" }, grad_norm: 1.0, log_every: 2,
             checkpoint_every: 1, keep_checkpoints: 2, show_progress: false },
  random_seed: 3,
}
"""


@pytest.fixture(scope="module")
def experiment(tiny_roberta, documents_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = root / "exp.jsonnet"
    config.write_text(CONFIG)
    return root, config, documents_file, tiny_roberta


def train(experiment, run_dir, *extra, env=None):
    _, config, data, model = experiment
    return run_declutr(
        "train",
        config,
        "-s",
        run_dir,
        "--ext-var",
        f"M={model}",
        "--ext-var",
        f"DATA={data}",
        *extra,
        env=env,
        extra_path=[FIXTURES / "killer"],
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_train_resume_after_sigkill_reaches_the_same_weights(experiment):
    root = experiment[0]
    reference = train(experiment, root / "reference")
    assert reference.returncode == 0, reference.stderr
    run = root / "reference"
    assert {"config.json", "out.log", "metrics.jsonl", "checkpoints", "model"} <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "lr" in r]
    assert logged and all(
        {"step", "epoch", "loss", "contrastive_loss", "mlm_loss", "lr", "grad_norm", "tokens_per_second", "tokens_seen"}
        <= set(r)
        for r in logged
    )
    assert any("validation_loss" in r for r in records)
    assert len(list((run / "checkpoints").glob("step_*"))) == 2

    killed = train(
        experiment, root / "killed", "--include-package", "declutr_kill_at_step", env={"DECLUTR_KILL_AT_STEP": "5"}
    )
    assert killed.returncode == -9
    assert not (root / "killed" / "model").exists()
    refused = train(experiment, root / "killed")
    assert refused.returncode == 1 and "--recover" in refused.stderr and "Traceback" not in refused.stderr
    recovered = train(experiment, root / "killed", "--recover")
    assert recovered.returncode == 0, recovered.stderr
    expected, actual = weights(run), weights(root / "killed")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_the_cached_contrastive_step_resumes_exactly_after_sigkill(experiment):
    root = experiment[0]
    cached = ("--overrides", '{"model.contrastive_chunk_size": 1}')  # dropout on: the RNG replay must resume too
    reference = train(experiment, root / "cached_reference", *cached)
    assert reference.returncode == 0, reference.stderr
    killed = train(
        experiment,
        root / "cached_killed",
        *cached,
        "--include-package",
        "declutr_kill_at_step",
        env={"DECLUTR_KILL_AT_STEP": "5"},
    )
    assert killed.returncode == -9
    recovered = train(experiment, root / "cached_killed", *cached, "--recover")
    assert recovered.returncode == 0, recovered.stderr
    expected, actual = weights(root / "cached_reference"), weights(root / "cached_killed")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_run_directory_rules(experiment, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    result = train(experiment, tmp_path / "run", "--recover")
    assert result.returncode == 1 and "nothing to recover" in result.stderr
    result = train(experiment, tmp_path / "run", "--force", "--overrides", '{"trainer.num_epochs": 1}')
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "run" / "something").exists() and (tmp_path / "run" / "model" / "config.json").is_file()
    result = train(experiment, tmp_path / "run", "--recover", "--overrides", '{"trainer.num_epochs": 3}')
    assert result.returncode == 1 and "trainer.num_epochs" in result.stderr


def test_encoder_reads_a_run_directory(experiment):
    from declutr import Encoder

    run = experiment[0] / "reference"
    if not (run / "model").is_dir():
        pytest.skip("the reference run did not complete")
    torch.testing.assert_close(
        torch.from_numpy(Encoder(run)(["A river house."])), torch.from_numpy(Encoder(run / "model")(["A river house."]))
    )
