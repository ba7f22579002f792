"""IS-BERT (Zhang et al., EMNLP 2020): mutual information between sentences and their tokens."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from declutr.core.construct import Lazy
from declutr.losses.base import MutualInformationLoss
from declutr.losses.infomax import JensenShannonInfomaxLoss
from declutr.models.model import (
    DEFAULT_MAX_PADDING_FRACTION,
    Model,
    build_encoder,
    require,
)
from declutr.modules.batching import in_sub_batches
from declutr.modules.encoders import TextEncoder
from declutr.modules.heads import EmbeddingHead
from declutr.modules.poolers import CnnPooler, masked_mean


@Model.register("isbert")
class ISBERTModel(Model):
    """IS-BERT: CNN local token features, their mean as the sentence embedding, Jensen-Shannon infomax.

    Negatives are the other sentences of the local batch (no cross-process gathering).

    # Parameters
    encoder: the transformer (``{"type": "transformer", "model_name": ...}``).
    pooler: a ``cnn`` pooler [kernel sizes 1, 3, 5; 256 filters each].
    loss: [infomax, the Jensen-Shannon estimator].
    max_padding_fraction: run each text group as length-sorted sub-batches, each trimmed to its
        longest text and at most this fraction padding [0.2]; null: one batch padded to the
        longest text. Results are equal up to rounding; only the speed changes.
    tokenizer: injected (the data reader's tokenizer), saved with the export.
    """

    def __init__(
        self,
        encoder: Lazy[TextEncoder],
        pooler: Lazy[CnnPooler] | None = None,
        loss: MutualInformationLoss | None = None,
        max_padding_fraction: float | None = DEFAULT_MAX_PADDING_FRACTION,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        built_encoder = build_encoder(encoder, masked_language_modeling=False)
        if pooler is None:
            pooler = CnnPooler(input_dim=built_encoder.hidden_size)
        elif isinstance(pooler, Lazy):
            pooler = pooler.construct(input_dim=built_encoder.hidden_size)
        if not isinstance(pooler, CnnPooler):
            raise TypeError(f"the isbert model needs a cnn pooler, got {type(pooler).__name__}")
        super().__init__(built_encoder, EmbeddingHead(pooler), tokenizer, max_padding_fraction)
        self.loss = loss if loss is not None else JensenShannonInfomaxLoss()

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        sentences = require(batch, "anchors", "IS-BERT batches hold the sentences as anchors")
        attention_mask = sentences["attention_mask"]
        # The encoder runs in sub-batches; the infomax loss pairs every sentence with the tokens
        # of every other, so the token vectors are padded back into one [N, L, D] tensor.
        hidden = in_sub_batches(
            self.encoder,
            attention_mask,
            self.max_padding_fraction,
            sentences["input_ids"],
            attention_mask,
            per_token=True,
            lengths=sentences.get("lengths"),
        )
        local = self.head.pooler.local_features(hidden, attention_mask)
        loss = self.loss(masked_mean(local, attention_mask), local, attention_mask)
        return {"loss": loss, "infomax_loss": loss.detach()}
