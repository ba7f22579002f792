"""Inference: the ``Encoder`` API and bulk embedding to ``.npy`` (torch loads on first use)."""


def __getattr__(name):
    if name == "Encoder":
        from declutr.inference.encoder import Encoder

        return Encoder
    if name == "embed_file":
        from declutr.inference.bulk import embed_file

        return embed_file
    raise AttributeError(f"module 'declutr.inference' has no attribute {name!r}")
