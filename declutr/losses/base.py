"""The ``Loss`` kind and its families; a model's type hint names the family it can use."""

from __future__ import annotations

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
