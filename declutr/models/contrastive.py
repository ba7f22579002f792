"""``ContrastiveModel``: the models whose step is text groups through the encoder, then losses on
their embeddings (``declutr``, ``simcse``); the step runs plain or cached (GradCache), chosen once."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase

from declutr.losses.mlm import MaskedLanguageModelingLoss
from declutr.models.gradcache import GradCache
from declutr.models.groups import Chunk, ChunkOutput, TextGroup
from declutr.models.model import DEFAULT_MAX_PADDING_FRACTION, Model
from declutr.modules.batching import SubBatches
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import EmbeddingHead


class ContrastiveModel(Model):
    """A model that describes its batch as ``text_groups`` and computes its losses from their
    embeddings in ``losses_from_embeddings`` (plus, with a masked-LM group, the masked-LM term).

    The step is chosen once, from ``contrastive_chunk_size``: null runs ``forward`` with autograd
    (the plain step, through DDP); a number runs the cached step (``declutr.models.gradcache``),
    which encodes at most that many texts at a time and synchronises its own gradients. Both
    steps use the same chunks (``chunks``), the same ``encode_chunk`` and the same losses, so
    they agree up to rounding. A subclass implements ``text_groups`` and
    ``losses_from_embeddings``, and sets ``loss`` (its contrastive loss module, whose parameters,
    e.g. a learned temperature, get their gradient from the losses' pass) and ``mlm_loss`` when
    a group carries masked-LM labels.
    """

    #: the contrastive loss (its parameters are the only ones the losses themselves own)
    loss: torch.nn.Module
    #: the masked-LM objective, for groups with ``mlm_labels`` (``None``: the model has none)
    mlm_loss: MaskedLanguageModelingLoss | None

    def __init__(
        self,
        encoder: TextEncoder,
        head: EmbeddingHead,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        contrastive_chunk_size: int | None = None,
    ):
        super().__init__(encoder, head, tokenizer, max_padding_fraction)
        self.mlm_loss = None
        self.contrastive_chunk_size = contrastive_chunk_size

    @property
    def contrastive_chunk_size(self) -> int | None:
        """The cached step's chunk (``None``: the plain step); setting it chooses the step."""
        return self._cache.chunk_size if self._cache is not None else None

    @contrastive_chunk_size.setter
    def contrastive_chunk_size(self, chunk_size: int | None) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"contrastive_chunk_size must be at least 1 (or null: off), got {chunk_size}")
        self._cache = GradCache(chunk_size) if chunk_size is not None else None

    @property
    def max_rows(self) -> int | None:
        return self.contrastive_chunk_size

    @property
    def syncs_own_gradients(self) -> bool:
        """The cached step calls backward once per chunk outside DDP's forward."""
        return self._cache is not None

    # -- what a subclass says -------------------------------------------------------------------
    def text_groups(self, batch: dict) -> list[TextGroup]:
        """The text groups of ``batch``, in the order the encoder runs them."""
        raise NotImplementedError(f"{type(self).__name__} must describe its batch as text groups")

    def losses_from_embeddings(
        self, embeddings: list[torch.Tensor | None], mlm_loss: torch.Tensor | None, batch: dict
    ) -> dict[str, torch.Tensor]:
        """The loss terms (``"loss"`` the total) from the embeddings of each of ``text_groups``
        (``None`` where the group is not embedded) and, with a masked-LM group, its masked-LM
        term. All the weighting of the terms happens here, so both steps share it."""
        raise NotImplementedError(f"{type(self).__name__} must compute its losses from text-group embeddings")

    # -- the step -------------------------------------------------------------------------------
    def chunks(self, group: TextGroup) -> tuple[SubBatches, list[Chunk]]:
        """The group's sub-batches (at most ``contrastive_chunk_size`` texts each, when set) as
        chunks, and the plan that puts their rows back in order."""
        plan = self.sub_batches(group.tensors)
        weights = group.token_weights()
        columns = [plan.split(group.tensors.get(key)) for key in ("input_ids", "attention_mask", "special_tokens_mask")]
        chunks = []
        for number, (input_ids, attention_mask, special_tokens_mask, labels, chunk_weights) in enumerate(
            zip(*columns, plan.split(group.mlm_labels), plan.split(weights))
        ):
            masked = None if labels is None else chunk_weights[labels != -100]
            chunks.append(Chunk(input_ids, attention_mask, special_tokens_mask, labels, masked, plan.row_index(number)))
        return plan, chunks

    def encode_chunk(self, chunk: Chunk, embed: bool = True, masked_lm: bool = True) -> ChunkOutput:
        """One encoder pass over ``chunk``: its embeddings (with ``embed``) and, with ``masked_lm``
        and labels, its weighted sum of masked-token losses (the logits only at masked positions)."""
        mlm_sum = None
        if masked_lm and chunk.mlm_labels is not None:
            selected = chunk.mlm_labels != -100
            hidden, logits = self.encoder.forward_masked_lm(chunk.input_ids, chunk.attention_mask, selected)
            mlm_sum = self.mlm_loss.summed(logits, chunk.mlm_labels[selected], chunk.mlm_weights)
        else:
            hidden = self.encoder(chunk.input_ids, chunk.attention_mask)
        embeddings = self.head(hidden, chunk.attention_mask, chunk.special_tokens_mask) if embed else None
        return ChunkOutput(embeddings, mlm_sum)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The plain step's forward: every chunk of every text group with autograd, then the losses."""
        embeddings, mlm_loss = [], None
        for group in self.text_groups(batch):
            plan, chunks = self.chunks(group)
            outputs = [self.encode_chunk(chunk, embed=group.embed) for chunk in chunks]
            embeddings.append(plan.rows([output.embeddings for output in outputs]) if group.embed else None)
            for output in outputs:
                if output.mlm_sum is not None:
                    mlm_loss = output.mlm_sum if mlm_loss is None else mlm_loss + output.mlm_sum
        return self.losses_from_embeddings(embeddings, mlm_loss, batch)

    def loss_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable parameters the losses own (a learned temperature), outside the encoder
        and head: the cached step takes their gradient in the losses' pass."""
        return [parameter for parameter in self.loss.parameters() if parameter.requires_grad]

    def training_step(
        self, batch: dict, backward: Callable[[torch.Tensor], None], forward: Callable[[dict], dict] | None = None
    ) -> dict[str, torch.Tensor]:
        """The plain step (``Model.training_step``), or the cached step with ``contrastive_chunk_size``."""
        if self._cache is None:
            return super().training_step(batch, backward, forward)
        return self._cache.step(self, batch, backward)

    def memory_hints(self) -> list[str]:
        chunk = self.contrastive_chunk_size
        cache = (
            "set model.contrastive_chunk_size (e.g. 8; null now)"
            if chunk is None
            else f"lower model.contrastive_chunk_size ({chunk})"
        )
        return [*super().memory_hints(), cache]
