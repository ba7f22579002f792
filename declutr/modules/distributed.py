"""Gathering embeddings across processes so that negatives come from the global batch.

``all_gather`` returns tensors without a gradient; the local slot is replaced by the local
tensor (which carries one), so every rank back-propagates through its own examples only.
DDP then averages the per-rank gradients, which makes the contrastive gradient
``1 / world_size`` of the single-process gradient on the concatenated batch; multiplying the
loss by the world size (``scale_fix``, as the reference's PR #212) restores it. The masked-LM
term is each rank's own mean unless ``masked_lm_weights`` reweights it.
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


def average_gradients(parameters) -> None:
    """Average every gradient over the ranks, as DDP's backward does, for steps that do not run
    through DDP's forward (the cached contrastive step calls backward once per chunk itself).

    A parameter without a gradient on every rank keeps none; one with a gradient on some rank
    counts as zeros where it has none, so every rank joins the same reductions.
    """
    if not is_distributed():
        return
    parameters = [p for p in parameters if p.requires_grad]
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32)
    present = present.to(parameters[0].device) if parameters else present
    dist.all_reduce(present)
    gradients = []
    for parameter, count in zip(parameters, present.tolist()):
        if count:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            gradients.append(parameter.grad)
    for bucket in _buckets(gradients, 2**24):
        flat = torch.cat([gradient.reshape(-1) for gradient in bucket])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for gradient in bucket:
            gradient.copy_(flat[offset : offset + gradient.numel()].view_as(gradient))
            offset += gradient.numel()


def _buckets(tensors: list[torch.Tensor], elements: int) -> list[list[torch.Tensor]]:
    """Consecutive runs of ``tensors`` of the same dtype and device, each at most ``elements`` long
    (or one tensor)."""
    buckets: list[list[torch.Tensor]] = []
    size = 0
    for tensor in tensors:
        last = buckets[-1] if buckets else None
        if (
            last
            and size + tensor.numel() <= elements
            and (last[0].dtype, last[0].device) == (tensor.dtype, tensor.device)
        ):
            last.append(tensor)
            size += tensor.numel()
        else:
            buckets.append([tensor])
            size = tensor.numel()
    return buckets


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def masked_lm_weights(labels: torch.Tensor, groups: int | None) -> torch.Tensor | None:
    """Per-position weights ``[N, L]`` (0 where ``labels`` is -100) that make this rank's
    weighted sum of masked-token losses its part of the mean over ``groups`` group means,
    once DDP averages the gradients (and the logged values are averaged over ranks).

    The step's anchor rows, concatenated in rank order (the data loader's order), are cut into
    ``groups`` equal runs; each run's loss is the mean over its masked tokens, wherever they
    are, and the term is the mean of the run means. A token of run ``g`` weighs
    ``world_size / (groups * masked tokens of run g on every rank)``. ``groups == world_size``
    is each rank's own mean, 1 the mean over every masked token of the step. ``None``: no
    weights (the plain mean over this rank's masked tokens, without communication).
    """
    if groups is None:
        return None
    processes, rows = world_size(), labels.size(0)
    if (processes * rows) % groups:
        raise ValueError(
            f"mlm_mean_groups: {processes * rows} anchors per step ({processes} process(es) x {rows}) "
            f"cannot be cut into {groups} equal groups"
        )
    masked = labels != -100
    group = (rank() * rows + torch.arange(rows, device=labels.device)) // (processes * rows // groups)
    counts = torch.zeros(groups, dtype=torch.float64, device=labels.device)
    counts.index_add_(0, group, masked.sum(dim=1).to(torch.float64))
    if is_distributed():
        dist.all_reduce(counts)
    per_row = (processes / groups) / counts.clamp(min=1)[group]
    return masked * per_row.to(torch.float32).unsqueeze(1)
