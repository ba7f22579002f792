"""Small tensor and DDP helpers the loop and the callbacks share (no import of the loop itself)."""

from __future__ import annotations

from typing import Any

import torch


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def count_tokens(batch: Any) -> int:
    """Real (non-pad) tokens in a batch: every group's host-side ``lengths`` (no tensor read), or
    the sum of its attention mask when the group has none."""
    if isinstance(batch, dict):
        if isinstance(batch.get("lengths"), list):
            return sum(batch["lengths"])
        if "attention_mask" in batch and isinstance(batch["attention_mask"], torch.Tensor):
            return int(batch["attention_mask"].sum())
        return sum(count_tokens(v) for v in batch.values())
    return 0


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def reduce_mean(values: dict[str, float], world_size: int, device: torch.device) -> dict[str, float]:
    if world_size == 1 or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / world_size for k, v in zip(keys, tensor.tolist())}
