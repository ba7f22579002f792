"""Atomic, verified training checkpoints in ``RUN_DIR/checkpoints/``.

A checkpoint is a folder ``step_000123/`` holding ``model.safetensors`` (weights),
``training_state.pt`` (optimizer, scheduler, gradient scaler, each process's RNG states,
data-loader position, counters; loaded with ``weights_only=True``) and, written last,
``manifest.json`` (each file's size and SHA-256). It is written under a temporary name and
renamed into place, and ``latest`` (a one-line file) is replaced atomically afterwards, so a
crash at any moment leaves the previous checkpoint intact and ``latest`` pointing at a complete
one.

What the rename cannot guard against (a full disk or a lost node outside it, a run directory
copied half-way) the manifest catches: ``--recover`` verifies the newest checkpoint, and a
damaged one is reported in one line, moved aside to ``damaged_step_...`` (never deleted) and
the newest intact one is used instead. Checkpoints of earlier releases have no manifest; they
are checked for completeness only ("unverified") and still resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from declutr.core.atomic import atomic_file, atomic_write_text, staged_directory
from declutr.core.errors import DeclutrError, first_line

logger = logging.getLogger("declutr")

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
STATE = "training_state.pt"
MANIFEST_FORMAT = 1
_STEP_FOLDER = re.compile(r"^step_(\d+)$")
_ANY_FOLDER = re.compile(r"^(?:damaged_)?step_(\d+)(?:\.\d+)?$")  # a checkpoint, or one moved aside


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's Python, numpy and torch generator states (and its own CUDA device's, when
    ``device`` is one), as tensors and ints only."""
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
    if device is not None and device.type == "cuda":
        result["cuda_device"] = torch.cuda.get_rng_state(device)
    return result


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore :func:`rng_state`'s states; the CUDA state goes to ``device`` only (so a process
    restores its own generator whatever devices are visible). Checkpoints of earlier releases
    hold every visible device's state (``cuda``): the entry of ``device`` is used, if it has one."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached"])
    )
    torch.set_rng_state(state["torch"])
    if device is None or device.type != "cuda":
        return
    if "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif "cuda" in state and (device.index or 0) < len(state["cuda"]):
        torch.cuda.set_rng_state(state["cuda"][device.index or 0], device)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointStatus:
    """One checkpoint folder: its step, size on disk, and ``ok`` / ``unverified`` (no manifest:
    an earlier release's) / ``damaged`` with the ``problem`` (which file, what is wrong)."""

    folder: Path
    step: int | None
    bytes: int
    status: str
    problem: str = ""

    @property
    def usable(self) -> bool:
        return self.status != "damaged"


def inspect_checkpoint(folder: Path, checksums: bool = True) -> CheckpointStatus:
    """Check ``folder`` against its manifest (sizes, and SHA-256 with ``checksums``); without a
    manifest, that both files are present and readable as far as their headers and indexes go."""
    folder = Path(folder)
    match = _ANY_FOLDER.match(folder.name)
    step = int(match.group(1)) if match else None
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0

    def damaged(problem: str) -> CheckpointStatus:
        return CheckpointStatus(folder, step, size, "damaged", problem)

    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        for name in (WEIGHTS, STATE):
            if not (folder / name).is_file():
                return damaged(f"{folder / name} is missing")
        problem = _unreadable(folder)
        return damaged(problem) if problem else CheckpointStatus(folder, step, size, "unverified")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        return damaged(f"{manifest_file} is not a checkpoint manifest ({error})")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return damaged(f"{path} is missing")
        actual = path.stat().st_size
        if actual != expected["bytes"]:
            return damaged(f"{path} has {actual:,} bytes, its manifest says {expected['bytes']:,}")
        if checksums and file_digest(path) != expected["sha256"]:
            return damaged(f"{path} does not match its manifest's SHA-256 checksum")
    return CheckpointStatus(folder, step, size, "ok")


