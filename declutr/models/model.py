"""The ``Model`` kind: an encoder, a pooling head and losses, with one inference path and export."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from declutr.core.construct import Lazy
from declutr.core.registrable import Registrable
from declutr.modules.batching import SubBatches, in_sub_batches
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import EmbeddingHead, FeedForward
from declutr.modules.poolers import Pooler

logger = logging.getLogger(__name__)

#: the padding a sub-batch may hold (see ``declutr.modules.batching``); measured in docs/performance.md
DEFAULT_MAX_PADDING_FRACTION = 0.2


@dataclass
class TextGroup:
    """The texts of a batch that one encoder pass covers (anchors, positives, negatives, ...).

    ``tensors``: ``input_ids``, ``attention_mask`` and optionally ``special_tokens_mask`` (``[N, L]``);
    ``mlm_labels``: the masked-LM labels when the pass also gives the masked-LM logits (DeCLUTR's
    masked anchors); ``embed``: whether the losses use the group's embeddings; ``mlm_weights``
    (``[N, L]``, optional): each masked token's weight, the masked-LM term then being the weighted
    sum of the token losses instead of their mean (``declutr.modules.distributed.masked_lm_weights``).
    """

    tensors: dict[str, torch.Tensor]
    mlm_labels: torch.Tensor | None = None
    embed: bool = True
    mlm_weights: torch.Tensor | None = None


class Model(torch.nn.Module, Registrable):
    """Wiring of a ``TextEncoder``, an ``EmbeddingHead`` (pooler + optional projection) and losses.

    ``forward(batch)`` returns ``{"loss": total, "<term>_loss": ...}`` (scalars; the per-term
    values are detached, for logging). ``embed`` is the inference path, also used by models
    loaded back from an export; ``export`` writes the Hugging Face + sentence-transformers folder.

    The cached contrastive step (``contrastive_chunk_size``, ``forward_backward``; see
    ``declutr.models.gradcache``) serves a model that describes its batch as ``text_groups`` and
    computes its losses from their embeddings in ``contrastive_losses`` (``declutr``, ``simcse``),
    and takes ``contrastive_chunk_size`` in its constructor; on any other model the key is refused.
    """

    default_implementation = "declutr"
    refused_keys: ClassVar[dict[str, str]] = {
        "contrastive_chunk_size": "this model has no cached contrastive step (the declutr and simcse models have "
        "one; a plugin model needs text_groups and contrastive_losses, see docs/models.md); remove the key",
    }

    def __init__(
        self,
        encoder: TextEncoder,
        head: EmbeddingHead,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        contrastive_chunk_size: int | None = None,
    ):
        super().__init__()
        if max_padding_fraction is not None and not 0 <= max_padding_fraction <= 1:
            raise ValueError(
                f"max_padding_fraction must be between 0 and 1 (or null: no sub-batches), got {max_padding_fraction}"
            )
        if contrastive_chunk_size is not None:
            if contrastive_chunk_size < 1:
                raise ValueError(
                    f"contrastive_chunk_size must be at least 1 (or null: off), got {contrastive_chunk_size}"
                )
            if not self.serves_contrastive_cache():
                raise ValueError(f"contrastive_chunk_size: {self.refused_keys['contrastive_chunk_size']}")
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer
        self.max_padding_fraction = max_padding_fraction
        self.contrastive_chunk_size = contrastive_chunk_size

    @classmethod
    def serves_contrastive_cache(cls) -> bool:
        """Whether the model describes its step as text groups and losses (what the cache needs)."""
        return cls.text_groups is not Model.text_groups and cls.contrastive_losses is not Model.contrastive_losses

    def sub_batches(self, group: dict | torch.Tensor) -> SubBatches:
        """The length-sorted sub-batches this model runs a text group in (see ``declutr.modules.batching``),
        cut into chunks of at most ``contrastive_chunk_size`` texts when that is set, and planned
        from the group's host-side ``lengths`` when the loader gave them (no device read).
        ``group``: the group's tensors (a batch's ``anchors``, ...), or just its attention mask."""
        mask, lengths = (
            (group, None) if isinstance(group, torch.Tensor) else (group["attention_mask"], group.get("lengths"))
        )
        return SubBatches(mask, self.max_padding_fraction, self.contrastive_chunk_size, lengths)

    # -- the training step as text groups and losses (what the cached step needs) -------------------
    def text_groups(self, batch: dict) -> list[TextGroup]:
        """The text groups of ``batch``, in the order the encoder runs them (the cache's hook)."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its batch as text groups")

    def contrastive_losses(
        self, embeddings: list[torch.Tensor | None], mlm_loss: torch.Tensor | None, batch: dict
    ) -> dict[str, torch.Tensor]:
        """The loss terms from the embeddings of each of ``text_groups`` (``None`` where the group
        is not embedded) and, with a masked-LM group, the mean over its masked tokens. All the
        weighting of the terms happens here, so the cached and the uncached step share it."""
        raise NotImplementedError(f"{type(self).__name__} does not compute its losses from text-group embeddings")

    def encode_chunk(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        special_tokens_mask: torch.Tensor | None,
        mlm_labels: torch.Tensor | None,
        embed: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """One encoder pass over one sub-batch: its embeddings (with ``embed``) and, with
        ``mlm_labels``, the logits of its masked positions and their labels (``[K, vocab]``, ``[K]``)."""
        logits = targets = None
        if mlm_labels is None:
            hidden = self.encoder(input_ids, attention_mask)
        else:
            selected = mlm_labels != -100
            hidden, logits = self.encoder.forward_masked_lm(input_ids, attention_mask, selected)
            targets = mlm_labels[selected]
        return (self.head(hidden, attention_mask, special_tokens_mask) if embed else None), logits, targets

    def chunks(self, group: TextGroup, plan: SubBatches) -> list[tuple]:
        """``encode_chunk``'s first four arguments for every sub-batch of ``plan``."""
        keys = ("input_ids", "attention_mask", "special_tokens_mask")
        return list(zip(*(plan.split(group.tensors.get(key)) for key in keys), plan.split(group.mlm_labels)))

    def encode_group(self, group: TextGroup) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``encode_chunk`` over the group's sub-batches: the embeddings in order (``None`` without
        ``embed``) and every masked position's logits and labels, so the masked-LM loss is the mean
        over all of the group's masked tokens."""
        plan = self.sub_batches(group.tensors)
        embeddings, logits, targets = [], [], []
        for chunk in self.chunks(group, plan):
            chunk_embeddings, chunk_logits, chunk_targets = self.encode_chunk(*chunk, embed=group.embed)
            if chunk_embeddings is not None:
                embeddings.append(chunk_embeddings)
            if chunk_logits is not None:
                logits.append(chunk_logits)
                targets.append(chunk_targets)
        return (
            plan.rows(embeddings) if embeddings else None,
            torch.cat(logits) if logits else None,
            torch.cat(targets) if targets else None,
        )

    def forward_groups(self, batch: dict) -> dict[str, torch.Tensor]:
        """The uncached step: every text group through the encoder with autograd, then the losses."""
        embeddings, mlm_loss = [], None
        for group in self.text_groups(batch):
            group_embeddings, logits, targets = self.encode_group(group)
            embeddings.append(group_embeddings)
            if logits is not None:
                mlm_loss = self.mlm_loss(logits, targets, self.masked_token_weights(group))
        return self.contrastive_losses(embeddings, mlm_loss, batch)

    def masked_token_weights(self, group: TextGroup) -> torch.Tensor | None:
        """``group.mlm_weights`` at the masked positions, in ``encode_group``'s order of the targets."""
        if group.mlm_weights is None:
            return None
        plan = self.sub_batches(group.tensors)
        split = zip(plan.split(group.mlm_weights), plan.split(group.mlm_labels))
        return torch.cat([weights[labels != -100] for weights, labels in split])

    def forward_backward(self, batch: dict, backward: Callable[[torch.Tensor], None]) -> dict[str, torch.Tensor]:
        """One training micro-batch: the loss terms (detached), with ``backward`` (the trainer's:
        gradient scaler and micro-batch division) already called on the gradient-carrying parts.

        With ``contrastive_chunk_size`` this is the cached step, which calls ``backward`` once per
        chunk; otherwise ``forward`` and one ``backward``.
        """
        if self.contrastive_chunk_size is None:
            output = self(batch)
            backward(output["loss"])
            return {key: value.detach() for key, value in output.items()}
        from declutr.models.gradcache import cached_step

        return cached_step(self, batch, backward)

    @property
    def embedding_dim(self) -> int | None:
        """The size of the embeddings at inference (``embed``, the export)."""
        return self.head.inference_dim

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embeddings ``[N, D]`` of one padded batch at inference; call in eval mode.

        A projection head (``feedforward``) is left out unless its ``at_inference`` is set, as
        the reference's ``embeddings`` (the export and the Encoder give the same). Padding never
        changes an embedding, so the batch runs as length-sorted sub-batches with bounded padding
        (``max_padding_fraction``), each trimmed to its longest row, and the embeddings are put
        back in order.
        """
        return self._in_sub_batches(self.head.inference, input_ids, attention_mask, special_tokens_mask)

    def embed_group(self, group: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the losses see for a text group of a batch (``input_ids``, ``attention_mask``,
        ``special_tokens_mask``): ``embed``'s computation, through the projection head if any."""
        return self._in_sub_batches(
            self.head,
            group["input_ids"],
            group["attention_mask"],
            group.get("special_tokens_mask"),
            group.get("lengths"),
        )

    def _in_sub_batches(self, head, input_ids, attention_mask, special_tokens_mask, lengths=None) -> torch.Tensor:
        def padded(ids, mask, special):
            return head(self.encoder(ids, mask), mask, special)

        return in_sub_batches(
            padded,
            attention_mask,
            self.max_padding_fraction,
            input_ids,
            attention_mask,
            special_tokens_mask,
            max_rows=self.contrastive_chunk_size,
            lengths=lengths,
        )

    def export(self, directory: str | os.PathLike) -> Path:
        """Write a Hugging Face checkpoint plus sentence-transformers and declutr pooling files."""
        from declutr.io.export import export_model

        return export_model(self, directory)


def build_encoder(encoder: Lazy[TextEncoder] | TextEncoder, masked_language_modeling: bool) -> TextEncoder:
    """Construct a lazily configured encoder with the model's MLM decision, or check a built one."""
    if isinstance(encoder, Lazy):
        encoder = encoder.construct(masked_language_modeling=masked_language_modeling)
    if bool(getattr(encoder, "masked_language_modeling", False)) != masked_language_modeling:
        wanted = "with" if masked_language_modeling else "without"
        raise ValueError(
            f"the encoder must be loaded {wanted} its masked-LM head here (the model's mlm_weight decides); "
            f"remove masked_language_modeling from the encoder's config"
        )
    return encoder


def build_head(
    encoder: TextEncoder,
    pooler: Lazy[Pooler] | Pooler | None,
    feedforward: Lazy[FeedForward] | FeedForward | None,
    default_pooler: str = "mean",
) -> EmbeddingHead:
    """The pooler (default ``default_pooler``) and projection head, sized from the encoder."""
    if pooler is None:
        pooler = Pooler.by_name(default_pooler)(input_dim=encoder.hidden_size)
    elif isinstance(pooler, Lazy):
        pooler = pooler.construct(input_dim=encoder.hidden_size)
    if isinstance(feedforward, Lazy):
        if pooler.output_dim is None:
            raise ValueError("a feedforward head needs a pooler that knows its output size")
        feedforward = feedforward.construct(input_dim=pooler.output_dim)
    return EmbeddingHead(pooler, feedforward)


def mean_per_anchor(embeddings: torch.Tensor, anchor_index: torch.Tensor | None, anchors: int) -> torch.Tensor:
    """The mean of each anchor's positives: row ``i`` of ``embeddings`` belongs to ``anchor_index[i]``.

    Without ``anchor_index`` the positives are taken as grouped, the same number per anchor.
    """
    if anchor_index is None:
        if embeddings.size(0) % anchors:
            raise ValueError(f"{embeddings.size(0)} positives cannot be split evenly over {anchors} anchors")
        return embeddings.view(anchors, -1, embeddings.size(-1)).mean(dim=1)
    anchor_index = anchor_index.to(embeddings.device)
    sums = embeddings.new_zeros(anchors, embeddings.size(-1)).index_add(0, anchor_index, embeddings)
    counts = torch.bincount(anchor_index, minlength=anchors).clamp(min=1).to(embeddings.dtype)
    return sums / counts.unsqueeze(-1)


def require(batch: dict, key: str, why: str) -> dict[str, torch.Tensor]:
    if batch.get(key) is None:
        raise ValueError(f'the batch has no "{key}" ({why})')
    return batch[key]
