"""Atomic, complete training checkpoints in ``RUN_DIR/checkpoints/``.

A checkpoint is a folder ``step_000123/`` holding ``model.safetensors`` (weights) and
``training_state.pt`` (optimizer, scheduler, gradient scaler, RNG states, data-loader
position, counters; loaded with ``weights_only=True``). It is written under a temporary name
and renamed into place, and ``latest`` (a one-line file) is replaced atomically afterwards, so
a crash at any moment leaves the previous checkpoint intact and ``latest`` pointing at a
complete one.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from declutr.core.atomic import atomic_write_text, staged_directory


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states, as tensors and ints only."""
    version, state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    result = {
        "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        result["cuda"] = torch.cuda.get_rng_state_all()
    return result


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Saves and restores checkpoints under ``directory``; keeps the newest ``keep`` (``-1``: all)."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory)
        self.keep = keep

    def latest(self) -> Path | None:
        pointer = self.directory / "latest"
        if not pointer.is_file():
            return None
        folder = self.directory / pointer.read_text(encoding="utf-8").strip()
        return folder if (folder / "training_state.pt").is_file() else None

    def save(self, step: int, model: torch.nn.Module, training_state: dict[str, Any]) -> Path:
        from safetensors.torch import save_model

        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:08d}"
        final = self.directory / name
        with staged_directory(final) as staging:
            save_model(model, str(staging / "model.safetensors"))
            torch.save(training_state, staging / "training_state.pt")
        atomic_write_text(self.directory / "latest", name + "\n")
        self._prune(keep_also=final)
        return final

    def _prune(self, keep_also: Path) -> None:
        for stale in self.directory.glob(".step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        if self.keep < 0:
            return
        folders = sorted(p for p in self.directory.glob("step_*") if p.is_dir())
        for folder in folders[: max(0, len(folders) - max(self.keep, 1))]:
            if folder != keep_also:
                shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def load(folder: Path, model: torch.nn.Module) -> dict[str, Any]:
        """Load weights into ``model`` and return the training state."""
        from safetensors.torch import load_model

        load_model(model, str(folder / "model.safetensors"), strict=True, device=str(next(model.parameters()).device))
        return torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
