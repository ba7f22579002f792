"""Long texts: ``Encoder(long_text="truncate" | "chunk", stride=...)`` and ``declutr embed --long-text``.

The references below build each window by hand from the text's tokens (not with the tokenizer's
overflow windows the Encoder uses) and run the bare transformer on it.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from declutr import Encoder
from declutr.commands import main
from declutr.core.errors import DeclutrError
from declutr.inference.bulk import embed_file
from declutr.testing import make_documents, make_tiny_model, normalizing_sentence_transformers_copy

LIMIT = 32  # the short models read 32 tokens at most, special tokens included
LONG = make_documents(1, 200, seed=3)[0]  # several hundred tokens: cut to about 3x the limit below
SHORT = "the captain saw the ship at night"


@pytest.fixture(scope="module")
def short_bert(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("short-bert"), "bert", max_positions=LIMIT)


@pytest.fixture(scope="module")
def short_roberta(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("short-roberta"), "roberta", max_positions=LIMIT + 2)


def text_tokens(path, text):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))(text, add_special_tokens=False)["input_ids"]


def text_of_tokens(path, count):
    """A prefix of ``LONG`` that tokenises to ``count`` text tokens (ending at a word)."""
    words = LONG.split()
    for end in range(1, len(words) + 1):
        text = " ".join(words[:end])
        if len(text_tokens(path, text)) >= count:
            return text
    raise AssertionError("LONG is too short")


def windows_by_hand(n_tokens, content, stride):
    """``(start, end, own_start, own_end)`` per window over ``n_tokens`` text tokens: windows of
    ``content`` tokens, each starting ``stride`` tokens before the previous one ended; a shared
    token is owned by the earlier window for the first half of the overlap (rounded up)."""
    spans, start = [], 0
    while True:
        end = min(start + content, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            break
        start = end - stride
    keep = stride - stride // 2
    owned = []
    for i, (start, end) in enumerate(spans):
        own_start = start if i == 0 else start + keep
        own_end = end if i == len(spans) - 1 else spans[i + 1][0] + keep
        owned.append((start, end, own_start, own_end))
    return owned


def window_hidden_states(path, tokens, windows):
    """Per window: the transformer's token vectors of ``[special] tokens[start:end] [special]``."""
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))
    states = []
    with torch.no_grad():
        for start, end, _, _ in windows:
            ids = [tokenizer.cls_token_id, *tokens[start:end], tokenizer.sep_token_id]  # <s> ... </s> for RoBERTa
            states.append(model(input_ids=torch.tensor([ids])).last_hidden_state[0])
    return states


def chunked_mean_by_hand(path, text, stride=0):
    """The token-weighted mean of the windows' mean-pooled vectors, each window pooling its two
    special tokens and the text tokens it owns; also the windows' vectors and weights."""
    tokens = text_tokens(path, text)
    windows = windows_by_hand(len(tokens), LIMIT - 2, stride)
    vectors, weights = [], []
    for (start, _, own_start, own_end), hidden in zip(windows, window_hidden_states(path, tokens, windows)):
        rows = [0, *range(1 + own_start - start, 1 + own_end - start), hidden.shape[0] - 1]
        vectors.append(hidden[rows].mean(0).numpy())
        weights.append(len(rows))
    vectors, weights = np.stack(vectors), np.array(weights, dtype=np.float64)
    return (vectors * weights[:, None]).sum(0) / weights.sum(), vectors, weights


