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
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        selected = labels != -100
        if not bool(selected.any()):
            return logits.sum() * 0.0
        # at least float32 (half-precision logits are upcast), float64 kept
        return F.cross_entropy(logits[selected].to(torch.promote_types(logits.dtype, torch.float32)), labels[selected])

    def summed(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The sum (not the mean) of the masked tokens' cross-entropies: a group encoded in chunks
        adds its chunks' sums and divides once by the group's masked-token count (the cached
        contrastive step). No masked token gives a zero that still reaches the logits."""
        selected = labels != -100
        logits = logits[selected].to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits, labels[selected], reduction="sum")
