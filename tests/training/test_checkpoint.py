"""Checkpoints are atomic: a crash while saving leaves the previous one complete and current."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from declutr.training.checkpoint import Checkpointer, rng_state, set_rng_state


def test_save_load_and_keep_last(tmp_path):
    model = torch.nn.Linear(3, 2)
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        checkpointer.save(step, model, {"step": step})
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000002", "step_00000003"]
    assert checkpointer.latest().name == "step_00000003"
    other = torch.nn.Linear(3, 2)
    state = Checkpointer.load(checkpointer.latest(), other)
    assert state == {"step": 3}
    torch.testing.assert_close(other.weight, model.weight)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    checkpointer = Checkpointer(tmp_path, keep=2)
    checkpointer.save(1, model, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpointer.save(2, model, {"step": 2})
    monkeypatch.undo()
    assert checkpointer.latest().name == "step_00000001"
    assert Checkpointer.load(checkpointer.latest(), model) == {"step": 1}
    checkpointer.save(3, model, {"step": 3})  # the stale temporary folder is cleaned up
    assert not list(tmp_path.glob(".step_*"))


def test_rng_state_round_trip_through_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = rng_state()
    torch.save(state, tmp_path / "s.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
