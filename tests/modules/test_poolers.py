"""Pooling math on hand-made tensors; heads; the gather without a process group."""

from __future__ import annotations

import pytest
import torch

from declutr.core.construct import build
from declutr.core.errors import ConfigurationError
from declutr.modules import EmbeddingHead, FeedForward, Pooler
from declutr.modules.distributed import gather_with_grad, world_size
from declutr.modules.poolers import ClsMlpPooler, CnnPooler, MaxPooler, MeanPooler

# two texts, 4 positions: text 0 = [<s>, a, b, </s>], text 1 = [<s>, c, </s>, <pad>]
HIDDEN = torch.tensor(
    [
        [[1.0, 10.0], [2.0, -20.0], [3.0, 30.0], [6.0, 0.0]],
        [[5.0, -1.0], [6.0, -2.0], [10.0, -3.0], [100.0, 100.0]],
    ]
)
ATTENTION = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
SPECIAL = torch.tensor([[1, 0, 0, 1], [1, 0, 1, 1]])


def test_mean_includes_special_tokens_and_ignores_padding():
    pooled = MeanPooler()(HIDDEN, ATTENTION)
    torch.testing.assert_close(pooled, torch.tensor([[3.0, 5.0], [7.0, -2.0]]))


def test_mean_can_exclude_special_tokens():
    pooled = MeanPooler(exclude_special_tokens=True)(HIDDEN, ATTENTION, SPECIAL)
    torch.testing.assert_close(pooled, torch.tensor([[2.5, 5.0], [6.0, -2.0]]))  # (2+3)/2, (-20+30)/2; c alone
    with pytest.raises(ValueError, match="special_tokens_mask"):
        MeanPooler(exclude_special_tokens=True)(HIDDEN, ATTENTION)
    differs = MeanPooler(exclude_special_tokens=True)(HIDDEN[:1], ATTENTION[:1], torch.tensor([[1, 0, 1, 1]]))
    torch.testing.assert_close(differs, torch.tensor([[2.0, -20.0]]))


def test_cls_and_max():
    torch.testing.assert_close(Pooler.by_name("cls")()(HIDDEN, ATTENTION), torch.tensor([[1.0, 10.0], [5.0, -1.0]]))
    # the padded position (100, 100) must not win the max; negative values survive
    torch.testing.assert_close(MaxPooler()(HIDDEN, ATTENTION), torch.tensor([[6.0, 30.0], [10.0, -1.0]]))


def test_cls_mlp_uses_its_mlp_in_training_only():
    pooler = ClsMlpPooler(input_dim=2)
    pooler.train()
    trained = pooler(HIDDEN, ATTENTION)
    torch.testing.assert_close(trained, torch.tanh(pooler.dense(HIDDEN[:, 0])))
    pooler.eval()
    torch.testing.assert_close(pooler(HIDDEN, ATTENTION), HIDDEN[:, 0])


def test_cnn_is_relu_convolutions_averaged_over_real_tokens():
    torch.manual_seed(0)
    pooler = CnnPooler(input_dim=2, kernel_sizes=[1, 3], out_channels=2)
    assert pooler.output_dim == 4
    local = pooler.local_features(HIDDEN, ATTENTION)
    assert local.shape == (2, 4, 4) and (local >= 0).all()
    # kernel 1 at token 1 of text 0 by hand
    conv = pooler.convolutions[0]
    expected = torch.relu(conv.weight[:, :, 0] @ HIDDEN[0, 1] + conv.bias)
    torch.testing.assert_close(local[0, 1, :2], expected)
    # kernel 3 at the last real token of text 1 sees a zeroed pad on its right
    conv3 = pooler.convolutions[1]
    window = torch.stack([HIDDEN[1, 1], HIDDEN[1, 2], torch.zeros(2)], dim=1)  # [D, 3]
    expected3 = torch.relu((conv3.weight * window).sum(dim=(1, 2)) + conv3.bias)
    torch.testing.assert_close(local[1, 2, 2:], expected3)
    torch.testing.assert_close(pooler(HIDDEN, ATTENTION)[1], local[1, :3].mean(dim=0))


