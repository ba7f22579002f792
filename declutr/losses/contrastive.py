"""Contrastive losses over cosine similarities scaled by a temperature, computed in float32
outside autocast (``in_float32``): cross-entropy of ``logits(anchors, positives, negatives)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from declutr.losses.base import ContrastiveLoss, check_temperature, in_float32


@ContrastiveLoss.register("nt_xent")
class NTXentLoss(ContrastiveLoss):
    """NT-Xent (SimCLR; DeCLUTR's loss): symmetric InfoNCE over ``cat(anchors, positives)``.

    Each of the ``2M`` vectors is an anchor whose one positive is its partner and whose
    negatives are the other ``2M - 2`` vectors; the loss is the mean over the ``2M`` directed
    pairs. Equal in value and gradient to pytorch-metric-learning's ``NTXentLoss`` (which the
    reference used). Hard negatives, if given, are extra negatives for every vector.

    # Parameters
    temperature: divides the cosine similarities [0.05].
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = check_temperature(temperature)

    @in_float32
    def logits(self, anchors, positives, negatives=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``[2M, 2M (+ K)]`` logits (self-pairs ``-inf``) and each row's target column."""
        count = anchors.size(0)
        embeddings = F.normalize(torch.cat([anchors, positives]), dim=-1)
        logits = embeddings @ embeddings.T / self.temperature
        self_pairs = torch.eye(2 * count, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(self_pairs, float("-inf"))
        if negatives is not None:
            logits = torch.cat([logits, embeddings @ F.normalize(negatives, dim=-1).T / self.temperature], dim=1)
        index = torch.arange(count, device=logits.device)
        return logits, torch.cat([index + count, index])

    def forward(self, anchors, positives, negatives=None):
        return F.cross_entropy(*self.logits(anchors, positives, negatives))


@ContrastiveLoss.register("info_nce")
class InfoNCELoss(ContrastiveLoss):
    """InfoNCE from anchors to positives (SimCSE's loss), optionally with hard negatives.

    Anchor ``i`` is scored against every positive (its own is the target, the others are
    in-batch negatives) and, in supervised SimCSE, against every hard negative too.

    # Parameters
    temperature: divides the cosine similarities [0.05].
    hard_negative_weight: added to the logit of each anchor's own hard negative (SimCSE's ``hard_negative_weight``, 0 by default).
    """

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 0.0):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.hard_negative_weight = hard_negative_weight

    @in_float32
    def logits(self, anchors, positives, negatives=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``[M, M (+ K)]`` logits of each anchor against every positive (and hard negative),
        and each row's target column."""
        anchors = F.normalize(anchors, dim=-1)
        logits = anchors @ F.normalize(positives, dim=-1).T / self.temperature
        if negatives is not None:
            hard = anchors @ F.normalize(negatives, dim=-1).T / self.temperature
            if self.hard_negative_weight:
                hard = hard + self.hard_negative_weight * torch.eye(*hard.shape, dtype=hard.dtype, device=hard.device)
            logits = torch.cat([logits, hard], dim=1)
        return logits, torch.arange(anchors.size(0), device=logits.device)

    def forward(self, anchors, positives, negatives=None):
        return F.cross_entropy(*self.logits(anchors, positives, negatives))
