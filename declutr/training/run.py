"""``declutr train``: the run directory, one or several processes, then build and train.

Run directory: ``config.json`` (resolved), ``out.log``, ``metrics.jsonl``, ``checkpoints/``,
``model/`` (the export), ``training.png`` (when matplotlib is installed).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from declutr.core.atomic import atomic_write_text
from declutr.core.errors import DeclutrError
from declutr.core.plugins import imported_plugins
from declutr.training.devices import check_devices
from declutr.training.experiment import Experiment, default_backend
from declutr.training.preemption import DEFAULT_SIGNALS, TrainingPreempted, forwarded, signal_numbers

logger = logging.getLogger("declutr")


def differing_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Key paths where two resolved configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new))
            for d in differing_keys(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        ]
    return [] if old == new else [path or "config"]


#: keys that may change between a run and its ``--recover``: where the processes meet, how batches
#: are prepared and shown; the run continues exactly whatever their values
RESUMABLE_KEYS = frozenset(
    {
        "distributed.master_address",
        "distributed.master_port",
        "data_loader.num_workers",
        "data_loader.prefetch_factor",
        "data_loader.progress",
        "data_loader.index_workers",
        "validation_data_loader.index_workers",
        "trainer.show_progress",
    }
)


def prepare_run_dir(serialization_dir: Path, config: dict, recover: bool, force: bool) -> bool:
    """Apply the run-directory rules; returns whether a previous run is to be continued."""
    if recover and force:
        raise DeclutrError("--recover and --force cannot be used together")
    exists = serialization_dir.is_dir() and any(serialization_dir.iterdir())
    if exists and not (recover or force):
        raise DeclutrError(
            f"{serialization_dir} is not empty; pass --recover to continue its training or --force to start over"
        )
    if exists and force:
        shutil.rmtree(serialization_dir)
    if recover:
        stored = serialization_dir / "config.json"
        if not stored.is_file():
            raise DeclutrError(f"--recover: {stored} does not exist; nothing to recover")
        differences = [
            key
            for key in differing_keys(json.loads(stored.read_text(encoding="utf-8")), config)
            if key not in RESUMABLE_KEYS
        ]
        if differences:
            raise DeclutrError(
                f"--recover: the config differs from {stored} at {', '.join(differences[:5])}; "
                "recover with the same config (or --force to start over)"
            )
    serialization_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(serialization_dir / "config.json", json.dumps(config, indent=2) + "\n")
    return recover


def set_seeds(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(serialization_dir: Path, primary: bool) -> None:
    log = logging.getLogger("declutr")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    if primary:
        file_handler = logging.FileHandler(serialization_dir / "out.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(stream)


def build_and_train(
    experiment: Experiment,
    serialization_dir: Path,
    recover: bool,
    rank: int = 0,
    world_size: int = 1,
    device: int | None = None,
) -> dict:
    """Build one process's trainer (:meth:`Experiment.build`) and train; rank 0 writes the export
    and the plot."""
    import torch

    from declutr.training.util import unwrap

    setup_logging(serialization_dir, rank == 0)
    set_seeds(experiment.random_seed)
    trainer = experiment.build(serialization_dir, rank, world_size, device)
    latest = resume_point(trainer, rank, world_size) if recover else None
    if recover and latest is None:
        logger.info(
            "no complete checkpoint in %s: starting from the beginning",
            serialization_dir / "checkpoints",
        )
    metrics = trainer.train(latest)
    if rank == 0:
        export_dir = serialization_dir / "model"
        unwrap(trainer.model).export(export_dir)
        atomic_write_text(serialization_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        plot_metrics(serialization_dir)
        logger.info("model exported to %s", export_dir)
    if world_size > 1:
        torch.distributed.barrier()
    return metrics


def resume_point(trainer, rank: int, world_size: int) -> Path | None:
    """The checkpoint to continue from: rank 0 verifies (and sets damaged ones aside), every
    rank gets its choice, or its one-line error."""
    import torch.distributed as dist

    checkpointer = getattr(trainer, "checkpointer", None)
    if checkpointer is None:
        return None
    choice: list[Any] = [None, None]  # folder, error
    if rank == 0:
        try:
            folder = checkpointer.resume_point()
            choice[0] = str(folder) if folder is not None else None
        except DeclutrError as error:
            choice[1] = str(error)
    if world_size > 1:
        dist.broadcast_object_list(choice, src=0, group=getattr(trainer, "cpu_group", None))
    if choice[1] is not None:
        raise DeclutrError(choice[1])
    return Path(choice[0]) if choice[0] is not None else None


def plot_metrics(serialization_dir: Path) -> None:
    """``training.png``: loss terms and learning rate over steps; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    path = serialization_dir / "metrics.jsonl"
    if not path.is_file():
        return
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [r for r in records if "lr" in r]
    if not records:
        return
    figure, (losses, rates) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    steps = [r["step"] for r in records]
    for key in sorted({k for r in records for k in r if k.endswith("loss")}):
        losses.plot(steps, [r.get(key, float("nan")) for r in records], label=key)
    losses.set_ylabel("loss")
    losses.legend()
    rates.plot(steps, [r["lr"] for r in records])
    rates.set_ylabel("learning rate")
    rates.set_xlabel("step")
    figure.tight_layout()
    figure.savefig(serialization_dir / "training.png", dpi=100)
    plt.close(figure)


