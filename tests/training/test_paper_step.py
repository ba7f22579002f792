"""The paper's 4-GPU optimizer step on any number of processes (training_config/declutr_*_paper_step.jsonnet):
one process and four gloo processes, no scale_fix, dropout off, follow the same loss curve and
reach the same weights over 4 steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed

from tests.fixtures.declutr_process import free_port, run_declutr, tiny_model_without_dropout

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)

CONFIG = Path(__file__).resolve().parents[2] / "training_config" / "declutr_small_paper_step.jsonnet"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from declutr.testing import write_documents

    root = tmp_path_factory.mktemp("paper-step")
    model = tiny_model_without_dropout(root / "model")  # one process and four see the same network
    # 64 documents: 4 steps of the paper's 16 documents
    return root, model, write_documents(root / "docs.jsonl", count=64, words=200)


def train(setup, name: str, gpus: int, overrides: dict | None = None) -> Path:
    root, model, data = setup
    run = root / name
    settings = {
        "train_data_path": str(data),
        "dataset_reader.span_sampler.min_span_len": 8,  # tiny spans, so 2 * 32 * 2 = 128 tokens suffice
        "dataset_reader.span_sampler.max_span_len": 32,
        "trainer.optimizer.lr": 1e-3,  # large enough for 4 steps to move the weights visibly
        "trainer.use_amp": False,
        "trainer.log_every": 1,
        "trainer.show_progress": False,
        **({"distributed": {"cuda_devices": [-1] * gpus, "master_port": free_port()}} if gpus > 1 else {}),
        **(overrides or {}),
    }
    args = ["--ext-var", f"GPUS={gpus}", "--ext-var", f"TRANSFORMER_MODEL={model}", "--overrides", json.dumps(settings)]
    result = run_declutr("train", CONFIG, "-s", run, *args)
    assert result.returncode == 0, result.stderr
    return run


def curve(run: Path) -> list[tuple[float, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["contrastive_loss"], r["mlm_loss"]) for r in records if "lr" in r]


def largest_difference(a, b) -> float:
    return max(abs(x - y) / abs(y) for pair_a, pair_b in zip(a, b, strict=True) for x, y in zip(pair_a, pair_b))


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "model" / "model.safetensors")


def largest_weight_difference(a: Path, b: Path) -> float:
    """max over tensors of max |a - b| / max |b|, attention key biases left out: softmax ignores a
    shift of every key, so their gradient is zero up to rounding, which Adam scales to full steps."""
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    compared = [k for k in first if not k.endswith("key.bias")]
    assert len(compared) > 20
    return max(((first[k] - second[k]).abs().max() / second[k].abs().max().clamp(min=1e-12)).item() for k in compared)


def test_one_process_trains_the_four_process_step(setup):
    one = train(setup, "one", gpus=1)  # 16 documents, contrastive weight 1/4, 4 masked-LM group means
    four = train(setup, "four", gpus=4)  # 4 documents each, contrastive weight 1, each rank's own mean
    config = json.loads((one / "config.json").read_text())
    assert config["data_loader"]["batch_size"] == 16 and config["model"]["contrastive_weight"] == 0.25
    assert config["model"]["mlm_mean_groups"] == 4 and config["model"]["scale_fix"] is False

    reference = curve(four)
    assert len(reference) == 4
    assert largest_difference(curve(one), reference) < 1e-5
    assert largest_weight_difference(one, four) < 1e-5

    # the same step through the cached contrastive step (chunks of 3 texts) on one process
    cached = train(setup, "cached", gpus=1, overrides={"model.contrastive_chunk_size": 3})
    assert largest_difference(curve(cached), reference) < 1e-5
    assert largest_weight_difference(cached, four) < 1e-5

    # the plain one-process step on the same 16 documents (weights 1:1, one masked-LM mean) is
    # another objective: the test tells the two apart
    plain = train(setup, "plain", gpus=1, overrides={"model.contrastive_weight": 1, "model.mlm_mean_groups": None})
    assert largest_difference(curve(plain), reference) > 1e-3
    assert largest_weight_difference(plain, four) > 100 * max(largest_weight_difference(one, four), 1e-8)
