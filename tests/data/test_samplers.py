"""Span sampling statistics (the DeCLUTR paper's "Span sampling") and BERT masking proportions
(its "Continued MLM pretraining"), fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from declutr.core import ConfigurationError, build
from declutr.data import SpanSampler, mask_tokens


def sampler(**config) -> SpanSampler:
    return build(SpanSampler, config, path="span_sampler")


def draw(s: SpanSampler, lengths, seed=0):
    rng = np.random.default_rng(seed)
    for n in lengths:
        anchors, positives = s.sample(int(n), rng)
        yield int(n), anchors, positives


def scaled(lengths, low, high):
    return (np.asarray(lengths, dtype=float) - low) / (high - low)


def test_span_lengths_follow_the_scaled_beta_distributions():
    # A wide length range makes the int() truncation negligible against the KS critical value.
    low, high = 1, 20001
    s = sampler(num_anchors=2, num_positives=2, min_span_len=low, max_span_len=high)
    anchor_lengths, positive_lengths = [], []
    for _, anchors, positives in draw(s, [4 * high + 777] * 1500):
        anchor_lengths.extend(anchors[:, 1] - anchors[:, 0])
        positive_lengths.extend(positives[:, 1] - positives[:, 0])
    anchor_u, positive_u = scaled(anchor_lengths, low, high), scaled(positive_lengths, low, high)
    assert stats.kstest(anchor_u, stats.beta(4, 2).cdf).pvalue > 0.01
    assert stats.kstest(positive_u, stats.beta(2, 4).cdf).pvalue > 0.01
    # and the test has power: the other distribution is rejected
    assert stats.kstest(anchor_u, stats.beta(2, 4).cdf).pvalue < 1e-6
    assert stats.kstest(positive_u, stats.beta(4, 2).cdf).pvalue < 1e-6


@pytest.mark.parametrize("num_anchors", [1, 2, 3])
def test_anchors_lie_in_distinct_non_adjacent_whole_blocks(num_anchors):
    top = 50
    s = sampler(num_anchors=num_anchors, num_positives=1, min_span_len=5, max_span_len=top)
    rng = np.random.default_rng(1)
    lengths = rng.integers(s.min_length, s.min_length + 6 * top, size=800)
    for n, anchors, _ in draw(s, lengths, seed=2):
        blocks = anchors[:, 0] // top
        assert np.all((anchors[:, 1] - 1) // top == blocks), "an anchor crosses a block boundary"
        assert np.all(anchors[:, 1] <= (n // top) * top), "an anchor uses the trailing partial block"
        for i in range(num_anchors):
            for j in range(i + 1, num_anchors):
                assert abs(int(blocks[i]) - int(blocks[j])) >= 2, "anchors from the same or adjacent blocks"


@pytest.mark.parametrize("strategy", ["default", "subsuming", "adjacent"])
def test_positive_strategies_and_every_span_inside_the_document(strategy):
    low, top, positives_per_anchor = 4, 40, 3
    s = sampler(
        num_anchors=2, num_positives=positives_per_anchor, min_span_len=low, max_span_len=top, strategy=strategy
    )
    lengths = np.random.default_rng(3).integers(s.min_length, s.min_length + 300, size=600)
    touching = {"before": 0, "after": 0}
    for n, anchors, positives in draw(s, lengths, seed=4):
        for spans in (anchors, positives):
            assert np.all(spans[:, 0] >= 0) and np.all(spans[:, 1] <= n) and np.all(spans[:, 1] - spans[:, 0] >= low)
        assert np.all(positives[:, 1] - positives[:, 0] <= top)
        for k, (p_start, p_end) in enumerate(positives):
            a_start, a_end = anchors[k // positives_per_anchor]
            if strategy == "subsuming":
                assert a_start <= p_start and p_end <= a_end
            elif strategy == "adjacent":
                assert p_end == a_start or p_start == a_end
                touching["before" if p_end == a_start else "after"] += 1
            else:
                length = p_end - p_start
                assert max(0, a_start - length) <= p_start <= min(a_end, n - length)
    if strategy == "adjacent":
        assert min(touching.values()) > 100  # both sides occur


def test_default_positives_can_be_adjacent_overlapping_or_subsumed():
    s = sampler(num_anchors=2, num_positives=2, min_span_len=4, max_span_len=40)
    kinds = set()
    for _, anchors, positives in draw(s, [400] * 300, seed=5):
        for k, (p_start, p_end) in enumerate(positives):
            a_start, a_end = anchors[k // 2]
            if a_start <= p_start and p_end <= a_end:
                kinds.add("subsumed")
            elif p_end == a_start or p_start == a_end:
                kinds.add("adjacent")
            else:
                kinds.add("overlapping")
    assert kinds == {"subsumed", "adjacent", "overlapping"}


def test_reference_edge_case_takes_an_end_block():
    # 3 anchors in 6 blocks: 6 // 3 < 3, so the first anchor comes from the first or the last block.
    s = sampler(num_anchors=3, num_positives=1, min_span_len=2, max_span_len=10)
    firsts = {int(anchors[0, 0] // 10) for _, anchors, _ in draw(s, [s.min_length] * 200, seed=6)}
    assert firsts == {0, 5}


def test_sampling_is_a_function_of_the_generator_only():
    s = sampler(num_anchors=2, num_positives=2, min_span_len=8, max_span_len=64)
    np.random.seed(0)
    first = s.sample(1000, np.random.default_rng(42))
    np.random.seed(1)  # the global RNG plays no part
    second = s.sample(1000, np.random.default_rng(42))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="shorter than num_anchors"):
        s.sample(255, np.random.default_rng(0))


def test_bad_sampler_arguments_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="min_span_len <= max_span_len"):
        sampler(min_span_len=64, max_span_len=32)
    with pytest.raises(ConfigurationError, match="strategy"):
        sampler(strategy="nearby")


def test_masking_proportions_and_labels():
    rng = np.random.default_rng(7)
    n = 200_000
    ids = rng.integers(10, 1000, size=n)
    special = np.zeros(n, dtype=np.int64)
    special[::10] = 1
    masked, labels = mask_tokens(ids, special, rng, mask_id=4, vocab_size=1000, probability=0.15)
    selected = labels != -100
    assert not selected[special == 1].any()
    np.testing.assert_array_equal(labels[selected], ids[selected])
    np.testing.assert_array_equal(masked[~selected], ids[~selected])
    assert abs(selected[special == 0].mean() - 0.15) < 0.005
    became_mask = (masked == 4) & selected
    unchanged = (masked == ids) & selected
    random = selected & ~became_mask & ~unchanged
    total = selected.sum()
    assert abs(became_mask.sum() / total - 0.8) < 0.01
    # a random replacement may draw the original id (1 in 1000), counted as unchanged here
    assert abs(random.sum() / total - 0.1) < 0.01
    assert abs(unchanged.sum() / total - 0.1) < 0.01
    _, labels_30 = mask_tokens(ids, special, np.random.default_rng(8), mask_id=4, vocab_size=1000, probability=0.3)
    assert abs((labels_30 != -100)[special == 0].mean() - 0.3) < 0.005