def _unreadable(folder: Path) -> str:
    """What is wrong with a manifest-less checkpoint's files as far as their headers show, or ''."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(folder / WEIGHTS), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:  # a cut file: "incomplete metadata, file not fully covered"
        return f"{folder / WEIGHTS} cannot be read ({first_line(error)})"
    try:
        with zipfile.ZipFile(folder / STATE):  # torch.save's zip: a cut file has no central directory
            pass
    except (zipfile.BadZipFile, OSError) as error:
        return f"{folder / STATE} cannot be read ({error})"
    return ""


class Checkpointer:
    """Saves and restores checkpoints under ``directory``; keeps the newest ``keep`` (``-1``: all)."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory)
        self.keep = keep

    def folders(self) -> list[Path]:
        """The checkpoint folders, newest step first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and _STEP_FOLDER.match(p.name)]
        return sorted(found, key=lambda p: int(_STEP_FOLDER.match(p.name).group(1)), reverse=True)

    def latest(self) -> Path | None:
        """The folder ``latest`` names, when it holds a training state (not verified)."""
        pointer = self.directory / "latest"
        if not pointer.is_file():
            return None
        folder = self.directory / pointer.read_text(encoding="utf-8").strip()
        return folder if (folder / STATE).is_file() else None

    def resume_point(self) -> Path | None:
        """The newest intact checkpoint, verified; each damaged newer one is reported in one line
        and moved aside (``damaged_step_...``), never deleted. ``None``: there is no checkpoint.
        Raises when there are checkpoints but none is intact."""
        folders = self.folders()
        pointed = self.latest()
        if pointed is not None and pointed in folders:  # the pointer's folder first, then by step
            folders.remove(pointed)
            folders.insert(0, pointed)
        damaged = []
        for folder in folders:
            status = inspect_checkpoint(folder)
            if status.usable:
                if damaged:
                    logger.warning("falling back to %s, the newest intact checkpoint", folder)
                return folder
            aside = self._move_aside(folder)
            damaged.append(status.problem)
            logger.warning("checkpoint %s is damaged: %s (kept as %s)", folder.name, status.problem, aside.name)
        if damaged:
            raise DeclutrError(
                f"--recover: no intact checkpoint in {self.directory} ({'; '.join(damaged)}); "
                "the damaged ones are kept as damaged_step_*; --force starts over"
            )
        return None

    def _move_aside(self, folder: Path) -> Path:
        target = folder.with_name(f"damaged_{folder.name}")
        suffix = 1
        while target.exists():
            suffix += 1
            target = folder.with_name(f"damaged_{folder.name}.{suffix}")
        os.replace(folder, target)
        return target

    def folder(self, step: int) -> Path:
        """Where the checkpoint of ``step`` is (or would be) written."""
        return self.directory / f"step_{step:08d}"

    def save(self, step: int, model: torch.nn.Module, training_state: dict[str, Any]) -> Path:
        from safetensors.torch import save_model

        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.folder(step)
        name = final.name
        with staged_directory(final) as staging:
            save_model(model, str(staging / WEIGHTS))
            torch.save(training_state, staging / STATE)
            files = {
                path.name: {"bytes": path.stat().st_size, "sha256": file_digest(path)}
                for path in (staging / WEIGHTS, staging / STATE)
            }
            manifest = {"format": MANIFEST_FORMAT, "step": step, "files": files}
            with atomic_file(staging / MANIFEST, fsync=True) as file:  # last: its presence means complete
                file.write(json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(self.directory / "latest", name + "\n")
        self._prune(keep_also=final)
        return final

    def _prune(self, keep_also: Path) -> None:
        for stale in self.directory.glob(".step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        if self.keep < 0:
            return
        folders = self.folders()
        for folder in folders[max(self.keep, 1) :]:
            if folder != keep_also:
                shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def load(folder: Path, model: torch.nn.Module) -> dict[str, Any]:
        """Load weights into ``model`` and return the training state."""
        from safetensors.torch import load_model

        try:
            load_model(model, str(folder / WEIGHTS), strict=True, device=str(next(model.parameters()).device))
            return torch.load(folder / STATE, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError) as error:
            raise DeclutrError(f"--recover: cannot load checkpoint {folder} ({first_line(error)})") from error


def list_checkpoints(run_dir: Path, checksums: bool = True) -> list[CheckpointStatus]:
    """Every checkpoint of a run directory (and each damaged one moved aside), newest first."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    statuses = [
        inspect_checkpoint(p, checksums) for p in directory.iterdir() if p.is_dir() and _ANY_FOLDER.match(p.name)
    ]
    return sorted(statuses, key=lambda s: (s.step or -1, s.folder.name), reverse=True)
