"""Check the devices an experiment asks for against the machine, before any process spawns or weights load."""

from __future__ import annotations

from typing import TYPE_CHECKING

from declutr.core.errors import ConfigurationError

if TYPE_CHECKING:
    from declutr.training.experiment import DistributedConfig


def _machine() -> tuple[int, str]:
    """(number of CUDA devices, a short description of the machine's CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return 0, "this machine has no CUDA device"
    count = torch.cuda.device_count()
    return count, f"this machine has {count} CUDA device{'s' if count != 1 else ''} (0..{count - 1})"


def _nccl_built() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_nccl_available()


def check_devices(distributed: DistributedConfig | None, cuda_device: int | None = None) -> None:
    """Raise a one-line ``ConfigurationError`` per device an experiment asks for that the machine lacks:
    ``distributed.cuda_devices`` entries (no CUDA, an index out of range), a ``nccl`` backend where torch
    was built without NCCL, and ``trainer.cuda_device`` (``cuda_device``). Not called under ``torchrun``,
    whose environment assigns each process its device."""
    problems = []
    count, description = _machine()
    if distributed is not None:
        for index, device in enumerate(distributed.cuda_devices):
            if device >= count:
                problems.append(
                    f"distributed.cuda_devices[{index}]: CUDA device {device} is not available; {description}"
                    + ("; use -1 for CPU processes (gloo)" if count == 0 else "")
                )
        if len(distributed.cuda_devices) > 1 and distributed.backend == "nccl" and not _nccl_built():
            key = "distributed.cuda_devices" if distributed.backend_is_default else "distributed.backend"
            problems.append(f"{key}: the nccl backend is not built into this torch; use gloo (cuda_devices -1)")
    if cuda_device is not None and cuda_device >= count:
        problems.append(f"trainer.cuda_device: CUDA device {cuda_device} is not available; {description}")
    if problems:
        raise ConfigurationError(problems)