@pytest.mark.parametrize(
    ("activation", "function"), [(None, lambda x: x), ("gelu", torch.nn.functional.gelu), ("tanh", torch.tanh)]
)
def test_cnn_activation_is_selectable(activation, function):
    """``activation: null`` is the authors' code (models/CNN.py: convolutions only)."""
    torch.manual_seed(0)
    pooler = build(
        Pooler,
        {"type": "cnn", "kernel_sizes": [1, 3], "out_channels": 2, "activation": activation},
        extras={"input_dim": 2},
    )
    assert pooler.activation == activation
    conv = pooler.convolutions[0]
    local = pooler.local_features(HIDDEN, ATTENTION)
    raw = conv.weight[:, :, 0] @ HIDDEN[0, 1] + conv.bias
    torch.testing.assert_close(local[0, 1, :2], function(raw))
    if activation is None:
        assert (local < 0).any()  # nothing clamps the linear outputs
    torch.testing.assert_close(pooler(HIDDEN, ATTENTION)[1], local[1, :3].mean(dim=0))
    with pytest.raises(ConfigurationError, match="model.pooler.activation"):
        build(Pooler, {"type": "cnn", "activation": "swish"}, path="model.pooler", extras={"input_dim": 2})


def test_every_pooler_is_independent_of_padding():
    torch.manual_seed(0)
    hidden = torch.randn(1, 3, 8)
    padded = torch.cat([hidden, torch.randn(1, 4, 8)], dim=1)
    short_mask, long_mask = torch.ones(1, 3, dtype=torch.long), torch.tensor([[1, 1, 1, 0, 0, 0, 0]])
    special = torch.tensor([[1, 0, 1]])
    special_long = torch.tensor([[1, 0, 1, 1, 1, 1, 1]])
    for config in (
        "mean",
        {"type": "mean", "exclude_special_tokens": True},
        "cls",
        "max",
        "cls_mlp",
        "cnn",
        {"type": "cnn", "activation": None},
    ):
        pooler = build(Pooler, config, extras={"input_dim": 8}).eval()
        torch.testing.assert_close(pooler(hidden, short_mask, special), pooler(padded, long_mask, special_long))


def test_poolers_build_from_configs_with_the_injected_size():
    cnn = build(Pooler, {"type": "cnn", "out_channels": 3}, extras={"input_dim": 8})
    assert cnn.kernel_sizes == [1, 3, 5] and cnn.output_dim == 9
    assert isinstance(build(Pooler, {}, extras={"input_dim": 8}), MeanPooler)  # the default
    with pytest.raises(ConfigurationError, match="kernel_sizes must be positive odd numbers"):
        build(Pooler, {"type": "cnn", "kernel_sizes": [2]}, extras={"input_dim": 8})
    with pytest.raises(ConfigurationError, match="unexpected key"):
        build(Pooler, {"type": "mean", "exclude_specials": True}, extras={"input_dim": 8})


def test_feedforward_head_and_embedding_head():
    torch.manual_seed(0)
    head = FeedForward(input_dim=2, hidden_dims=[3, 4], activations=["relu", "linear"])
    assert head.output_dim == 4
    embedding_head = EmbeddingHead(MeanPooler(input_dim=2), head)
    assert embedding_head.output_dim == 4
    pooled = MeanPooler()(HIDDEN, ATTENTION)
    expected = head.layers[3](torch.relu(head.layers[0](pooled)))
    torch.testing.assert_close(embedding_head(HIDDEN, ATTENTION), expected)
    # at inference the head is left out (the reference's pre-projection embeddings) unless at_inference
    torch.testing.assert_close(embedding_head.inference(HIDDEN, ATTENTION), pooled)
    assert embedding_head.inference_dim == 2 and embedding_head.for_inference().feedforward is None
    head.at_inference = True
    torch.testing.assert_close(embedding_head.inference(HIDDEN, ATTENTION), expected)
    assert embedding_head.inference_dim == 4 and embedding_head.for_inference() is embedding_head
    normalized = EmbeddingHead(MeanPooler(), normalize=True)(HIDDEN, ATTENTION)
    torch.testing.assert_close(normalized.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="unknown activation"):
        FeedForward(input_dim=2, hidden_dims=3, activations="swish")
    with pytest.raises(ValueError, match="expected one name or 2 names"):
        FeedForward(input_dim=2, hidden_dims=[3, 3], activations=["relu"])


def test_gather_is_a_no_op_without_a_process_group():
    tensor = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(tensor) is tensor
    assert world_size() == 1
