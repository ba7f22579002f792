"""Encoders, poolers, heads and the cross-device gather: the parts a model is wired from."""

from declutr.modules import distributed, encoders, heads, poolers
from declutr.modules.encoders import TextEncoder, TransformerEncoder
from declutr.modules.heads import EmbeddingHead, FeedForward
from declutr.modules.poolers import Pooler

__all__ = [
    "EmbeddingHead",
    "FeedForward",
    "Pooler",
    "TextEncoder",
    "TransformerEncoder",
    "distributed",
    "encoders",
    "heads",
    "poolers",
]
