"""Gathering embeddings across processes so that negatives come from the global batch.

``all_gather`` returns tensors without a gradient; the local slot is replaced by the local
tensor (which carries one), so every rank back-propagates through its own examples only.
DDP then averages the per-rank gradients, which makes the contrastive gradient
``1 / world_size`` of the single-process gradient on the concatenated batch; multiplying the
loss by the world size (``scale_fix``) restores it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``cat`` of ``tensor`` from every rank in rank order, the local part carrying its gradient.

    Every rank must pass a tensor of the same shape (use ``drop_last`` in the data loader).
    A no-op without an initialised process group (or with a single process).
    """
    if not is_distributed():
        return tensor
    tensor = tensor.contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.detach())
    gathered[dist.get_rank()] = tensor
    return torch.cat(gathered, dim=0)


def share_of_global_mean(count: torch.Tensor) -> torch.Tensor:
    """``world_size * count / sum(count over ranks)``: the factor that turns this rank's mean over
    its ``count`` items into its part of the mean over every rank's items once DDP averages the
    gradients (and once the logged values are averaged over ranks). 1 without a process group."""
    if not is_distributed():
        return torch.ones((), device=count.device)
    local = count.detach().to(torch.float64).reshape(())
    total = local.clone()
    dist.all_reduce(total)
    return (dist.get_world_size() * local / total.clamp(min=1)).to(torch.float32)
