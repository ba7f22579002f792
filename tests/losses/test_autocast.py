"""The contrastive losses under CPU bf16 autocast: float32 log-sum-exp, close to the float32 loss."""

from __future__ import annotations

import pytest
import torch

from declutr.losses.contrastive import InfoNCELoss, NTXentLoss


@pytest.mark.parametrize("loss_class", [NTXentLoss, InfoNCELoss])
def test_bf16_autocast_loss_is_float32_and_close_to_the_float32_loss(loss_class):
    torch.manual_seed(0)
    projection = torch.nn.Linear(64, 32)  # autocast runs the projection (and the similarities) in bf16
    anchors, positives, negatives = torch.randn(8, 64), torch.randn(8, 64), torch.randn(8, 64)
    loss = loss_class(temperature=0.05)
    reference = loss(projection(anchors), projection(positives), projection(negatives))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(projection(anchors), projection(positives), projection(negatives))
    assert mixed.dtype == torch.float32
    assert torch.isfinite(mixed)
    assert abs(mixed.item() - reference.item()) <= 2e-2 * abs(reference.item())  # bf16 inputs: ~3 digits
