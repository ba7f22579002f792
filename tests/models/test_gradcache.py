"""The cached contrastive step (``contrastive_chunk_size``): the loss and every gradient of the
uncached step, with dropout on, for DeCLUTR and supervised SimCSE; training runs reach the same
weights; the key is checked, and unknown to models that are not a ``ContrastiveModel``."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from declutr.core.construct import build
from declutr.core.errors import ConfigurationError
from declutr.models import Model
from declutr.testing import make_tiny_model, tiny_declutr_config, train_tiny, write_documents
from tests.fixtures.declutr_process import run_declutr
from tests.models.modelhelpers import make_batch
from tests.models.test_distributed_gradient import ANCHORS as GATHER_ANCHORS
from tests.models.test_distributed_gradient import POSITIVES as GATHER_POSITIVES
from tests.models.test_distributed_gradient import build_model as build_gather_model
from tests.models.test_distributed_gradient import free_port, local_batch

ANCHORS = [
    "The captain came back.",
    "A letter from her mother was on the table by the window, and the garden was white with the first snow.",
    "They had not seen the mountain since the summer.",
    "The doctor went to the church on the island in the morning before the ship came back to the village.",
    "The river was still.",
]
POSITIVES = [
    ["the captain", "came back"],
    ["her mother was on the table by the window", "the garden was white"],
    ["the mountain", "They had not seen the mountain since the summer."],
    ["the church on the island in the morning", "the ship"],
    ["the river", "was still"],
]
CHUNK_SIZES = [1, 3, 64]  # 64: more than any group of the batch


def declutr_batch(tokenizer) -> dict:
    return make_batch(tokenizer, ANCHORS, POSITIVES, masked=True)


def simcse_batch(tokenizer) -> dict:
    batch = make_batch(tokenizer, ANCHORS, [[group[1]] for group in POSITIVES], masked=False)
    batch["negatives"] = make_batch(tokenizer, [group[0] for group in POSITIVES], None, masked=False)["anchors"]
    return batch


CASES = {
    "declutr": ({"type": "declutr"}, declutr_batch),
    # the masked-LM term as the mean of per-anchor means: unequal token weights through the cache
    "declutr_mlm_mean_groups": ({"type": "declutr", "mlm_mean_groups": len(ANCHORS)}, declutr_batch),
    "declutr_contrastive_only": (
        {"type": "declutr", "mlm_weight": 0},
        lambda t: make_batch(t, ANCHORS, POSITIVES, masked=False),
    ),
    "simcse_supervised": (
        {
            "type": "simcse",
            "loss": {"type": "info_nce", "hard_negative_weight": 0.5},
            "feedforward": {"hidden_dims": 16, "dropout": 0.1},
        },
        simcse_batch,
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: thread start-up would cost more than the arithmetic (and the runs are deterministic anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_BUILT: dict[str, Model] = {}


def build_model(path, tokenizer, dtype: torch.dtype, **config) -> Model:
    """The model of ``config`` (built once per test session, then copied), in train mode: dropout on."""
    key = json.dumps([str(path), config], sort_keys=True)
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = build(Model, {"encoder": {"model_name": str(path)}, **config}, extras={"tokenizer": tokenizer})
    return copy.deepcopy(_BUILT[key]).to(dtype).train()


def step(model: Model, batch: dict, cached: bool, seed: int = 7) -> tuple[dict, dict]:
    """Loss terms and gradients of one step; the same dropout seed for both kinds of step."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    if cached:
        output = model.training_step(batch, lambda loss: loss.backward())
    else:
        output = model(batch)
        output["loss"].backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {key: value.detach() for key, value in output.items()}, gradients


