"""The data of a contrastive step: text groups, their chunks (one encoder pass each) and what a
chunk's pass gives the losses; shared by ``ContrastiveModel`` and the cached step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass
class TextGroup:
    """The texts of a batch that one encoder pass covers (anchors, positives, negatives, ...).

    ``tensors``: ``input_ids``, ``attention_mask`` and optionally ``special_tokens_mask`` (``[N, L]``)
    and the host-side ``lengths``; ``mlm_labels``: the masked-LM labels when the pass also gives
    the masked-LM term (DeCLUTR's masked anchors); ``embed``: whether the losses use the group's
    embeddings; ``mlm_weights`` (``[N, L]``, optional): each masked token's weight, the masked-LM
    term then being the weighted sum of the token losses instead of their mean
    (``declutr.modules.distributed.masked_lm_weights``).
    """

    tensors: dict[str, torch.Tensor]
    mlm_labels: torch.Tensor | None = None
    embed: bool = True
    mlm_weights: torch.Tensor | None = None

    def token_weights(self) -> torch.Tensor | None:
        """Each token's weight in the masked-LM term (``[N, L]``, zero where nothing is masked):
        ``mlm_weights``, or 1 / the group's masked-token count (the plain mean). ``None``
        without ``mlm_labels``. The one weighting both the plain and the cached step use."""
        if self.mlm_labels is None:
            return None
        if self.mlm_weights is not None:
            return self.mlm_weights
        masked = (self.mlm_labels != -100).to(torch.float64)
        return masked / masked.sum().clamp(min=1)


class Chunk(NamedTuple):
    """One sub-batch of a text group: what one encoder pass sees."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    special_tokens_mask: torch.Tensor | None
    #: the masked-LM labels (``-100`` where nothing is masked), or ``None``
    mlm_labels: torch.Tensor | None
    #: the weight of each masked position, in the order of ``mlm_labels[mlm_labels != -100]``
    mlm_weights: torch.Tensor | None
    #: the group's rows this chunk holds (``None``: every row, in order)
    rows: torch.Tensor | None


class ChunkOutput(NamedTuple):
    """What one encoder pass over a chunk gives the losses."""

    #: ``[n, D]`` (``None`` when the group is not embedded)
    embeddings: torch.Tensor | None
    #: the chunk's part of the masked-LM term: its masked tokens' losses times their weights, summed
    mlm_sum: torch.Tensor | None
