"""The training step: no host reads of device tensors, bf16 autocast close to float32, float16
on CPU warns and trains in float32, and an out-of-memory step ends in one line that loses nothing."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import pytest
import torch

from declutr.testing import tiny_declutr_config
from declutr.training import Experiment
from declutr.training.run import set_seeds
from tests.fixtures.declutr_process import run_declutr

#: the Tensor methods that copy a value to the host (each waits for the device on CUDA)
HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__index__", "__bool__")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def build(tiny_roberta, documents_file, tmp_path):
    """A trainer of the tiny DeCLUTR experiment on CPU, with ``trainer`` keys overridden."""

    def make(run: str = "run", **trainer):
        config = tiny_declutr_config(tiny_roberta, documents_file, max_steps=4)
        config["trainer"].update(trainer)
        set_seeds(13)
        return Experiment(config).build(tmp_path / run, device=-1)

    return make


def host_reads(monkeypatch) -> list[str]:
    """Patch the host-read methods of ``torch.Tensor`` to record where declutr code calls them."""
    calls: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            calls.append(f"{_name} at {Path(caller.filename).name}:{caller.lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def test_a_new_trainer_has_its_state_before_training(build):
    """``training_state`` (what a checkpoint saves) works on a trainer that has not trained yet."""
    state = build().training_state()
    assert (state["step"], state["epoch"], state["batches_in_epoch"]) == (0, 0, 0)


def test_the_step_reads_no_tensor_back_to_the_host(build, monkeypatch):
    trainer = build()
    trainer.model.train()
    trainer.data_loader.set_epoch(0)
    groups = trainer._micro_batch_groups()
    trainer._train_step(next(groups))  # a first step outside the count (lazy optimizer state)
    micro_batches = next(groups)
    trainer.tokens_seen = 0
    calls = host_reads(monkeypatch)
    metrics = trainer._train_step(micro_batches)
    monkeypatch.undo()
    assert calls == []
    assert trainer.tokens_seen == sum(
        sum(g["lengths"]) for b in micro_batches for g in b.values() if isinstance(g, dict)
    )
    assert all(isinstance(metrics[key], torch.Tensor) for key in ("loss", "contrastive_loss", "mlm_loss", "grad_norm"))


def first_step(trainer) -> dict[str, float]:
    """The loss terms and gradient norm of the trainer's first step, as floats."""
    trainer.model.train()
    trainer.data_loader.set_epoch(0)
    metrics = trainer._train_step(next(trainer._micro_batch_groups()))
    return {key: float(value) for key, value in metrics.items() if key != "lr"}


def test_a_bf16_autocast_step_agrees_with_the_float32_step(build):
    reference = first_step(build("fp32"))
    mixed_trainer = build("bf16", use_amp=True, amp_dtype="bfloat16")
    assert mixed_trainer.use_amp and mixed_trainer.amp_dtype == torch.bfloat16
    mixed = first_step(mixed_trainer)
    assert reference.keys() == mixed.keys() == {"loss", "contrastive_loss", "mlm_loss", "grad_norm"}
    for key, value in reference.items():  # bf16 keeps 8 bits of mantissa: ~3 digits per operation
        assert mixed[key] == pytest.approx(value, rel=3e-2), key
    assert mixed != reference  # bf16 did run


def test_float16_on_cpu_warns_and_trains_in_float32(build, caplog):
    reference = first_step(build("fp32"))
    with caplog.at_level(logging.WARNING, logger="declutr"):
        trainer = build("fp16", use_amp=True, amp_dtype="float16")
    assert not trainer.use_amp and not trainer.scaler.is_enabled()
    assert any(
        "amp_dtype float16" in r.getMessage() and "mixed precision is off" in r.getMessage() for r in caplog.records
    )
    assert first_step(trainer) == reference


@pytest.fixture
def oom_experiment(tiny_roberta, documents_file, tmp_path):
    config = tiny_declutr_config(tiny_roberta, documents_file, max_steps=4)
    config["trainer"]["checkpoint_every"] = 2
    path = tmp_path / "oom.json"
    path.write_text(json.dumps(config))
    return path


def test_out_of_memory_is_one_line_and_recover_continues_from_the_last_checkpoint(oom_experiment, tmp_path):
    plugins = [ROOT / "tests" / "fixtures" / "killer"]
    reference = run_declutr("train", oom_experiment, "-s", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    run = tmp_path / "oom"
    failed = run_declutr(
        "train",
        oom_experiment,
        "-s",
        run,
        "--include-package",
        "declutr_oom_at_step",
        env={"DECLUTR_OOM_AT_STEP": "3"},
        extra_path=plugins,
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if "out of memory" in line]
    assert len(lines) == 1, failed.stderr
    message = lines[0]
    assert "training step 3 (epoch 0; batch anchors 2x" in message
    for key in (
        "lower data_loader.batch_size (2)",
        "lower model.max_padding_fraction (0.2)",
        "set model.encoder.gradient_checkpointing true",
        "set model.contrastive_chunk_size (e.g. 8; null now)",  # a plain declutr step: the cache would help
    ):
        assert key in message
    assert "step_00000002" in message and "--recover" in message
    assert not (run / "model").exists()
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_00000002"]

    recovered = run_declutr("train", oom_experiment, "-s", run, "--recover")
    assert recovered.returncode == 0, recovered.stderr
    from safetensors.torch import load_file

    expected, actual = (load_file(d / "model" / "model.safetensors") for d in (tmp_path / "reference", run))
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)