def assert_same(actual: tuple[dict, dict], expected: tuple[dict, dict], tolerance: float) -> None:
    (output, gradients), (expected_output, expected_gradients) = actual, expected
    assert output.keys() == expected_output.keys()
    for key in output:
        torch.testing.assert_close(output[key], expected_output[key], rtol=tolerance, atol=tolerance, msg=key)
    assert gradients.keys() == expected_gradients.keys() and len(gradients) > 10
    # one scale for all parameters: a tiny random model has gradients that are zero up to rounding
    scale = max(g.abs().max().item() for g in expected_gradients.values())
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=tolerance, atol=tolerance * scale, msg=name)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", list(CASES))
def test_the_cached_step_equals_the_uncached_step_with_dropout_on(
    case, dtype, tolerance, tiny_roberta, roberta_tokenizer
):
    config, make = CASES[case]
    batch = make(roberta_tokenizer)
    model = build_model(tiny_roberta, roberta_tokenizer, dtype, **config)
    for chunk_size in CHUNK_SIZES:
        # the uncached step on the same chunks draws the same dropout masks: it is the reference
        model.contrastive_chunk_size = chunk_size
        assert_same(step(model, batch, cached=True), step(model, batch, cached=False), tolerance)
    # chunks larger than the batch are the sub-batches of the model without the cache
    model.contrastive_chunk_size = None
    uncached = step(model, batch, cached=False)
    model.contrastive_chunk_size = CHUNK_SIZES[-1]
    assert_same(step(model, batch, cached=True), uncached, tolerance)


@pytest.mark.parametrize("case", list(CASES))
def test_without_dropout_every_chunk_size_gives_the_gradient_of_the_model_without_the_cache(
    case, tiny_roberta, roberta_tokenizer
):
    config, make = CASES[case]
    batch = make(roberta_tokenizer)
    model = build_model(tiny_roberta, roberta_tokenizer, torch.float64, **config).eval()
    expected = step(model, batch, cached=False)
    for chunk_size in CHUNK_SIZES:
        model.contrastive_chunk_size = chunk_size
        assert len(model.sub_batches(batch["anchors"]["attention_mask"])) >= (len(ANCHORS) if chunk_size == 1 else 1)
        assert_same(step(model, batch, cached=True), expected, 1e-10)


def test_the_cached_step_leaves_the_random_state_as_the_uncached_step(tiny_roberta, roberta_tokenizer):
    batch = declutr_batch(roberta_tokenizer)
    model = build_model(tiny_roberta, roberta_tokenizer, torch.float32, type="declutr", contrastive_chunk_size=2)
    after = []
    for cached in (True, False):
        step(model, batch, cached)
        after.append(torch.get_rng_state())
    assert torch.equal(*after)


#: bf16 autocast: both steps round differently (measured on these cases: per-parameter up to 3e-2 of
#: the largest gradient entry, 1.8e-2 relative in norm; losses equal, being float32)
BF16_TOLERANCE = 5e-2


@pytest.mark.parametrize("case", list(CASES))
def test_under_bfloat16_autocast_the_cached_step_gives_every_gradient_of_the_uncached_step(
    case, tiny_roberta, roberta_tokenizer
):
    config, make = CASES[case]
    batch = make(roberta_tokenizer)
    model = build_model(tiny_roberta, roberta_tokenizer, torch.float32, contrastive_chunk_size=2, **config)
    results = []
    for cached in (True, False):  # the same chunks and dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(step(model, batch, cached))
    (output, gradients), (expected_output, expected_gradients) = results
    for key in output:
        torch.testing.assert_close(output[key], expected_output[key], rtol=1e-6, atol=0, msg=key)
    # every parameter has its gradient (an autocast cast reused from the no-grad pass would leave
    # each Linear's weight without one), and each is the uncached step's within bf16's rounding
    names = {id(parameter): name for name, parameter in model.named_parameters()}  # tied weights: one name
    linear = {names[id(module.weight)] for module in model.modules() if isinstance(module, torch.nn.Linear)}
    assert gradients.keys() == expected_gradients.keys() and linear <= gradients.keys()
    assert all(gradients[name].abs().max() > 0 for name in linear)
    scale = max(g.abs().max().item() for g in expected_gradients.values())
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=0, atol=BF16_TOLERANCE * scale, msg=name)
    flat, expected = (torch.cat([g[name].flatten() for name in sorted(g)]) for g in (gradients, expected_gradients))
    assert (flat - expected).norm() <= BF16_TOLERANCE * expected.norm()


