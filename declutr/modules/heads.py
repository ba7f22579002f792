"""Heads on top of a pooler: the optional feed-forward projection, and the pooling path itself."""

from __future__ import annotations

from typing import ClassVar

import torch

from declutr.modules.poolers import Pooler

ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "linear": torch.nn.Identity,
}


class FeedForward(torch.nn.Module):
    """A feed-forward projection head: ``Linear -> activation -> dropout`` per layer.

    Used in training and at inference: the embeddings are its output (as in the reference
    DeCLUTR implementation's optional ``feedforward``).

    # Parameters
    hidden_dims: the output size of each layer (one int for a single layer).
    activations: one of relu, gelu, tanh, sigmoid, linear, per layer or one for all.
    dropout: dropout after each layer (training only).
    input_dim: injected (the pooler's output size).
    """

    runtime_args: ClassVar[tuple[str, ...]] = ("input_dim",)

    def __init__(
        self, input_dim: int, hidden_dims: int | list[int], activations: str | list[str] = "relu", dropout: float = 0.0
    ):
        super().__init__()
        dims = [hidden_dims] if isinstance(hidden_dims, int) else list(hidden_dims)
        names = [activations] * len(dims) if isinstance(activations, str) else list(activations)
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"hidden_dims must be positive sizes, got {hidden_dims}")
        if len(names) != len(dims):
            raise ValueError(f"activations: expected one name or {len(dims)} names, got {len(names)}")
        unknown = [n for n in names if n not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r}; one of {', '.join(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_dim, self.hidden_dims, self.activations, self.dropout = input_dim, dims, names, dropout
        layers: list[torch.nn.Module] = []
        for size_in, size_out, name in zip([input_dim, *dims[:-1]], dims, names):
            layers += [torch.nn.Linear(size_in, size_out), ACTIVATIONS[name](), torch.nn.Dropout(dropout)]
        self.layers = torch.nn.Sequential(*layers)

    @property
    def output_dim(self) -> int:
        return self.hidden_dims[-1]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


class EmbeddingHead(torch.nn.Module):
    """Token vectors to embeddings: the pooler, then the projection head if any.

    The single pooling path shared by training (``Model``), ``Model.embed`` and a model loaded
    back from an export (``declutr.io.export.load_embedding_model``). ``normalize`` (L2) is
    only set when loading a sentence-transformers model that ends with ``Normalize``.
    """

    def __init__(self, pooler: Pooler, feedforward: FeedForward | None = None, normalize: bool = False):
        super().__init__()
        self.pooler = pooler
        self.feedforward = feedforward
        self.normalize = normalize

    @property
    def output_dim(self) -> int | None:
        return self.feedforward.output_dim if self.feedforward is not None else self.pooler.output_dim

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        embeddings = self.pooler(hidden_states, attention_mask, special_tokens_mask)
        if self.feedforward is not None:
            embeddings = self.feedforward(embeddings)
        return torch.nn.functional.normalize(embeddings, dim=-1) if self.normalize else embeddings
