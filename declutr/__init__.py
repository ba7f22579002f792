"""declutr: learn sentence embeddings without labels by contrastive continued pretraining.

``import declutr`` is cheap; heavy modules (torch, transformers) load when first used.
"""

from declutr.version import VERSION

__version__ = VERSION


def __getattr__(name):
    if name == "Encoder":
        from declutr.inference.encoder import Encoder

        return Encoder
    raise AttributeError(f"module 'declutr' has no attribute {name!r}")
