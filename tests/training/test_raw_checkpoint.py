"""The shipped raw checkpoint (models/bert-mini-gutenberg): what it is, and where it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.declutr_process import run_declutr

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models" / "bert-mini-gutenberg"


def test_the_raw_checkpoint_loads_as_a_masked_lm_and_as_an_encoder():
    from transformers import AutoModelForMaskedLM

    from declutr.inference.encoder import Encoder

    size = sum(path.stat().st_size for path in CHECKPOINT.rglob("*") if path.is_file())
    assert size <= 25_000_000
    model = AutoModelForMaskedLM.from_pretrained(str(CHECKPOINT))
    assert type(model).__name__ == "BertForMaskedLM"
    assert model.config.vocab_size == 8192 and model.config.max_position_embeddings == 128
    embeddings = Encoder(CHECKPOINT).embed(["It was a dark and stormy night.", "The sea was calm."])
    assert embeddings.shape == (2, model.config.hidden_size)
    card = (CHECKPOINT / "README.md").read_text()
    assert "declutr train training_config/pretrain_small.jsonnet" in card


def test_the_first_steps_of_the_shipped_command_reproduce_its_losses(shared_data, tmp_path):
    """Provenance: the command of the model card, from scratch with the same seed, gives the
    shipped metrics' first logging window (mean of steps 1-20) again."""
    shipped = [json.loads(line) for line in (CHECKPOINT / "pretraining_metrics.jsonl").read_text().splitlines()]
    first = next(record for record in shipped if "mlm_loss" in record and "lr" in record)
    assert first["step"] == 20
    overrides = {"validation_data_path": None, "trainer": {"max_steps": 20, "checkpoint_every": None}}
    result = run_declutr(
        "train", "training_config/pretrain_small.jsonnet", "-s", tmp_path / "run",
        "--ext-var", f"DATA_DIR={shared_data}", "--overrides", json.dumps(overrides),
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rerun = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    again = next(record for record in rerun if "mlm_loss" in record and "lr" in record)
    assert again["step"] == 20 and again["lr"] == pytest.approx(first["lr"], rel=1e-9)
    # the same computation; only floating-point kernels of another CPU may differ in the last bits
    assert again["mlm_loss"] == pytest.approx(first["mlm_loss"], abs=1e-4)
    assert again["grad_norm"] == pytest.approx(first["grad_norm"], rel=1e-3)
