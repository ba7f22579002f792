"""The training loop: one page, top to bottom (autocast/scaler, the model's training step per
micro-batch with DDP sync only on the last, clip, step, schedule, log, validate, checkpoint).
Building the pieces is ``declutr.training.experiment``'s; the export after training is
``declutr.training.run``'s."""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import torch

from declutr.core.construct import Lazy
from declutr.core.registrable import Registrable
from declutr.modules.distributed import average_gradients
from declutr.training.callbacks import Callback, MetricsLog, NanGuard, ProgressBar, TrainingError, check_finite
from declutr.training.checkpoint import Checkpointer, rng_state, set_rng_state
from declutr.training.optimizers import Optimizer
from declutr.training.preemption import DEFAULT_SIGNALS, SignalWatch, TrainingPreempted, signal_numbers
from declutr.training.schedulers import LearningRateScheduler
from declutr.training.util import count_tokens, move_to, unwrap
from declutr.training.util import reduce_mean as _reduce_mean

logger = logging.getLogger("declutr")


class Trainer(Registrable):
    """Trains a model on a data loader; receives the built pieces at run time."""

    default_implementation = "default"
    runtime_args = (
        "model",
        "data_loader",
        "validation_data_loader",
        "serialization_dir",
        "rank",
        "world_size",
        "device",
    )

    def train(self, checkpoint: Path | None = None) -> dict[str, Any]:
        raise NotImplementedError


def select_device(cuda_device: int | None) -> torch.device:
    """``None``: the first CUDA device if there is one, else CPU; ``-1``: CPU; ``n``: ``cuda:n``."""
    if cuda_device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if cuda_device < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available() or cuda_device >= torch.cuda.device_count():
        from declutr.core.errors import ConfigurationError

        raise ConfigurationError(f"trainer.cuda_device: CUDA device {cuda_device} is not available on this machine")
    return torch.device(f"cuda:{cuda_device}")


