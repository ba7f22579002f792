"""The masked-LM objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from declutr.losses.base import Loss


@Loss.register("mlm")
class MaskedLanguageModelingLoss(Loss):
    """Cross-entropy of the masked-LM logits at the masked positions (labels ``-100`` elsewhere).

    ``logits [..., vocab]`` and ``labels [...]`` may cover every position (``[N, L]``) or only
    the masked ones (``[K]``, what the models pass). The loss is the mean over all masked tokens
    given: a group run in sub-batches concatenates their masked positions into one call rather
    than averaging per-sub-batch means, which would weight tokens unequally.
    A batch with no masked position gives a zero loss that still reaches the logits (rather than
    NaN), so distributed gradient reduction sees every parameter.
    ``weights`` (one per label, e.g. ``declutr.modules.distributed.masked_lm_weights``) make the
    loss the weighted sum of the masked tokens' losses instead of their mean.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        selected = labels != -100
        if not bool(selected.any()):
            return logits.sum() * 0.0
        # at least float32 (half-precision logits are upcast), float64 kept
        logits = logits[selected].to(torch.promote_types(logits.dtype, torch.float32))
        if weights is None:
            return F.cross_entropy(logits, labels[selected])
        losses = F.cross_entropy(logits, labels[selected], reduction="none")
        return (losses * weights[selected].to(losses.dtype)).sum()

    def summed(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The sum (not the mean) of the masked tokens' cross-entropies, each times its weight
        when ``weights`` are given: a group encoded in chunks adds its chunks' sums (the cached
        contrastive step). No masked token gives a zero that still reaches the logits."""
        selected = labels != -100
        logits = logits[selected].to(torch.promote_types(logits.dtype, torch.float32))
        losses = F.cross_entropy(logits, labels[selected], reduction="none")
        return losses.sum() if weights is None else (losses * weights[selected].to(losses.dtype)).sum()