def _worker(
    rank: int,
    plugins: list[str],
    config: dict,
    serialization_dir: str,
    recover: bool,
    devices: list[int],
    backend: str,
    address: str,
    port: int,
    errors,
) -> None:
    import torch.distributed as dist

    from declutr.core.plugins import import_plugins

    import_plugins(plugins)  # the parent's --include-package and plugin-file modules: before building
    experiment = Experiment(config)
    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
    options = {}
    if devices[rank] >= 0:  # before the group: NCCL and every CUDA call then use this process's own device
        import torch

        torch.cuda.set_device(devices[rank])
        if "device_id" in inspect.signature(dist.init_process_group).parameters:
            options["device_id"] = torch.device("cuda", devices[rank])
    dist.init_process_group(backend, rank=rank, world_size=len(devices), **options)
    try:
        build_and_train(experiment, Path(serialization_dir), recover, rank, len(devices), devices[rank])
    except TrainingPreempted as error:  # every rank stopped at the same checkpoint: rank 0 says where
        if rank == 0:
            errors.put((rank, "preempted", str(error)))
    except Exception as error:  # handed back through the queue, not recovered from traceback text
        user_mistake = isinstance(error, DeclutrError)
        errors.put((rank, user_mistake, str(error) if user_mistake else f"{type(error).__name__}: {error}"))
        raise
    finally:
        dist.destroy_process_group()


def preemption_signals(experiment: Experiment) -> list:
    trainer = experiment.config.get("trainer") or {}
    return signal_numbers(trainer.get("preemption_signals", DEFAULT_SIGNALS))


class SpawnedProcessError(RuntimeError):
    """A training process ended with an unexpected error (its traceback is in the message)."""


def train_model(
    experiment: Experiment,
    serialization_dir: str | os.PathLike,
    recover: bool = False,
    force: bool = False,
) -> dict | None:
    """Train ``experiment`` into ``serialization_dir`` as ``declutr train`` does (``recover`` and
    ``force`` are its flags): on one process, on spawned processes (``distributed.cuda_devices``),
    or under ``torchrun`` (read from the environment). The final metrics (rank 0's)."""
    serialization_dir = Path(serialization_dir)
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank = int(os.environ.get("RANK", "0")) if under_torchrun else 0
    if not under_torchrun:  # under torchrun the environment assigns each process its device
        check_devices(experiment.distributed, experiment.cuda_device)
    if rank == 0:
        recover = prepare_run_dir(serialization_dir, experiment.config, recover, force)
    settings = experiment.distributed
    if under_torchrun:
        import torch
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(default_backend(cuda))
        try:
            dist.barrier()
            world_size = int(os.environ["WORLD_SIZE"])
            metrics = build_and_train(
                experiment, serialization_dir, recover, rank, world_size, local_rank if cuda else -1
            )
            return metrics if rank == 0 else None  # one summary line per run, from rank 0
        finally:
            dist.destroy_process_group()
    if settings is not None and len(settings.cuda_devices) > 1:
        import torch.multiprocessing as mp

        errors = mp.get_context("spawn").SimpleQueue()
        try:
            context = mp.spawn(
                _worker,
                nprocs=len(settings.cuda_devices),
                join=False,
                args=(
                    imported_plugins(),
                    experiment.config,
                    str(serialization_dir),
                    recover,
                    settings.cuda_devices,
                    settings.backend,
                    settings.master_address,
                    settings.master_port,
                    errors,
                ),
            )
            with forwarded(preemption_signals(experiment), [process.pid for process in context.processes]):
                while not context.join():
                    pass
        except mp.ProcessRaisedException as error:
            if errors.empty():  # it failed before reaching the training code
                raise SpawnedProcessError(f"training process {error.error_index} failed") from error
            rank, user_mistake, message = errors.get()
            if user_mistake:
                raise DeclutrError(f"process {rank}: {message}") from None
            raise SpawnedProcessError(f"training process {rank}: {message}") from error  # the cause has its stack
        except mp.ProcessExitedException as error:
            raise DeclutrError(f"training process {error.error_index} died (exit code {error.exit_code})") from None
        if not errors.empty():
            raise TrainingPreempted(errors.get()[2])
        metrics_file = serialization_dir / "metrics.json"
        return json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    device = settings.cuda_devices[0] if settings is not None else None
    return build_and_train(experiment, serialization_dir, recover, device=device)
