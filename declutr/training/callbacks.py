"""Callbacks: small hooks into the training loop, registered by name, added by plugins.

The trainer always runs ``progress_bar``, ``metrics_log`` and ``nan_guard`` (their settings are
trainer keys); ``trainer.callbacks`` adds more. A callback stops training by setting
``trainer.stop_reason``. Callbacks with state (``state_dict``/``load_state_dict``) are saved in
checkpoints so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable


class TrainingError(DeclutrError):
    """Training stopped because of the run itself (e.g. a non-finite loss)."""


class Callback(Registrable):
    """Hooks called by the trainer on every rank; use ``trainer.is_primary`` for rank-0-only work."""

    def on_start(self, trainer) -> None:
        """Before the first step (after a resume, before the first new step)."""

    def on_step(self, trainer, metrics: dict[str, Any]) -> None:
        """After each optimizer step; ``metrics`` has the step's loss terms and grad norm as device
        tensors (reading one, e.g. ``float()``, makes the host wait for the device) and lr."""

    def on_log(self, trainer, metrics: dict[str, Any]) -> None:
        """Every ``log_every`` steps with metrics averaged since the last log (reduced over ranks)."""

    def on_validation(self, trainer, metrics: dict[str, Any]) -> None:
        """After a validation pass; ``metrics`` has ``validation_*`` keys."""

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """After each epoch; ``metrics`` includes the data loader's counters (documents skipped)."""

    def on_end(self, trainer, metrics: dict[str, Any]) -> None:
        """After the last step, before the final export; entries added to ``metrics`` go to ``metrics.json``."""

    def on_interrupt(self, trainer) -> None:
        """Training stops before its end, at a checkpoint (preempted): release what ``on_end`` would,
        without end-of-run work; the run continues later with ``--recover``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@Callback.register("progress_bar")
class ProgressBar(Callback):
    """A tqdm bar: step, loss terms, learning rate, real tokens/s, ETA, documents skipped.

    The figures are those of the last logging step (``log_every``): reading a step's losses
    every step would make the host wait for the device.
    """

    def __init__(self):
        self.bar = None
        self.shown: dict[str, Any] = {}  # the last logged figures
        self.selection: dict[str, str] = {}  # the last validation figures, shown beside them

    def on_start(self, trainer) -> None:
        if trainer.is_primary and trainer.show_progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=trainer.total_steps, initial=trainer.step, desc="training", unit="step", dynamic_ncols=True
            )

    def on_step(self, trainer, metrics) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, trainer, metrics) -> None:
        if self.bar is None:
            return
        shown = {k.removesuffix("_loss"): f"{v:.4f}" for k, v in metrics.items() if k.endswith("loss")}
        shown["lr"] = f"{metrics['lr']:.2e}"
        if metrics.get("tokens_per_second"):
            shown["tok/s"] = f"{metrics['tokens_per_second']:.0f}"
        skipped = sum(v for k, v in trainer.data_loader_stats().items() if k.startswith("documents_skipped"))
        if skipped:
            shown["skipped"] = skipped
        self.shown = shown
        self.bar.set_postfix({**shown, **self.selection}, refresh=False)

    def on_validation(self, trainer, metrics) -> None:
        """Show the validation loss and each scoring callback's selection ``metric`` from now on."""
        if self.bar is None:
            return
        watched = ["validation_loss", *(getattr(c, "metric", None) for c in trainer.callbacks)]
        self.selection.update({key: f"{metrics[key]:.4g}" for key in watched if key in metrics})
        self.bar.set_postfix({**self.shown, **self.selection}, refresh=False)

    def on_end(self, trainer, metrics) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_interrupt(self, trainer) -> None:
        self.on_end(trainer, {})


@Callback.register("metrics_log")
class MetricsLog(Callback):
    """Appends one JSON object per logging step (and per validation / epoch end) to ``metrics.jsonl``."""

    def _write(self, trainer, record: dict[str, Any]) -> None:
        if trainer.is_primary:
            with open(Path(trainer.serialization_dir) / "metrics.jsonl", "a", encoding="utf-8") as file:
                file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def on_log(self, trainer, metrics) -> None:
        self._write(trainer, metrics)

    def on_validation(self, trainer, metrics) -> None:
        self._write(trainer, {"step": trainer.step, "epoch": trainer.epoch, **metrics})

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        self._write(trainer, {"step": trainer.step, "epoch": epoch, "event": "epoch_end", **metrics})


def check_finite(trainer, metrics: dict[str, Any]) -> None:
    """Raise ``TrainingError`` when a loss term of ``metrics`` (floats averaged over the steps
    since the last log) is not finite, naming the last good checkpoint."""
    bad = [k for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v)]
    if bad:
        latest = trainer.checkpointer.latest()
        where = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise TrainingError(
            f"non-finite {', '.join(bad)} by step {trainer.step} (epoch {trainer.epoch}); training stopped "
            f"and {where}; lower the learning rate or check the data"
        )


@Callback.register("nan_guard")
class NanGuard(Callback):
    """Stops at a non-finite loss, before anything is checkpointed from that step.

    The losses are checked at every logging step and, by the trainer, before every checkpoint
    (averages of the steps since the last log: a non-finite step makes them non-finite), so the
    step itself never waits for the device.
    """

    def on_log(self, trainer, metrics) -> None:
        check_finite(trainer, metrics)


@Callback.register("early_stopping")
class EarlyStopping(Callback):
    """Stops when a validation metric has not improved for ``patience`` validations.

    # Parameters
    patience: validations without improvement before stopping.
    metric: a validation metric: ``validation_loss`` (or another ``validation_*`` loss term) or one
        reported by a callback, e.g. ``senteval_STSBenchmark_dev_spearman`` (mode ``max``).
    mode: ``min`` or ``max``. min_delta: the smallest change that counts as an improvement.
    """

    def __init__(
        self,
        patience: int = 3,
        metric: str = "validation_loss",
        mode: Literal["min", "max"] = "min",
        min_delta: float = 0.0,
    ):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience, self.metric, self.mode, self.min_delta = patience, metric, mode, min_delta
        self.best: float | None = None
        self.bad = 0

    def on_start(self, trainer) -> None:
        provided = {name for callback in trainer.callbacks for name in getattr(callback, "reported_metrics", ())}
        if self.metric.startswith("validation_"):
            if trainer.validation_data_loader is None:
                raise TrainingError(f'early_stopping watches "{self.metric}" but there is no validation_data_path')
        elif self.metric not in provided:
            known = ", ".join(sorted(provided | {"validation_loss"}))
            raise TrainingError(f'early_stopping: no callback reports "{self.metric}" (known: {known})')

    def on_validation(self, trainer, metrics) -> None:
        if self.metric not in metrics:  # another kind of validation report
            return
        value = metrics[self.metric]
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                trainer.stop_reason = f"early stopping: {self.metric} did not improve for {self.patience} validations"

    def state_dict(self):
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state):
        self.best, self.bad = state["best"], state["bad"]
