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

    The losses always see its output. At inference (``Model.embed``, the export, the ``Encoder``,
    evaluation) the embedding is the pooler's output, before the head, unless ``at_inference`` is
    true: the reference DeCLUTR implementation's optional ``feedforward`` gave ``projections``
    for the loss, while its ``embeddings`` (what its Encoder returned) were the pooled vectors.

    # Parameters
    hidden_dims: the output size of each layer (one int for a single layer).
    activations: one of relu, gelu, tanh, sigmoid, linear, per layer or one for all.
    dropout: dropout after each layer (training only).
    at_inference: also apply the head at inference, so the embeddings are its output [false:
        the pooler's output, as the reference's ``embeddings``]; e.g. for SimCSE's supervised
        models, whose MLP stays at test.
    input_dim: injected (the pooler's output size).
    """

    runtime_args: ClassVar[tuple[str, ...]] = ("input_dim",)

    def __init__(
        self,
        input_dim: int,
        hidden_dims: int | list[int],
        activations: str | list[str] = "relu",
        dropout: float = 0.0,
        at_inference: bool = False,
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
        self.at_inference = at_inference
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
    back from an export (``declutr.io.export.load_embedding_model``). ``forward`` is what the
    losses see (pooler, then the projection head); ``inference`` is the embedding at inference,
    which leaves out a projection head unless its ``at_inference`` is set, and ``for_inference()``
    is the head holding only those parts (what an export stores). ``normalize`` (L2) is only set
    when loading a sentence-transformers model that ends with ``Normalize``.
    """

    def __init__(self, pooler: Pooler, feedforward: FeedForward | None = None, normalize: bool = False):
        super().__init__()
        self.pooler = pooler
        self.feedforward = feedforward
        self.normalize = normalize

    @property
    def projects_at_inference(self) -> bool:
        return self.feedforward is not None and self.feedforward.at_inference

    @property
    def output_dim(self) -> int | None:
        """The size of ``forward``'s output (what the losses see)."""
        return self.feedforward.output_dim if self.feedforward is not None else self.pooler.output_dim

    @property
    def inference_dim(self) -> int | None:
        """The size of the embeddings at inference."""
        return self.feedforward.output_dim if self.projects_at_inference else self.pooler.output_dim

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._embed(hidden_states, attention_mask, special_tokens_mask, project=self.feedforward is not None)

    def inference(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._embed(hidden_states, attention_mask, special_tokens_mask, project=self.projects_at_inference)

    def for_inference(self) -> EmbeddingHead:
        """This head without a projection head that is not used at inference (sharing the modules)."""
        if self.feedforward is None or self.projects_at_inference:
            return self
        return EmbeddingHead(self.pooler, None, self.normalize)

    def _embed(self, hidden_states, attention_mask, special_tokens_mask, project: bool) -> torch.Tensor:
        embeddings = self.pooler(hidden_states, attention_mask, special_tokens_mask)
        if project:
            embeddings = self.feedforward(embeddings)
        return torch.nn.functional.normalize(embeddings, dim=-1) if self.normalize else embeddings
