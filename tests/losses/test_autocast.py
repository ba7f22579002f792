"""The losses under CPU bf16 autocast: similarities, logits and log-sum-exp in float32, equal to
the float32 computation on the same inputs (no bf16 rounding of cosines near 1)."""

from __future__ import annotations

import pytest
import torch

from declutr.losses.contrastive import InfoNCELoss, NTXentLoss
from declutr.losses.infomax import JensenShannonInfomaxLoss


def near_duplicates(count: int = 8, dim: int = 64) -> list[torch.Tensor]:
    """Anchors, positives and negatives whose cosines are near 1, where bf16 would round them to steps of 2^-8."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(count, dim, generator=generator)
    return [base + 0.02 * torch.randn(count, dim, generator=generator) for _ in range(3)]


@pytest.mark.parametrize("loss_class", [NTXentLoss, InfoNCELoss])
def test_under_bf16_autocast_the_logits_are_float32_and_equal_the_float32_logits(loss_class):
    loss = loss_class(temperature=0.05)
    vectors = near_duplicates()
    reference_logits, targets = loss.logits(*vectors)
    reference = loss(*vectors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, mixed_targets = loss.logits(*vectors)
        mixed = loss(*vectors)
    assert logits.dtype == mixed.dtype == torch.float32
    torch.testing.assert_close(logits, reference_logits, rtol=1e-6, atol=1e-6)
    assert torch.equal(mixed_targets, targets)
    torch.testing.assert_close(mixed, reference, rtol=1e-6, atol=1e-6)
    # what bf16 similarities would have given: off by far more than float32 rounding
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = vectors[0] @ vectors[1].T
    assert rounded.dtype == torch.bfloat16
    assert (rounded.float() - vectors[0] @ vectors[1].T).abs().max() > 1e-3


@pytest.mark.parametrize("loss_class", [NTXentLoss, InfoNCELoss])
def test_bf16_inputs_are_scored_in_float32_and_float64_stays_float64(loss_class):
    torch.manual_seed(0)
    projection = torch.nn.Linear(64, 32)  # autocast runs the projection in bf16: the loss gets bf16 inputs
    anchors, positives, negatives = near_duplicates()
    loss = loss_class(temperature=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inputs = [projection(anchors), projection(positives), projection(negatives)]
        mixed = loss(*inputs)
    assert {t.dtype for t in inputs} == {torch.bfloat16} and mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(*[t.float() for t in inputs]), rtol=1e-6, atol=1e-6)
    doubled = [t.double() for t in near_duplicates()]
    assert loss.logits(*doubled)[0].dtype == loss(*doubled).dtype == torch.float64


def test_the_infomax_loss_under_bf16_autocast_equals_its_float32_value():
    generator = torch.Generator().manual_seed(0)
    global_features, local = torch.randn(4, 16, generator=generator), torch.randn(4, 6, 16, generator=generator)
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[0, 4:] = 0
    loss = JensenShannonInfomaxLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(global_features, local, mask)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(global_features, local, mask), rtol=1e-6, atol=1e-6)