@Trainer.register("default")
@Trainer.register("gradient_descent")
class GradientDescentTrainer(Trainer):
    """Gradient-descent training on CPU, one CUDA device or several (DDP).

    # Parameters
    optimizer: the optimizer (default ``adamw``). learning_rate_scheduler: default constant.
    num_epochs, max_steps: stop after whichever comes first (default one epoch).
    gradient_accumulation_steps: micro-batches per optimizer step.
    grad_norm: clip the global gradient L2 norm to this value (null: no clipping).
    use_amp: mixed precision; amp_dtype ``float16`` (CUDA only, with a gradient scaler) or ``bfloat16`` (CUDA or CPU).
    cuda_device: null = automatic, -1 = CPU, n = cuda:n (a run-time ``device``, each process's own when
        distributed, takes precedence).
    callbacks: extra callbacks (progress bar, metrics log and NaN guard always run).
    log_every: steps between ``metrics.jsonl`` records. checkpoint_every: steps between checkpoints
        (one is also written at every epoch end). keep_checkpoints: how many to keep (-1: all).
    validation_every: steps between validation passes (null: at each epoch end only).
    show_progress: draw the tqdm bar. find_unused_parameters: passed to DDP.
    preemption_signals: signals that stop training at a checkpoint after the current step (exit
        code 75; ``--recover`` continues exactly); ``[]`` keeps their default action.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        serialization_dir: str,
        optimizer: Lazy[Optimizer] | None = None,
        learning_rate_scheduler: Lazy[LearningRateScheduler] | None = None,
        num_epochs: int | None = None,
        max_steps: int | None = None,
        gradient_accumulation_steps: int = 1,
        grad_norm: float | None = None,
        use_amp: bool = False,
        amp_dtype: Literal["float16", "bfloat16"] = "float16",
        cuda_device: int | None = None,
        callbacks: list[Callback] | None = None,
        log_every: int = 10,
        checkpoint_every: int | None = 500,
        keep_checkpoints: int = 2,
        validation_every: int | None = None,
        validation_data_loader=None,
        show_progress: bool = True,
        find_unused_parameters: bool = False,
        preemption_signals: list[str] = DEFAULT_SIGNALS,
        rank: int = 0,
        world_size: int = 1,
        device: int | None = None,
    ):
        for name, value in [
            ("num_epochs", num_epochs),
            ("max_steps", max_steps),
            ("log_every", log_every),
            ("gradient_accumulation_steps", gradient_accumulation_steps),
            ("checkpoint_every", checkpoint_every),
            ("validation_every", validation_every),
        ]:
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if grad_norm is not None and grad_norm <= 0:
            raise ValueError(f"grad_norm must be positive, got {grad_norm}")
        self.preemption = SignalWatch(signal_numbers(preemption_signals))
        self.serialization_dir = Path(serialization_dir)
        self.rank = rank
        self.world_size = world_size
        self.is_primary = rank == 0
        self.device = select_device(cuda_device if device is None else device)  # run time wins: each process's own
        self.data_loader = data_loader
        for loader in (data_loader, validation_data_loader):  # page-locked batches only for a CUDA device
            if hasattr(loader, "pin_memory"):
                loader.pin_memory = self.device.type == "cuda"
        self.validation_data_loader = validation_data_loader
        self.accumulation = gradient_accumulation_steps
        self.grad_norm = grad_norm
        self.log_every = log_every
        self.show_progress = show_progress
        self.checkpoint_every = checkpoint_every
        self.validation_every = validation_every

        batches = len(data_loader)
        if batches == 0:
            from declutr.core.errors import DeclutrError

            raise DeclutrError("the training data yields no batches (too few usable documents for one batch?)")
        self.steps_per_epoch = math.ceil(batches / self.accumulation)
        if num_epochs is None and max_steps is None:
            num_epochs = 1
        if num_epochs is None:
            num_epochs = math.ceil(max_steps / self.steps_per_epoch)
        self.num_epochs = num_epochs
        self.total_steps = min(max_steps or math.inf, num_epochs * self.steps_per_epoch)

        self.model = model.to(self.device)
        parameters = list(unwrap(self.model).named_parameters())
        self.optimizer = (optimizer or Lazy(lambda **kw: Optimizer.by_name("adamw")(**kw))).construct(
            model_parameters=parameters
        )
        scheduler = learning_rate_scheduler or Lazy(lambda **kw: LearningRateScheduler.by_name("constant")(**kw))
        self.scheduler = scheduler.construct(optimizer=self.optimizer, num_training_steps=self.total_steps)
        self.amp_dtype = torch.float16 if amp_dtype == "float16" else torch.bfloat16
        self.use_amp = use_amp and (self.device.type == "cuda" or self.amp_dtype == torch.bfloat16)
        if use_amp and not self.use_amp:
            logger.warning("use_amp with amp_dtype float16 is set but training runs on CPU: mixed precision is off")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # collectives of host values (the stop flag, RNG states) on the CPU, whatever the backend
        self.cpu_group = None
        if world_size > 1 and torch.distributed.get_backend() != "gloo":
            self.cpu_group = torch.distributed.new_group(backend="gloo")
        if world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=find_unused_parameters
            )
        self.callbacks: list[Callback] = [ProgressBar(), MetricsLog(), NanGuard(), *(callbacks or [])]
        self.checkpointer = Checkpointer(self.serialization_dir / "checkpoints", keep_checkpoints)
        # the state of the run (``training_state`` saves it, ``restore`` loads it)
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.tokens_seen = 0  # since the last logging step
        self.tokens_trained = 0  # this process's real tokens since the run began (checkpointed)
        self.validated_at = -1  # the step of the last validation pass
        self.stop_reason: str | None = None
        self.last_log: dict[str, Any] = {}

    # -- helpers --------------------------------------------------------------------------------
    def data_loader_stats(self) -> dict[str, int]:
        stats = getattr(self.data_loader, "stats", None)
        return dict(stats()) if callable(stats) else {}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.use_amp else nullcontext()

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _rng_states(self) -> list[dict[str, Any]]:
        """Every process's RNG states, in rank order (each process's own CUDA device's only)."""
        own = rng_state(self.device)
        if self.world_size == 1:
            return [own]
        states: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(states, own, group=self.cpu_group)
        return states

    def training_state(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "step": self.step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "tokens_trained": self.tokens_trained,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self._rng_states(),
            "data_loader": self.data_loader.state_dict(),
            "callbacks": [c.state_dict() for c in self.callbacks],
        }

    def save_checkpoint(self) -> Path | None:
        """Every rank takes part (the RNG states are gathered); rank 0 writes. The folder on rank 0."""
        state = self.training_state()
        folder = self.checkpointer.save(self.step, unwrap(self.model), state) if self.is_primary else None
        if self.world_size > 1:
            torch.distributed.barrier()
        return folder

    def restore(self, folder: Path) -> None:
        from declutr.core.errors import DeclutrError

        state = Checkpointer.load(folder, unwrap(self.model))
        saved_world = state.get("world_size")  # absent: a checkpoint of an earlier release
        if saved_world is not None and int(saved_world) != self.world_size:
            raise DeclutrError(
                f"--recover: {folder} was written by a run of {int(saved_world)} process(es), this one has "
                f"{self.world_size}; the data each process reads and its random streams depend on that number, "
                f"so the run cannot continue exactly: recover with {int(saved_world)} process(es)"
            )
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        self.tokens_trained = int(state.get("tokens_trained", 0))  # 0: a checkpoint of an earlier release
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.data_loader.load_state_dict(state["data_loader"])
        for callback, callback_state in zip(self.callbacks, state["callbacks"]):
            callback.load_state_dict(callback_state)
        states = state["rng"]  # one per rank; a single dict in checkpoints of earlier releases
        set_rng_state(states[self.rank] if isinstance(states, list) else states, self.device)
        logger.info("resumed from %s at step %d (epoch %d)", folder, self.step, self.epoch)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Average loss terms over the validation data, in eval mode (reduced over ranks)."""
        model = self.model
        model.eval()
        totals: dict[str, float] = {}
        batches = 0
        torch_state = torch.get_rng_state()
        self.validation_data_loader.set_epoch(0)
        for batch in self.validation_data_loader:
            with self._autocast():
                output = model(move_to(batch, self.device))
            for key, value in output.items():
                if key.endswith("loss"):
                    totals[key] = totals.get(key, 0.0) + float(value)
            batches += 1
        torch.set_rng_state(torch_state)
        model.train()
        metrics = {f"validation_{k}": v / max(1, batches) for k, v in totals.items()}
        return _reduce_mean(metrics, self.world_size, self.device)

    # -- the loop -------------------------------------------------------------------------------
    def _micro_batch_groups(self):
        """Groups of up to ``gradient_accumulation_steps`` batches, to the end of the epoch."""
        group = []
        for batch in self.data_loader:
            group.append(batch)
            if len(group) == self.accumulation:
                yield group
                group = []
        if group:
            yield group

    def _forward_backward(self, batch: dict, parts: int, sync: bool) -> dict[str, torch.Tensor]:
        """The model's training step on one micro-batch (its loss divided by ``parts``, DDP
        gradient sync only with ``sync``); returns the detached loss terms, still on the device."""

        def backward(loss: torch.Tensor) -> None:
            self.scaler.scale(loss / parts).backward()

        with nullcontext() if sync else self.model.no_sync(), self._autocast():
            output = unwrap(self.model).training_step(move_to(batch, self.device), backward, forward=self.model)
        return {key: value.detach() for key, value in output.items() if key.endswith("loss")}

    def _train_step(self, micro_batches: list) -> dict[str, Any]:
        """Forward/backward over the micro-batches (DDP syncs on the last only), clip, step, schedule.

        Nothing here reads a device tensor back to the host: the loss terms and the gradient norm
        stay device tensors (read once per logging step by ``_read``), the token count and the
        sub-batch plans come from the host-side ``lengths`` the loader computed with the batch.
        """
        terms: dict[str, torch.Tensor] = {}
        for index, batch in enumerate(micro_batches):
            tokens = count_tokens(batch)
            self.tokens_seen += tokens
            self.tokens_trained += tokens
            sync = index == len(micro_batches) - 1 or self.world_size == 1
            for key, value in self._forward_backward(batch, len(micro_batches), sync).items():
                value = value.float() / len(micro_batches)
                terms[key] = terms[key] + value if key in terms else value
        if unwrap(self.model).syncs_own_gradients:  # DDP's forward did not run: average as its backward would
            average_gradients(self.model.parameters())
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.grad_norm or math.inf)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.batches_in_epoch += len(micro_batches)
        return {**terms, "lr": lr, "grad_norm": norm.detach()}

    def _guarded_step(self, micro_batches: list) -> dict[str, Any]:
        """``_train_step``, with an out-of-memory error turned into one line saying what to lower."""
        try:
            return self._train_step(micro_batches)
        except torch.OutOfMemoryError:
            pass  # leave the handler first, so its traceback (and the step's tensors) can be freed
        self.optimizer.zero_grad(set_to_none=True)
        raise TrainingError(out_of_memory_message(self, micro_batches)) from None

    def _log(self, window: dict[str, Any], steps: int, seconds: float, tokens: int) -> dict[str, Any]:
        averaged = _reduce_mean({k: v / steps for k, v in _read(window).items()}, self.world_size, self.device)
        counts = _reduce_mean({"t": float(tokens), "seen": float(self.tokens_trained)}, self.world_size, self.device)
        tokens = counts["t"] * self.world_size
        self.last_log = {
            "step": self.step,
            "epoch": self.epoch,
            **averaged,
            "tokens_per_second": tokens / max(seconds, 1e-9),
            "tokens_seen": round(counts["seen"] * self.world_size),  # real tokens so far, all processes
            **self.data_loader_stats(),
        }
        self._call("on_log", self.last_log)
        return self.last_log

    def _check_window(self, window: dict[str, Any], steps: int) -> None:
        """Before a checkpoint: the steps since the last log must have finite losses (one host read)."""
        if steps:
            check_finite(self, {k: v / steps for k, v in _read(window).items()})

    def report(self, metrics: dict[str, Any]) -> None:
        """Hand validation-like metrics (from ``validate`` or a callback's evaluation) to every callback."""
        self._call("on_validation", metrics)

    def _maybe_validate(self, due: bool) -> dict[str, float]:
        """Validate (and report) when ``due``, there is validation data and this step was not
        validated yet; the metrics, or nothing."""
        if not due or self.validation_data_loader is None or self.validated_at == self.step:
            return {}
        metrics = self.validate()
        self.report(metrics)
        self.validated_at = self.step
        return metrics

    def _stop_if_preempted(self, window: dict[str, Any], steps: int) -> None:
        """After a step: when any process received a preemption signal, every process stops here,
        at a checkpoint (written unless this step already has one)."""
        received = self.preemption.agreed(self.cpu_group, self.world_size)
        if received is None:
            return
        folder = self.checkpointer.folder(self.step)
        if not (self.checkpoint_every and self.step % self.checkpoint_every == 0):
            self._check_window(window, steps)
            folder = self.save_checkpoint() or folder
        self._call("on_interrupt")
        raise TrainingPreempted(
            f"preempted by {received.name} after step {self.step} of {self.total_steps}: checkpoint {folder} "
            f"written; rerun the same declutr train command with --recover to continue exactly"
        )

    def train(self, checkpoint: Path | None = None) -> dict[str, Any]:
        with self.preemption.installed():
            return self._train(checkpoint)

    def _train(self, checkpoint: Path | None = None) -> dict[str, Any]:
        if checkpoint is not None:
            self.restore(checkpoint)
        self.model.train()
        self._call("on_start")
        window: dict[str, Any] = {}
        window_steps = 0
        window_start = time.perf_counter()
        final: dict[str, Any] = {}
        while self.epoch < self.num_epochs and self.step < self.total_steps and self.stop_reason is None:
            if self.batches_in_epoch == 0:  # a fresh epoch; otherwise the restored loader resumes mid-epoch
                self.data_loader.set_epoch(self.epoch)
            for micro_batches in self._micro_batch_groups():
                step_metrics = self._guarded_step(micro_batches)
                self._call("on_step", step_metrics)
                for key, value in step_metrics.items():
                    window[key] = window[key] + value if key in window else value
                window_steps += 1
                if self.step % self.log_every == 0 or self.step == self.total_steps:
                    final.update(self._log(window, window_steps, time.perf_counter() - window_start, self.tokens_seen))
                    window = {}
                    window_steps = 0
                    self.tokens_seen = 0
                    window_start = time.perf_counter()
                final.update(
                    self._maybe_validate(bool(self.validation_every) and self.step % self.validation_every == 0)
                )
                if self.step >= self.total_steps or self.stop_reason is not None:
                    break
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self._check_window(window, window_steps)
                    self.save_checkpoint()
                self._stop_if_preempted(window, window_steps)
            if self.batches_in_epoch >= len(self.data_loader):
                final.update(self._maybe_validate(due=True))
                self._call("on_epoch_end", self.epoch, self.data_loader_stats())
                self.epoch += 1
                self.batches_in_epoch = 0
            self._check_window(window, window_steps)
            self.save_checkpoint()
        final.update(self._maybe_validate(due=True))
        if self.stop_reason:
            logger.info("%s", self.stop_reason)
        self._call("on_end", final)
        return {**final, "step": self.step, "epoch": self.epoch, "stop_reason": self.stop_reason}


def _read(values: dict[str, Any]) -> dict[str, Any]:
    """The device tensors among ``values`` as floats, in one transfer (a logging step's one host read)."""
    keys = [key for key, value in values.items() if isinstance(value, torch.Tensor)]
    floats = torch.stack([values[key].float() for key in keys]).tolist() if keys else []
    return {**values, **dict(zip(keys, floats))}


def batch_shape(batch: dict) -> str:
    """``"anchors 8x512, positives 8x496"``: each text group's padded size."""
    return ", ".join(
        f"{name} {'x'.join(str(n) for n in group['input_ids'].shape)}"
        for name, group in batch.items()
        if isinstance(group, dict) and "input_ids" in group
    )


def out_of_memory_message(trainer: GradientDescentTrainer, micro_batches: list) -> str:
    """One line: where memory ran out, how much was in use, and the model's and loader's keys that
    lower it (``Model.memory_hints``: only keys the model being trained has)."""
    model = unwrap(trainer.model)
    peak = ""
    if trainer.device.type == "cuda":
        peak = f", peak {torch.cuda.max_memory_allocated(trainer.device) / 2**30:.2f} GiB allocated on {trainer.device}"
        torch.cuda.empty_cache()
    hints = [f"lower data_loader.batch_size ({getattr(trainer.data_loader, 'batch_size', '?')})", *model.memory_hints()]
    checkpoint = trainer.checkpointer.latest()
    resume = (
        f"the last checkpoint is {checkpoint} (--recover continues from it)"
        if checkpoint
        else "no checkpoint was written yet"
    )
    return (
        f"out of memory in training step {trainer.step + 1} (epoch {trainer.epoch}; batch {batch_shape(micro_batches[0])}"
        f"{peak}); to use less memory: {', '.join(hints)}; {resume}"
    )


@Trainer.register("no_op")
class NoOpTrainer(Trainer):
    """No training: the run directory gets the model as it was built (for untrained baselines)."""

    def __init__(
        self,
        model: torch.nn.Module,
        serialization_dir: str,
        data_loader=None,
        validation_data_loader=None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.model = model
        self.is_primary = rank == 0

    def train(self, checkpoint: Path | None = None) -> dict[str, Any]:
        return {"step": 0}
