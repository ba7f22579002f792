"""DeCLUTR (Giorgi et al., ACL 2021): span contrastive loss plus masked-LM on the anchors."""

from __future__ import annotations

import logging
from typing import Annotated

import torch
from transformers import PreTrainedTokenizerBase

from declutr.core.construct import AtLeast, Lazy
from declutr.losses.base import ContrastiveLoss
from declutr.losses.contrastive import NTXentLoss
from declutr.losses.mlm import MaskedLanguageModelingLoss
from declutr.models.contrastive import ContrastiveModel
from declutr.models.groups import TextGroup
from declutr.models.model import (
    DEFAULT_MAX_PADDING_FRACTION,
    Model,
    build_encoder,
    build_head,
    mean_per_anchor,
    require,
)
from declutr.modules.distributed import gather_with_grad, masked_lm_weights, world_size
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import FeedForward
from declutr.modules.poolers import Pooler

logger = logging.getLogger(__name__)


@Model.register("declutr")
class DeclutrModel(ContrastiveModel):
    """DeCLUTR: ``contrastive_weight * contrastive + mlm_weight * mlm``.

    The masked anchors go through the encoder once, giving both the masked-LM loss and the
    anchor embeddings; the positives are encoded unmasked and averaged per anchor. Anchors and
    averaged positives are gathered across processes before the contrastive loss, so the
    negatives come from the global batch. ``mlm_weight: 0`` is contrastive-only (the encoder
    is then loaded without its masked-LM head); ``contrastive_weight: 0`` is MLM-only.
    ``contrastive_loss`` is reported without the ``scale_fix`` factor.

    # Parameters
    encoder: the transformer (``{"type": "transformer", "model_name": ...}``).
    pooler: token vectors to embeddings [mean over all non-padding tokens, special tokens included].
    feedforward: an optional projection head; the contrastive loss uses its output, inference only with its at_inference.
    loss: the contrastive loss [nt_xent with temperature 0.05].
    contrastive_weight: weight of the contrastive term [1]; 0 turns it off.
    mlm_weight: weight of the masked-LM term [1]; 0 turns it off.
    scale_fix: multiply the contrastive loss by the number of processes, as the reference's PR #212,
        so that its DDP-averaged gradient is that of one process on the whole batch (off in the
        paper's configs: the paper's contrastive gradient was 1/processes of that).
    mlm_global_mean: make the masked-LM term the mean over every masked token of the step, on
        every rank, instead of each rank's own mean (the reference); with ``scale_fix`` both terms
        are then those of one process on the whole batch.
    mlm_mean_groups: make the masked-LM term the mean of this many group means, the step's
        anchors (in rank order) cut into equal groups. 4 on any number of processes is the
        reference's 4-GPU term (the mean of the four ranks' own means); null: each rank's own mean.
    max_padding_fraction: run anchors and positives as length-sorted sub-batches, each trimmed
        to its longest span and at most this fraction padding [0.2]; null: each group padded to
        its longest span. Losses and gradients are equal up to rounding; only the speed changes.
    contrastive_chunk_size: the cached contrastive step (GradCache): the encoder runs in chunks of
        at most this many texts, the loss still sees every embedding of the step, and memory grows
        with the chunk rather than the batch (about one more forward pass of compute); null: off.
    tokenizer: injected (the data reader's tokenizer), saved with the export.
    """

    def __init__(
        self,
        encoder: Lazy[TextEncoder],
        pooler: Lazy[Pooler] | None = None,
        feedforward: Lazy[FeedForward] | None = None,
        loss: ContrastiveLoss | None = None,
        contrastive_weight: float = 1.0,
        mlm_weight: float = 1.0,
        scale_fix: bool = False,
        mlm_global_mean: bool = False,
        mlm_mean_groups: Annotated[int, AtLeast(1)] | None = None,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        contrastive_chunk_size: Annotated[int, AtLeast(1)] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        if contrastive_weight < 0 or mlm_weight < 0:
            raise ValueError("contrastive_weight and mlm_weight must not be negative")
        if contrastive_weight == 0 and mlm_weight == 0:
            raise ValueError(
                "both losses are off (contrastive_weight and mlm_weight are 0): turn on at least one "
                "(contrastive-only: mlm_weight 0; MLM-only: contrastive_weight 0)"
            )
        if mlm_global_mean and mlm_mean_groups is not None:
            raise ValueError("set mlm_global_mean or mlm_mean_groups, not both (mlm_global_mean is mlm_mean_groups 1)")
        built_encoder = build_encoder(encoder, masked_language_modeling=mlm_weight > 0)
        super().__init__(
            built_encoder,
            build_head(built_encoder, pooler, feedforward),
            tokenizer,
            max_padding_fraction,
            contrastive_chunk_size,
        )
        self.loss = loss if loss is not None else NTXentLoss(temperature=0.05)
        self.mlm_loss = MaskedLanguageModelingLoss()
        self.contrastive_weight = contrastive_weight
        self.mlm_weight = mlm_weight
        self.scale_fix = scale_fix
        self.mlm_mean_groups = 1 if mlm_global_mean else mlm_mean_groups
        self._warned_masked_anchors = False

    @property
    def uses_mlm(self) -> bool:
        return self.mlm_weight > 0

    @property
    def uses_contrastive(self) -> bool:
        return self.contrastive_weight > 0

    def text_groups(self, batch: dict) -> list[TextGroup]:
        """The masked anchors (one pass gives the masked-LM logits and the anchor embeddings), then
        the positives (with the contrastive term)."""
        anchors = require(batch, "anchors", "every DeCLUTR batch has anchors")
        labels = anchors.get("mlm_labels")
        if self.uses_mlm and labels is None:
            raise ValueError(
                "mlm_weight > 0 but the anchors carry no mlm_labels: turn masking on in the dataset "
                "reader, or set the model's mlm_weight to 0 (contrastive-only)"
            )
        if not self.uses_mlm and labels is not None and not self._warned_masked_anchors:
            logger.warning("the anchors are masked but mlm_weight is 0: the contrastive loss sees masked anchors")
            self._warned_masked_anchors = True
        mlm_labels = labels if self.uses_mlm else None
        weights = None if mlm_labels is None else masked_lm_weights(mlm_labels, self.mlm_mean_groups)
        groups = [TextGroup(anchors, mlm_labels, embed=self.uses_contrastive, mlm_weights=weights)]
        if self.uses_contrastive:
            positives = require(
                batch, "positives", "the contrastive loss needs positives; set contrastive_weight 0 for MLM-only"
            )
            groups.append(TextGroup(positives))
        return groups

    def losses_from_embeddings(
        self, embeddings: list[torch.Tensor | None], mlm_loss: torch.Tensor | None, batch: dict
    ) -> dict[str, torch.Tensor]:
        """``contrastive_weight * contrastive + mlm_weight * mlm``, with ``scale_fix``'s factor
        (``mlm`` arrives already averaged as ``mlm_global_mean``/``mlm_mean_groups`` ask: the
        anchors' ``TextGroup.mlm_weights``)."""
        anchors = batch["anchors"]
        output: dict[str, torch.Tensor] = {}
        total = anchors["input_ids"].new_zeros((), dtype=torch.float32)
        if self.uses_mlm:
            total = total + self.mlm_weight * mlm_loss
            output["mlm_loss"] = mlm_loss.detach()
        if self.uses_contrastive:
            anchor_embeddings, positive_embeddings = embeddings
            positive_embeddings = mean_per_anchor(
                positive_embeddings, batch.get("positive_anchor_index"), anchor_embeddings.size(0)
            )
            contrastive = self.loss(gather_with_grad(anchor_embeddings), gather_with_grad(positive_embeddings))
            scale = world_size() if self.scale_fix else 1
            total = total + self.contrastive_weight * scale * contrastive
            output["contrastive_loss"] = contrastive.detach()
        output["loss"] = total
        return output
