"""Check the devices a config asks for against the machine, before any process spawns or weights load."""

from __future__ import annotations

from declutr.core.errors import ConfigurationError


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


def check_devices(config: dict) -> None:
    """Raise a one-line ``ConfigurationError`` per device the config asks for that the machine lacks:
    ``distributed.cuda_devices`` entries (no CUDA, an index out of range), a ``nccl`` backend where torch
    was built without NCCL, and ``trainer.cuda_device``. Under ``torchrun`` (devices from the environment)
    only ``trainer.cuda_device`` is checked."""
    problems = []
    count, description = _machine()
    distributed = config.get("distributed") or {}
    devices = distributed.get("cuda_devices") if isinstance(distributed, dict) else None
    if isinstance(devices, list):
        for index, device in enumerate(devices):
            if isinstance(device, int) and not isinstance(device, bool) and device >= count:
                problems.append(
                    f"distributed.cuda_devices[{index}]: CUDA device {device} is not available; {description}"
                    + ("; use -1 for CPU processes (gloo)" if count == 0 else "")
                )
        uses_cuda = any(isinstance(d, int) and d >= 0 for d in devices)
        backend = distributed.get("backend") or ("nccl" if uses_cuda else "gloo")
        if len(devices) > 1 and backend == "nccl" and not _nccl_built():
            key = "distributed.backend" if distributed.get("backend") else "distributed.cuda_devices"
            problems.append(f"{key}: the nccl backend is not built into this torch; use gloo (cuda_devices -1)")
    trainer = config.get("trainer") or {}
    cuda_device = trainer.get("cuda_device") if isinstance(trainer, dict) else None
    if isinstance(cuda_device, int) and not isinstance(cuda_device, bool) and cuda_device >= count:
        problems.append(f"trainer.cuda_device: CUDA device {cuda_device} is not available; {description}")
    if problems:
        raise ConfigurationError(problems)
