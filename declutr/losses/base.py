"""The ``Loss`` kind and its families; a model's type hint names the family it can use."""

from __future__ import annotations

import functools

import torch

from declutr.core.registrable import Registrable


class Loss(torch.nn.Module, Registrable):
    """A training objective returning a scalar tensor."""


class ContrastiveLoss(Loss):
    """``forward(anchors [M, D], positives [M, D], negatives [M, D] | None) -> scalar``.

    Row ``i`` of ``positives`` is the positive of anchor ``i``; every other row (and every hard
    negative) serves as a negative.
    """

    def forward(
        self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class MutualInformationLoss(Loss):
    """``forward(global [N, D], local [N, L, D], attention_mask [N, L]) -> scalar`` (IS-BERT)."""

    def forward(
        self, global_features: torch.Tensor, local_features: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


def check_temperature(temperature: float) -> float:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return temperature


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or as it is when floating-point of higher precision (or not floating-point)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32)) if tensor.is_floating_point() else tensor


def in_float32(method):
    """Run a loss's ``method`` outside autocast, on its tensor arguments in at least float32.

    Under bf16 autocast a similarity matmul rounds cosines near 1 to steps of 2^-8 (0.078 in
    logits at temperature 0.05) before any float32 log-sum-exp could help; the losses' own
    arithmetic is small next to the encoder's, so it runs in float32 whatever the autocast dtype.
    """

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        device = next(a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        with torch.autocast(device.type, enabled=False):
            args = [at_least_float32(a) if isinstance(a, torch.Tensor) else a for a in args]
            kwargs = {k: at_least_float32(a) if isinstance(a, torch.Tensor) else a for k, a in kwargs.items()}
            return method(self, *args, **kwargs)

    return wrapped
