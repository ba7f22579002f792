"""The masked-LM objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from declutr.losses.base import Loss


@Loss.register("mlm")
class MaskedLanguageModelingLoss(Loss):
    """Cross-entropy of the masked-LM logits at the masked positions (labels ``-100`` elsewhere).

    A batch with no masked position gives a zero loss that still reaches the logits (rather than
    NaN), so distributed gradient reduction sees every parameter.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        selected = labels != -100
        if not bool(selected.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[selected].float(), labels[selected])
