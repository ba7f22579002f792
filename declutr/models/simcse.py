"""SimCSE (Gao et al., EMNLP 2021): dropout views (unsupervised) or NLI triplets (supervised)."""

from __future__ import annotations

from typing import Annotated

import torch
from transformers import PreTrainedTokenizerBase

from declutr.core.construct import AtLeast, Lazy
from declutr.losses.base import ContrastiveLoss
from declutr.losses.contrastive import InfoNCELoss
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
from declutr.modules.distributed import gather_with_grad, world_size
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import FeedForward
from declutr.modules.poolers import Pooler


@Model.register("simcse")
class SimCSEModel(ContrastiveModel):
    """SimCSE, unsupervised or supervised depending on the batch.

    Unsupervised (the batch has only ``anchors``): every sentence is encoded twice in one pass
    and the two dropout views are each other's positives; the model must be in train mode
    (dropout on), or the views coincide. Supervised (the batch has ``positives``, and optionally
    one hard negative per anchor in ``negatives``): anchors against their positives, with the
    other positives and all hard negatives as negatives. Embeddings are gathered across
    processes before the loss.

    # Parameters
    encoder: the transformer (``{"type": "transformer", "model_name": ...}``).
    pooler: [cls_mlp: the [CLS] vector through an MLP in training, plain [CLS] at inference].
    feedforward: an optional projection head; the loss uses its output, inference only with its at_inference.
    loss: [info_nce with temperature 0.05].
    scale_fix: multiply the loss by the number of processes (see the ``declutr`` model).
    max_padding_fraction: run each text group as length-sorted sub-batches, each trimmed to its
        longest text and at most this fraction padding [0.2]; null: one batch padded to the
        longest text. Results are equal up to rounding; only the speed changes.
    contrastive_chunk_size: the cached contrastive step (see the ``declutr`` model); null: off.
    tokenizer: injected (the data reader's tokenizer), saved with the export.
    """

    def __init__(
        self,
        encoder: Lazy[TextEncoder],
        pooler: Lazy[Pooler] | None = None,
        feedforward: Lazy[FeedForward] | None = None,
        loss: ContrastiveLoss | None = None,
        scale_fix: bool = False,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        contrastive_chunk_size: Annotated[int, AtLeast(1)] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        built_encoder = build_encoder(encoder, masked_language_modeling=False)
        super().__init__(
            built_encoder,
            build_head(built_encoder, pooler, feedforward, default_pooler="cls_mlp"),
            tokenizer,
            max_padding_fraction,
            contrastive_chunk_size,
        )
        self.loss = loss if loss is not None else InfoNCELoss(temperature=0.05)
        self.scale_fix = scale_fix

    def text_groups(self, batch: dict) -> list[TextGroup]:
        """Unsupervised: the anchors twice, as one group (two dropout views in one pass);
        supervised: anchors, positives and, if any, hard negatives."""
        anchors = require(batch, "anchors", "every SimCSE batch has anchors")
        if batch.get("positives") is None:
            return [
                TextGroup(  # tensors and the host-side ``lengths`` list, each twice
                    {
                        key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value + value
                        for key, value in anchors.items()
                        if key != "mlm_labels"
                    }
                )
            ]
        groups = [TextGroup(anchors), TextGroup(batch["positives"])]
        if batch.get("negatives") is not None:
            groups.append(TextGroup(batch["negatives"]))
        return groups

    def losses_from_embeddings(
        self, embeddings: list[torch.Tensor | None], mlm_loss: torch.Tensor | None, batch: dict
    ) -> dict[str, torch.Tensor]:
        negatives = None
        if len(embeddings) == 1:
            anchor_embeddings, positive_embeddings = embeddings[0].chunk(2)
        else:
            anchor_embeddings = embeddings[0]
            positive_embeddings = mean_per_anchor(
                embeddings[1], batch.get("positive_anchor_index"), anchor_embeddings.size(0)
            )
            if len(embeddings) == 3:
                negatives = gather_with_grad(embeddings[2])
        loss = self.loss(gather_with_grad(anchor_embeddings), gather_with_grad(positive_embeddings), negatives)
        scale = world_size() if self.scale_fix else 1
        return {"loss": scale * loss, "contrastive_loss": loss.detach()}