def test_the_cast_cache_of_the_no_grad_pass_is_dropped_before_the_passes_with_autograd(
    tiny_roberta, roberta_tokenizer, monkeypatch
):
    """Version-proof: on torch without pytorch#165068 autocast would reuse the no-grad pass's casts."""
    batch = declutr_batch(roberta_tokenizer)
    model = build_model(tiny_roberta, roberta_tokenizer, torch.float32, type="declutr", contrastive_chunk_size=2)
    events = []
    clear, encode = torch.clear_autocast_cache, model.encode_chunk
    monkeypatch.setattr(torch, "clear_autocast_cache", lambda: (events.append("clear"), clear())[1])
    monkeypatch.setattr(
        model, "encode_chunk", lambda *a, **k: (events.append(torch.is_grad_enabled()), encode(*a, **k))[1]
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step(model, batch, cached=True)
    first_with_grad = events.index(True)
    assert "clear" in events[events.index(False) : first_with_grad] and True not in events[:first_with_grad]
    assert False not in events[first_with_grad:]


# ------------------------------------------------------------------ training runs through the Trainer


@pytest.fixture(scope="module")
def dropout_free_model(tmp_path_factory):
    """A tiny checkpoint without dropout: chunk sizes below the batch then compute the same network."""
    path = make_tiny_model(tmp_path_factory.mktemp("no-dropout"), "roberta")
    config_file = path / "config.json"
    settings = json.loads(config_file.read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config_file.write_text(json.dumps(settings))
    return path


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def train_run(model_path, data, run_dir, chunk_size, **trainer) -> tuple[list[dict], dict]:
    config = tiny_declutr_config(model_path, data, max_steps=4)
    config["data_loader"]["batch_size"] = 4
    config["model"]["contrastive_chunk_size"] = chunk_size
    config["trainer"].update(trainer)
    records = train_tiny(config, run_dir)
    return [r for r in records if "loss" in r], final_weights(run_dir)


def assert_same_run(actual, expected) -> None:
    (records, weights), (expected_records, expected_weights) = actual, expected
    assert [r["step"] for r in records] == [r["step"] for r in expected_records] == [1, 2, 3, 4]
    for record, expected_record in zip(records, expected_records):
        for key in ("loss", "mlm_loss", "contrastive_loss"):
            assert record[key] == pytest.approx(expected_record[key], rel=1e-5), key
    assert weights.keys() == expected_weights.keys()
    # AdamW divides by the root of the second moment, so a gradient entry that is zero up to
    # rounding moves its weight by up to lr: 4 steps of lr 1e-3 leave such entries apart by ~2e-6
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, expected_weights[name], rtol=1e-5, atol=1e-5, msg=name)


def test_four_training_steps_reach_the_same_weights_cached_and_uncached(tiny_roberta, tmp_path):
    data = write_documents(tmp_path / "documents.jsonl")
    # dropout on: chunks as large as the batch draw the uncached step's masks
    assert_same_run(
        train_run(tiny_roberta, data, tmp_path / "cached", 64), train_run(tiny_roberta, data, tmp_path / "plain", None)
    )


def test_small_chunks_with_gradient_accumulation_reach_the_same_weights(dropout_free_model, tmp_path):
    data = write_documents(tmp_path / "documents.jsonl")
    accumulate = {"gradient_accumulation_steps": 2, "grad_norm": 1.0}
    assert_same_run(
        train_run(dropout_free_model, data, tmp_path / "cached", 1, **accumulate),
        train_run(dropout_free_model, data, tmp_path / "plain", None, **accumulate),
    )


# ----------------------------------------------------------------------------------- two processes


def gather_worker(rank: int, port: int, path: str, output: str) -> None:
    from declutr.modules.distributed import average_gradients

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results = {}
        for scale_fix in (True, False):
            model, tokenizer = build_gather_model(path, scale_fix)
            model.contrastive_chunk_size = 1
            ddp = torch.nn.parallel.DistributedDataParallel(model)  # as the trainer wraps it
            model.training_step(local_batch(tokenizer, rank, 2), lambda loss: loss.backward())
            average_gradients(ddp.parameters())
            results[scale_fix] = {name: p.grad.clone() for name, p in model.named_parameters()}
        torch.save(results, os.path.join(output, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_gather_global_negatives_through_the_cache(tiny_roberta, tmp_path):
    mp.spawn(gather_worker, args=(free_port(), str(tiny_roberta), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    model, tokenizer = build_gather_model(str(tiny_roberta), scale_fix=False)
    model(make_batch(tokenizer, GATHER_ANCHORS, GATHER_POSITIVES, masked=False))["loss"].backward()
    single = {name: p.grad for name, p in model.named_parameters()}
    scale = max(g.abs().max().item() for g in single.values())
    for name, expected in single.items():
        for rank in ranks:  # scale_fix: the single-process gradient; without: 1 / world size of it
            torch.testing.assert_close(rank[True][name], expected, atol=1e-6 * scale, rtol=1e-4)
            torch.testing.assert_close(rank[False][name], expected / 2, atol=1e-6 * scale, rtol=1e-4)


# ------------------------------------------------------------------------------------------ errors


@pytest.fixture
def model_without_cache():
    """A plugin-style model, registered for the test: its own constructor and forward, no text groups."""
    from declutr.core.registrable import Registrable

    class ModelWithoutCache(Model):
        def __init__(self, encoder: dict, tokenizer=None):
            raise AssertionError("validation must refuse the key before anything is built")

    Model.register("test_model_without_cache")(ModelWithoutCache)
    yield "test_model_without_cache"
    del Registrable._registry[Model]["test_model_without_cache"]


def test_bad_chunk_sizes_and_models_without_the_cache_are_config_errors(model_without_cache):
    """Only a ``ContrastiveModel`` takes the key: elsewhere it is an unknown key, named with the allowed ones."""
    from declutr.training.experiment import validate_experiment

    def problems(model: dict) -> list[str]:
        config = {
            "dataset_reader": {"type": "declutr", "tokenizer": {"model_name": "m"}},
            "model": model,
            "trainer": {},
        }
        with pytest.raises(ConfigurationError) as error:
            validate_experiment(config)
        return error.value.problems

    encoder = {"model_name": "m"}
    assert problems({"type": "declutr", "encoder": encoder, "contrastive_chunk_size": 0}) == [
        "model.contrastive_chunk_size: must be at least 1, got 0"
    ]
    for name in ("isbert", model_without_cache):
        (problem,) = problems({"type": name, "encoder": encoder, "contrastive_chunk_size": 8})
        assert problem.startswith('model: unexpected key "contrastive_chunk_size" (allowed: encoder'), problem


def test_in_python_a_bad_chunk_size_or_a_model_without_the_hooks_is_refused(tiny_roberta):
    from declutr.models import SimCSEModel
    from declutr.modules import TransformerEncoder
    from declutr.modules.heads import EmbeddingHead
    from declutr.modules.poolers import MeanPooler

    encoder = TransformerEncoder(str(tiny_roberta))
    with pytest.raises(TypeError, match="contrastive_chunk_size"):
        Model(encoder, EmbeddingHead(MeanPooler()), contrastive_chunk_size=4)
    model = SimCSEModel(encoder=encoder)
    with pytest.raises(ValueError, match="contrastive_chunk_size must be at least 1"):
        model.contrastive_chunk_size = 0
    with pytest.raises(ValueError, match="contrastive_chunk_size must be at least 1"):
        SimCSEModel(encoder=encoder, contrastive_chunk_size=0)


def test_declutr_config_reports_the_refused_key_in_one_line(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text(
        '{\n  dataset_reader: { type: "isbert", tokenizer: { model_name: "m" } },\n'
        '  model: { type: "isbert", encoder: { model_name: "m" } },\n  trainer: {},\n}\n'
    )
    result = run_declutr("config", str(config), "--overrides", '{"model.contrastive_chunk_size": 32}', cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith('Error: model: unexpected key "contrastive_chunk_size" (allowed: encoder'), line
    assert line.endswith("(from --overrides)"), line