def test_chunk_is_the_token_weighted_mean_of_its_windows(short_bert):
    text = text_of_tokens(short_bert, 3 * LIMIT)  # 96 text tokens: windows of 30, 30, 30, 6
    expected, vectors, weights = chunked_mean_by_hand(short_bert, text)
    assert list(weights) == [32, 32, 32, 8]
    encoder = Encoder(str(short_bert), device="cpu", long_text="chunk", batch_size=3)
    assert encoder.max_length == LIMIT
    got = encoder([SHORT, text, SHORT])
    np.testing.assert_allclose(got[1], expected, rtol=1e-4, atol=1e-5)
    assert encoder.long_texts == 1
    # a short text is embedded as with truncation; the long one is not its first window
    truncated = Encoder(str(short_bert), device="cpu")([SHORT, text])
    np.testing.assert_allclose(got[[0, 2]], truncated[[0, 0]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(truncated[1], vectors[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(got[1], truncated[1], atol=1e-3)


@pytest.mark.parametrize("stride", [5, 6])
def test_overlapping_windows_pool_every_token_once(short_roberta, stride):
    text = text_of_tokens(short_roberta, 3 * LIMIT)
    expected, _, weights = chunked_mean_by_hand(short_roberta, text, stride)
    n_tokens = len(text_tokens(short_roberta, text))
    assert weights.sum() == n_tokens + 2 * len(weights)  # each text token once, two special tokens per window
    encoder = Encoder(str(short_roberta), device="cpu", long_text="chunk", stride=stride)
    np.testing.assert_allclose(encoder(text), expected, rtol=1e-4, atol=1e-5)


def test_a_window_as_large_as_the_text_is_plain_mean_pooling(short_bert):
    from transformers import AutoModel, AutoTokenizer

    text = text_of_tokens(short_bert, LIMIT - 2)
    assert len(text_tokens(short_bert, text)) == LIMIT - 2  # exactly one full window
    model, tokenizer = AutoModel.from_pretrained(str(short_bert)).eval(), AutoTokenizer.from_pretrained(str(short_bert))
    with torch.no_grad():
        whole = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    encoder = Encoder(str(short_bert), device="cpu", long_text="chunk", stride=4)
    np.testing.assert_allclose(encoder(text), whole, rtol=1e-4, atol=1e-5)
    assert encoder.long_texts == 0
    encoder(text + " river")  # one token more: two windows
    assert encoder.long_texts == 1


def test_max_pooling_takes_the_maximum_over_windows_and_cls_refuses(short_bert):
    text = text_of_tokens(short_bert, 3 * LIMIT)
    tokens = text_tokens(short_bert, text)
    windows = windows_by_hand(len(tokens), LIMIT - 2, 0)
    expected = np.max([h.max(0).values.numpy() for h in window_hidden_states(short_bert, tokens, windows)], axis=0)
    got = Encoder(str(short_bert), device="cpu", long_text="chunk", pooler="max")(text)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(DeclutrError, match="needs mean, max or cnn pooling; .* pools with cls") as error:
        Encoder(str(short_bert), device="cpu", long_text="chunk", pooler="cls")
    assert "\n" not in str(error.value)


def test_cnn_pooling_averages_local_features_over_windows(short_bert):
    text = text_of_tokens(short_bert, 2 * LIMIT)
    torch.manual_seed(0)
    encoder = Encoder(str(short_bert), device="cpu", long_text="chunk", pooler={"type": "cnn", "out_channels": 8})
    tokens = text_tokens(short_bert, text)
    windows = windows_by_hand(len(tokens), LIMIT - 2, 0)
    with torch.no_grad():
        features = [
            encoder.head.pooler.local_features(h[None], torch.ones(1, h.shape[0]))[0]
            for h in window_hidden_states(short_bert, tokens, windows)
        ]
    expected = torch.cat(features).mean(0).numpy()  # disjoint windows: the mean over all their tokens
    np.testing.assert_allclose(encoder(text), expected, rtol=1e-4, atol=1e-5)


def test_normalize_module_applies_after_combining(short_bert, tmp_path):
    folder = normalizing_sentence_transformers_copy(short_bert, tmp_path / "st-model")
    text = text_of_tokens(short_bert, 3 * LIMIT)
    expected, vectors, weights = chunked_mean_by_hand(short_bert, text)
    got = Encoder(str(folder), device="cpu", long_text="chunk")(text)
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), rtol=1e-4, atol=1e-5)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # normalising windows first differs
    assert not np.allclose(got, (unit * weights[:, None]).sum(0) / weights.sum(), atol=1e-4)


def test_truncation_is_counted_and_reported_once_per_call(short_bert, caplog):
    text = text_of_tokens(short_bert, 3 * LIMIT)
    encoder = Encoder(str(short_bert), device="cpu", batch_size=1)
    with caplog.at_level(logging.WARNING, logger="declutr"):
        encoder([text, SHORT, text + " again"])
    assert encoder.long_texts == 2
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("declutr")]
    expected = (
        f"2 of 3 texts were longer than the model's limit of {LIMIT} tokens: truncated to it "
        '(long_text="chunk" / --long-text chunk embeds them whole)'
    )
    assert messages == [expected]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="declutr"):
        encoder([SHORT])
        Encoder(str(short_bert), device="cpu", long_text="chunk")([text])  # nothing is cut: no warning
    assert encoder.long_texts == 0 and not [r for r in caplog.records if r.name.startswith("declutr")]


