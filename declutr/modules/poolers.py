"""Poolers: token vectors ``[N, L, D]`` to one vector per text ``[N, output_dim]``.

Every pooler ignores padding (``attention_mask == 0``), so an embedding does not depend on how
much padding its batch has. Parts used only in training (``cls_mlp``'s MLP) are skipped in
eval mode, which is how every inference path (``Model.embed``, the exported model) runs.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from declutr.core.registrable import Registrable


class Pooler(torch.nn.Module, Registrable):
    """Reduces token vectors to one vector per text.

    ``input_dim`` (the encoder's hidden size) is injected by the model; configs never repeat it.
    Constructor arguments are stored as same-named attributes so an export can describe the
    pooler (see ``declutr.io.export``).
    """

    default_implementation = "mean"
    runtime_args: ClassVar[tuple[str, ...]] = ("input_dim",)

    def __init__(self, input_dim: int | None = None):
        super().__init__()
        if input_dim is not None and input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.input_dim = input_dim

    @property
    def output_dim(self) -> int | None:
        """The size of the pooled vector (``None`` when built without ``input_dim``)."""
        return self.input_dim

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [N, L, D]`` over the positions where ``mask [N, L]`` is non-zero."""
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@Pooler.register("mean")
class MeanPooler(Pooler):
    """Mean of the token vectors over all non-padding positions.

    Special tokens (``<s>``, ``</s>``, ``[CLS]``, ``[SEP]``) are included by default, as in the
    DeCLUTR paper and sentence-transformers' mean pooling.

    # Parameters
    exclude_special_tokens: average over non-special tokens only (needs ``special_tokens_mask``).
    """

    def __init__(self, exclude_special_tokens: bool = False, input_dim: int | None = None):
        super().__init__(input_dim)
        self.exclude_special_tokens = exclude_special_tokens

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        mask = attention_mask.bool()
        if self.exclude_special_tokens:
            if special_tokens_mask is None:
                raise ValueError("the mean pooler with exclude_special_tokens=true needs special_tokens_mask")
            mask = mask & ~special_tokens_mask.bool()
        return masked_mean(hidden_states, mask)


@Pooler.register("cls")
class ClsPooler(Pooler):
    """The first token's vector (``[CLS]`` / ``<s>``)."""

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        return hidden_states[:, 0]


@Pooler.register("max")
class MaxPooler(Pooler):
    """Element-wise maximum over the non-padding token vectors."""

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        padding = ~attention_mask.bool().unsqueeze(-1)
        return hidden_states.masked_fill(padding, torch.finfo(hidden_states.dtype).min).max(dim=1).values


@Pooler.register("cls_mlp")
class ClsMlpPooler(Pooler):
    """SimCSE's pooling: the first token's vector through ``Linear(D, D) + tanh`` in training only.

    At inference (eval mode) the MLP is skipped and the pooler is plain ``cls``, as in SimCSE's
    evaluation ("cls_before_pooler").

    # Parameters
    input_dim: injected (the encoder's hidden size).
    """

    def __init__(self, input_dim: int):
        super().__init__(input_dim)
        self.dense = torch.nn.Linear(input_dim, input_dim)
        self.activation = torch.nn.Tanh()

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        cls = hidden_states[:, 0]
        return self.activation(self.dense(cls)) if self.training else cls


#: the activations the ``cnn`` pooler offers after its convolutions
CNN_ACTIVATIONS = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "tanh": torch.tanh}


@Pooler.register("cnn")
class CnnPooler(Pooler):
    """IS-BERT's pooling: 1-D convolutions over the token vectors, an activation, mean over time.

    One convolution per kernel size (``same`` padding, so every token keeps one output), each
    followed by ``activation``, their ``out_channels`` outputs concatenated per token (the
    "local" representations), then the masked mean over tokens (the sentence embedding).
    Padding positions are zeroed before the convolution so they never leak into real tokens.

    # Parameters
    kernel_sizes: odd window sizes [1, 3, 5].
    out_channels: filters per kernel size [256]; the embedding has ``len(kernel_sizes) * out_channels`` dimensions.
    activation: after each convolution: ``relu`` (the default; the IS-BERT paper, Zhang et al.,
        EMNLP 2020, describes its CNN layer with one), ``gelu``, ``tanh``, or null for none (the
        authors' code, ``models/CNN.py`` of yanzhangnlp/IS-BERT, applies no activation; the
        shipped isbert.jsonnet follows it).
    input_dim: injected (the encoder's hidden size).
    """

    def __init__(
        self,
        input_dim: int,
        kernel_sizes: list[int] = (1, 3, 5),
        out_channels: int = 256,
        activation: Literal["relu", "gelu", "tanh"] | None = "relu",
    ):
        super().__init__(input_dim)
        kernel_sizes = list(kernel_sizes)
        if not kernel_sizes or any(k <= 0 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be positive odd numbers, got {kernel_sizes}")
        if out_channels <= 0:
            raise ValueError(f"out_channels must be positive, got {out_channels}")
        if activation is not None and activation not in CNN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(CNN_ACTIVATIONS)} or null, got {activation!r}")
        self.kernel_sizes = kernel_sizes
        self.out_channels = out_channels
        self.activation = activation
        self._activate = CNN_ACTIVATIONS[activation] if activation is not None else None
        self.convolutions = torch.nn.ModuleList(
            torch.nn.Conv1d(input_dim, out_channels, kernel_size=k, padding=k // 2) for k in kernel_sizes
        )

    @property
    def output_dim(self) -> int:
        return len(self.kernel_sizes) * self.out_channels

    def local_features(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-token representations ``[N, L, output_dim]`` (IS-BERT's "local" features)."""
        mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
        inputs = (hidden_states * mask).transpose(1, 2)  # [N, D, L]
        outputs = [conv(inputs) for conv in self.convolutions]
        if self._activate is not None:
            outputs = [self._activate(output) for output in outputs]
        features = torch.cat(outputs, dim=1)
        return features.transpose(1, 2)

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        return masked_mean(self.local_features(hidden_states, attention_mask), attention_mask)
