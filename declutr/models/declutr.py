"""DeCLUTR (Giorgi et al., ACL 2021): span contrastive loss plus masked-LM on the anchors."""

from __future__ import annotations

import logging

import torch
from transformers import PreTrainedTokenizerBase

from declutr.core.construct import Lazy
from declutr.losses.base import ContrastiveLoss
from declutr.losses.contrastive import NTXentLoss
from declutr.losses.mlm import MaskedLanguageModelingLoss
from declutr.models.model import (
    DEFAULT_MAX_PADDING_FRACTION,
    Model,
    build_encoder,
    build_head,
    mean_per_anchor,
    require,
)
from declutr.modules.distributed import gather_with_grad, share_of_global_mean, world_size
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import FeedForward
from declutr.modules.poolers import Pooler

logger = logging.getLogger(__name__)


@Model.register("declutr")
class DeclutrModel(Model):
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
    scale_fix: make the averaged gradient of several processes that of one process on the whole
        batch: the contrastive loss is multiplied by the number of processes, and each rank's
        masked-LM mean is weighted by its share of all masked tokens (off in the paper's configs,
        which reproduce the reference: per-rank means, contrastive gradient 1/processes too small).
    max_padding_fraction: run anchors and positives as length-sorted sub-batches, each trimmed
        to its longest span and at most this fraction padding [0.2]; null: each group padded to
        its longest span. Losses and gradients are equal up to rounding; only the speed changes.
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
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        if contrastive_weight < 0 or mlm_weight < 0:
            raise ValueError("contrastive_weight and mlm_weight must not be negative")
        if contrastive_weight == 0 and mlm_weight == 0:
            raise ValueError(
                "both losses are off (contrastive_weight and mlm_weight are 0): turn on at least one "
                "(contrastive-only: mlm_weight 0; MLM-only: contrastive_weight 0)"
            )
        built_encoder = build_encoder(encoder, masked_language_modeling=mlm_weight > 0)
        super().__init__(built_encoder, build_head(built_encoder, pooler, feedforward), tokenizer, max_padding_fraction)
        self.loss = loss if loss is not None else NTXentLoss(temperature=0.05)
        self.mlm_loss = MaskedLanguageModelingLoss()
        self.contrastive_weight = contrastive_weight
        self.mlm_weight = mlm_weight
        self.scale_fix = scale_fix
        self._warned_masked_anchors = False

    @property
    def uses_mlm(self) -> bool:
        return self.mlm_weight > 0

    @property
    def uses_contrastive(self) -> bool:
        return self.contrastive_weight > 0

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
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
        anchor_embeddings, logits, targets = self.encode_anchors(anchors)
        output: dict[str, torch.Tensor] = {}
        total = anchors["input_ids"].new_zeros((), dtype=torch.float32)
        if self.uses_mlm:
            mlm_loss = self.mlm_loss(logits, targets)
            if self.scale_fix:  # this rank's share of the mean over every rank's masked tokens
                mlm_loss = mlm_loss * share_of_global_mean((targets != -100).sum())
            total = total + self.mlm_weight * mlm_loss
            output["mlm_loss"] = mlm_loss.detach()
        if self.uses_contrastive:
            positives = require(
                batch, "positives", "the contrastive loss needs positives; set contrastive_weight 0 for MLM-only"
            )
            positive_embeddings = mean_per_anchor(
                self.embed_group(positives), batch.get("positive_anchor_index"), anchor_embeddings.size(0)
            )
            contrastive = self.loss(gather_with_grad(anchor_embeddings), gather_with_grad(positive_embeddings))
            scale = world_size() if self.scale_fix else 1
            total = total + self.contrastive_weight * scale * contrastive
            output["contrastive_loss"] = contrastive.detach()
        output["loss"] = total
        return output

    def encode_anchors(
        self, anchors: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """One encoder pass over the (masked) anchors, in length-sorted sub-batches.

        Returns the anchor embeddings (in order; ``None`` without the contrastive term) and, with
        the masked-LM term, the logits of every masked position of the group with their labels
        (``[K, vocab]``, ``[K]``), so the loss is the mean over all of the group's masked tokens.
        """
        plan = self.sub_batches(anchors)
        labels = anchors.get("mlm_labels") if self.uses_mlm else None
        embeddings, logits, targets = [], [], []
        for input_ids, attention_mask, special_tokens_mask, chunk_labels in zip(
            *(plan.split(anchors.get(key)) for key in ("input_ids", "attention_mask", "special_tokens_mask")),
            plan.split(labels),
        ):
            if chunk_labels is None:
                hidden = self.encoder(input_ids, attention_mask)
            else:
                selected = chunk_labels != -100
                hidden, chunk_logits = self.encoder.forward_masked_lm(input_ids, attention_mask, selected)
                logits.append(chunk_logits)
                targets.append(chunk_labels[selected])
            if self.uses_contrastive:
                embeddings.append(self.head(hidden, attention_mask, special_tokens_mask))
        return (
            plan.rows(embeddings) if embeddings else None,
            torch.cat(logits) if logits else None,
            torch.cat(targets) if targets else None,
        )