def test_bad_long_text_arguments_are_one_line_errors(short_bert):
    with pytest.raises(DeclutrError, match='long_text must be "truncate" or "chunk", got \'split\''):
        Encoder(str(short_bert), device="cpu", long_text="split")
    with pytest.raises(DeclutrError, match='stride 4 applies to long_text="chunk" only'):
        Encoder(str(short_bert), device="cpu", stride=4)
    with pytest.raises(DeclutrError, match="stride 30 must be at least 0 and less than the 30 text tokens of a window"):
        Encoder(str(short_bert), device="cpu", long_text="chunk", stride=30)


def test_embed_file_counts_long_texts_over_its_chunks(short_bert, tmp_path, caplog):
    text = text_of_tokens(short_bert, 3 * LIMIT)
    source = tmp_path / "texts.txt"
    texts = [text, SHORT, SHORT, text, SHORT]
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    encoder = Encoder(str(short_bert), device="cpu")
    with caplog.at_level(logging.WARNING, logger="declutr"):
        embed_file(encoder, source, tmp_path / "out.npy", chunk_size=2, show_progress=False)
    assert encoder.long_texts == 2
    assert [r.getMessage()[:10] for r in caplog.records if r.name.startswith("declutr")] == [
        "2 of 5 tex"
    ]  # one for the file


def test_embed_command_reports_long_texts(short_bert, tmp_path):
    text = text_of_tokens(short_bert, 3 * LIMIT)
    texts = [text, SHORT, text + " again", SHORT, SHORT]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "e.npy"
    result = CliRunner().invoke(
        main, ["embed", str(short_bert), str(source), "-o", str(out), "--long-text", "chunk", "--stride", "4"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"2 of 5 texts were longer than the model's limit of {LIMIT} tokens: embedded whole, in windows of {LIMIT} tokens (stride 4)"
        in result.output
    )
    np.testing.assert_allclose(
        np.load(out), Encoder(str(short_bert), device="cpu", long_text="chunk", stride=4)(texts), rtol=1e-4, atol=1e-5
    )
    result = CliRunner().invoke(main, ["embed", str(short_bert), str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("2 of 5 texts were longer") == 1 and "truncated to it" in result.output
    result = CliRunner().invoke(main, ["embed", str(short_bert), str(source), "-o", str(out), "--stride", "4"])
    assert result.exit_code == 1 and "Error: --stride 4 applies to --long-text chunk only" in result.output
    result = CliRunner().invoke(
        main, ["embed", str(short_bert), str(source), "-o", str(out), "--long-text", "chunk", "--pooler", "cls"]
    )
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "needs mean, max or cnn pooling" in errors[0]


def test_projection_head_applies_after_combining(short_bert, tmp_path):
    from safetensors.torch import save_file

    folder = shutil.copytree(short_bert, tmp_path / "projected")
    (folder / "declutr_pooling.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "pooler": {"type": "mean"},
                "normalize": False,
                "feedforward": {"hidden_dims": 8, "activations": "tanh", "at_inference": True},
            }
        ),
        encoding="utf-8",
    )
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(8, 32, generator=generator), torch.randn(8, generator=generator)
    save_file(
        {"feedforward.layers.0.weight": weight, "feedforward.layers.0.bias": bias},
        str(folder / "declutr_pooling.safetensors"),
    )
    text = text_of_tokens(short_bert, 3 * LIMIT)
    expected, _, _ = chunked_mean_by_hand(short_bert, text)
    got = Encoder(str(folder), device="cpu", long_text="chunk")(text)
    np.testing.assert_allclose(
        got, torch.tanh(weight @ torch.from_numpy(expected).float() + bias).numpy(), rtol=1e-4, atol=1e-5
    )


def test_mean_without_special_tokens_weighs_text_tokens_only(short_bert):
    text = text_of_tokens(short_bert, 3 * LIMIT)
    tokens = text_tokens(short_bert, text)
    windows = windows_by_hand(len(tokens), LIMIT - 2, 0)
    expected = torch.cat([h[1:-1] for h in window_hidden_states(short_bert, tokens, windows)]).mean(0).numpy()
    encoder = Encoder(
        str(short_bert), device="cpu", long_text="chunk", pooler={"type": "mean", "exclude_special_tokens": True}
    )
    np.testing.assert_allclose(encoder(text), expected, rtol=1e-4, atol=1e-5)  # the mean over the text's own tokens
