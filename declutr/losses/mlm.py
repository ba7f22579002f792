"""The masked-LM objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from declutr.losses.base import Loss, at_least_float32


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
        # the sum over the masked positions over their count: no host read of the mask (an
        # ``if not selected.any()`` would wait for the device); no masked position gives 0 / 1
        losses = self._token_losses(logits, labels)
        if weights is None:
            return losses.sum() / (labels != -100).sum().clamp(min=1)
        return (losses * weights.reshape(-1).to(losses.dtype)).sum()

    def summed(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The sum (not the mean) of the masked tokens' cross-entropies, each times its weight
        when ``weights`` are given: a group encoded in chunks adds its chunks' sums (the cached
        contrastive step). No masked token gives a zero that still reaches the logits."""
        losses = self._token_losses(logits, labels)
        return losses.sum() if weights is None else (losses * weights.reshape(-1).to(losses.dtype)).sum()

    @staticmethod
    def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each position's cross-entropy (0 where the label is -100), in at least float32."""
        return F.cross_entropy(
            at_least_float32(logits.reshape(-1, logits.size(-1))),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="none",
        )
