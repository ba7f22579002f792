"""Losses: nt_xent against pytorch-metric-learning, info_nce, infomax and MLM against hand-written formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from declutr.core.construct import build
from declutr.core.errors import ConfigurationError
from declutr.losses import (
    InfoNCELoss,
    JensenShannonInfomaxLoss,
    Loss,
    MaskedLanguageModelingLoss,
    NTXentLoss,
)


def _pair(count: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    positives = anchors + 0.5 * torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return anchors.requires_grad_(), positives.requires_grad_()


@pytest.mark.parametrize(("count", "temperature", "seed"), [(2, 0.05, 0), (8, 0.05, 1), (5, 0.1, 2), (16, 1.0, 3)])
def test_nt_xent_equals_pytorch_metric_learning_in_value_and_gradient(count, temperature, seed):
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    anchors, positives = _pair(count, 12, seed)
    ours = NTXentLoss(temperature)(anchors, positives)
    ours_grad = torch.autograd.grad(ours, (anchors, positives))

    reference_anchors = anchors.detach().clone().requires_grad_()
    reference_positives = positives.detach().clone().requires_grad_()
    labels = torch.arange(count).repeat(2)  # vector i and i + M share a label: one positive each
    reference = pml_losses.NTXentLoss(temperature=temperature)(
        torch.cat([reference_anchors, reference_positives]), labels
    )
    reference_grad = torch.autograd.grad(reference, (reference_anchors, reference_positives))

    assert abs(ours.item() - reference.item()) <= 1e-5
    for mine, theirs in zip(ours_grad, reference_grad):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_nt_xent_is_the_mean_over_the_directed_pairs():
    anchors, positives = _pair(3, 4, 7)
    vectors = F.normalize(torch.cat([anchors, positives]), dim=-1).detach()
    temperature, size = 0.2, 6
    terms = []
    for i in range(size):
        partner = (i + 3) % size
        scores = {j: (vectors[i] @ vectors[j]).item() / temperature for j in range(size) if j != i}
        terms.append(-scores[partner] + math.log(sum(math.exp(s) for s in scores.values())))
    expected = sum(terms) / size
    assert NTXentLoss(temperature)(anchors, positives).item() == pytest.approx(expected, abs=1e-9)


def test_info_nce_with_hard_negatives_matches_the_simcse_formula():
    anchors, positives = _pair(4, 6, 11)
    negatives = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    temperature, weight = 0.05, 0.7
    a, p, n = (F.normalize(x.detach(), dim=-1) for x in (anchors, positives, negatives))
    terms = []
    for i in range(4):
        logits = [(a[i] @ p[j]).item() / temperature for j in range(4)]
        logits += [(a[i] @ n[j]).item() / temperature + (weight if j == i else 0.0) for j in range(4)]
        terms.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    loss = InfoNCELoss(temperature, hard_negative_weight=weight)(anchors, positives, negatives)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-9)
    # without negatives: in-batch positives only
    plain = InfoNCELoss(temperature)(anchors, positives).item()
    expected = (
        sum(
            -(a[i] @ p[i]).item() / temperature
            + math.log(sum(math.exp((a[i] @ p[j]).item() / temperature) for j in range(4)))
            for i in range(4)
        )
        / 4
    )
    assert plain == pytest.approx(expected, rel=1e-9)


def test_infomax_matches_the_jensen_shannon_formula():
    generator = torch.Generator().manual_seed(3)
    local = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    global_ = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    positives, negatives = [], []
    for owner in range(3):
        for token in range(4):
            if not mask[owner, token]:
                continue
            for sentence in range(3):
                score = (local[owner, token] @ global_[sentence]).item()
                if sentence == owner:
                    positives.append(math.log(2) - math.log1p(math.exp(-score)))
                else:
                    negatives.append(math.log1p(math.exp(-score)) + score - math.log(2))
    expected = sum(negatives) / len(negatives) - sum(positives) / len(positives)
    assert JensenShannonInfomaxLoss()(global_, local, mask).item() == pytest.approx(expected, rel=1e-9)


def test_infomax_rewards_sentences_that_agree_with_their_own_tokens():
    generator = torch.Generator().manual_seed(0)
    global_ = torch.randn(4, 8, generator=generator)
    mask = torch.ones(4, 5, dtype=torch.long)
    aligned = global_.unsqueeze(1).expand(4, 5, 8) + 0.1 * torch.randn(4, 5, 8, generator=generator)
    shuffled = aligned[[1, 2, 3, 0]]
    loss = JensenShannonInfomaxLoss()
    assert loss(global_, aligned, mask) < loss(global_, shuffled, mask)
    with pytest.raises(ValueError, match="at least two"):
        loss(global_[:1], aligned[:1], mask[:1])


def test_mlm_loss_is_cross_entropy_at_masked_positions_and_zero_without_any():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=generator, requires_grad=True)
    labels = torch.tensor([[-100, 4, -100], [2, -100, -100]])
    expected = (F.cross_entropy(logits[0, 1:2], labels[0, 1:2]) + F.cross_entropy(logits[1, 0:1], labels[1, 0:1])) / 2
    loss = MaskedLanguageModelingLoss()
    assert loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = loss(logits, torch.full_like(labels, -100))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_losses_build_from_configs_and_reject_bad_temperatures():
    loss = build(Loss, {"type": "nt_xent", "temperature": 0.1})
    assert isinstance(loss, NTXentLoss) and loss.temperature == 0.1
    assert isinstance(build(Loss, {"type": "info_nce"}), InfoNCELoss)
    with pytest.raises(ConfigurationError, match="temperature must be positive"):
        build(Loss, {"type": "nt_xent", "temperature": 0})
