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
        # the sum over the masked positions over their count: no host read of the mask (an
        # ``if not selected.any()`` would wait for the device); no masked position gives 0 / 1
        logits = logits.reshape(-1, logits.size(-1)).to(torch.promote_types(logits.dtype, torch.float32))
        labels = labels.reshape(-1)
        total = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
        return total / (labels != -100).sum().clamp(min=1)
