"""The ``Model`` kind: an encoder, a pooling head and losses, with one inference path and export."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

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


class Model(torch.nn.Module, Registrable):
    """Wiring of a ``TextEncoder``, an ``EmbeddingHead`` (pooler + optional projection) and losses.

    ``forward(batch)`` returns ``{"loss": total, "<term>_loss": ...}`` (scalars; the per-term
    values are detached, for logging). ``training_step(batch, backward)`` is what the trainer
    calls for one micro-batch: here ``forward`` and one ``backward``; a model with a step of its
    own (the cached contrastive step of ``ContrastiveModel``, a plugin's) overrides it, and says
    in ``syncs_own_gradients`` whether the trainer must average its gradients over processes
    itself. ``embed`` is the inference path, also used by models loaded back from an export;
    ``export`` writes the Hugging Face + sentence-transformers folder.
    """

    default_implementation = "declutr"

    def __init__(
        self,
        encoder: TextEncoder,
        head: EmbeddingHead,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
    ):
        super().__init__()
        if max_padding_fraction is not None and not 0 <= max_padding_fraction <= 1:
            raise ValueError(
                f"max_padding_fraction must be between 0 and 1 (or null: no sub-batches), got {max_padding_fraction}"
            )
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer
        self.max_padding_fraction = max_padding_fraction

    @property
    def max_rows(self) -> int | None:
        """The most texts one encoder pass takes (``None``: a whole sub-batch); a memory bound."""
        return None

    def sub_batches(self, group: dict | torch.Tensor) -> SubBatches:
        """The length-sorted sub-batches this model runs a text group in (see ``declutr.modules.batching``),
        cut into pieces of at most ``max_rows`` texts when that is set, and planned from the
        group's host-side ``lengths`` when the loader gave them (no device read).
        ``group``: the group's tensors (a batch's ``anchors``, ...), or just its attention mask."""
        if isinstance(group, torch.Tensor):
            return SubBatches(group, self.max_padding_fraction, self.max_rows)
        return SubBatches(group["attention_mask"], self.max_padding_fraction, self.max_rows, group.get("lengths"))

    # -- training -------------------------------------------------------------------------------
    #: whether ``training_step`` runs outside DDP's forward, so that the trainer averages the
    #: gradients over processes itself (once per optimizer step) instead of DDP's backward
    syncs_own_gradients: bool = False

    def training_step(
        self, batch: dict, backward: Callable[[torch.Tensor], None], forward: Callable[[dict], dict] | None = None
    ) -> dict[str, torch.Tensor]:
        """One training micro-batch: the loss terms (detached), with ``backward`` (the trainer's:
        gradient scaler and micro-batch division) already called on the gradient-carrying parts.

        ``forward``: how to call this model (the trainer passes its DDP wrapper, whose forward
        prepares the gradient synchronisation); a step that does not use it sets
        ``syncs_own_gradients``.
        """
        output = (forward or self)(batch)
        backward(output["loss"])
        return {key: value.detach() for key, value in output.items()}

    def memory_hints(self) -> list[str]:
        """What to change in this model's config for a training step to need less memory, one
        ``"lower model.key (value)"`` / ``"set model.key ..."`` each (an out-of-memory error lists them)."""
        hints = []
        if self.max_padding_fraction is not None:
            hints.append(f"lower model.max_padding_fraction ({self.max_padding_fraction})")
        if getattr(self.encoder, "gradient_checkpointing", None) is False:  # a transformer encoder's key
            hints.append("set model.encoder.gradient_checkpointing true")
        return hints

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
            max_rows=self.max_rows,
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
