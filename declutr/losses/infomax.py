"""IS-BERT's objective: mutual information between a sentence and its own tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from declutr.losses.base import MutualInformationLoss, in_float32

LOG_2 = math.log(2.0)


@MutualInformationLoss.register("infomax")
class JensenShannonInfomaxLoss(MutualInformationLoss):
    """Jensen-Shannon mutual-information estimator (IS-BERT, after Deep InfoMax / InfoGraph).

    Scores are dot products between every sentence embedding and every non-padding local token
    representation in the batch. A sentence with its own tokens is a positive pair, with another
    sentence's tokens a negative. The loss ``E_neg[softplus(-s) + s - log 2] - E_pos[log 2 - softplus(-s)]``
    is minimised (the mutual-information lower bound is maximised); each expectation is a mean
    over its pairs. The scores and the loss are computed in float32 outside autocast (``in_float32``).
    """

    @in_float32
    def forward(self, global_features, local_features, attention_mask):
        count = global_features.size(0)
        if count < 2:
            raise ValueError("the infomax loss needs at least two sentences per batch (the negatives)")
        tokens = attention_mask.bool()
        local = local_features[tokens]  # [T, D]
        owner = torch.arange(count, device=local.device).unsqueeze(1).expand_as(tokens)[tokens]  # [T]
        scores = local @ global_features.T  # [T, count]
        positive = F.one_hot(owner, count).bool()
        positive_expectation = (LOG_2 - F.softplus(-scores[positive])).mean()
        negative_scores = scores[~positive]
        negative_expectation = (F.softplus(-negative_scores) + negative_scores - LOG_2).mean()
        return negative_expectation - positive_expectation
