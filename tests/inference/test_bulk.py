from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from declutr import Encoder
from declutr.commands import main
from declutr.core.errors import DeclutrError
from declutr.inference.bulk import count_texts, embed_file

TEXTS = [f"the captain wrote letter number {i} " + "and the river " * (i % 7) for i in range(23)]


@pytest.fixture(scope="module")
def encoder(tiny_bert):
    return Encoder(str(tiny_bert), device="cpu", batch_size=4)


def test_text_file_streams_in_chunks_to_npy(encoder, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert count_texts(source, jsonl=False) == len(TEXTS)
    count, dimension = embed_file(encoder, source, tmp_path / "out.npy", chunk_size=5, show_progress=False)
    saved = np.load(tmp_path / "out.npy")
    assert (count, dimension) == saved.shape == (len(TEXTS), encoder.dimension) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, encoder(TEXTS), rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob("*.partial*"))


def test_jsonl_and_normalize(encoder, tmp_path):
    source = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": t, "id": i}) if i % 2 else json.dumps(t) for i, t in enumerate(TEXTS)]
    source.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    embed_file(encoder, source, tmp_path / "out.npy", normalize=True, chunk_size=7, show_progress=False)
    saved = np.load(tmp_path / "out.npy")
    expected = encoder(TEXTS)
    np.testing.assert_allclose(saved, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)
    source.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DeclutrError, match='"text" field'):
        embed_file(encoder, source, tmp_path / "bad.npy", show_progress=False)
    assert not (tmp_path / "bad.npy").exists()


def test_last_line_without_newline_and_blank_lines_kept(encoder, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("first\n\nthird", encoding="utf-8")
    embed_file(encoder, source, tmp_path / "out.npy", show_progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), encoder(["first", "", "third"]), rtol=1e-4, atol=1e-5)


def test_embed_command(tiny_bert, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS[:5]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["embed", str(tiny_bert), str(source), "-o", str(tmp_path / "e.npy"), "--normalize", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "e.npy")
    assert saved.shape[0] == 5
    np.testing.assert_allclose(np.linalg.norm(saved, axis=1), 1.0, rtol=1e-5)
    result = CliRunner().invoke(
        main, ["embed", str(tiny_bert), str(tmp_path / "missing.txt"), "-o", str(tmp_path / "x.npy")]
    )
    assert result.exit_code == 1 and "does not exist" in result.output
    half = [
        "embed",
        str(tiny_bert),
        str(source),
        "-o",
        str(tmp_path / "b.npy"),
        "--normalize",
        "--precision",
        "bfloat16",
    ]
    result = CliRunner().invoke(main, half)
    assert result.exit_code == 0, result.output
    bf16 = np.load(tmp_path / "b.npy")  # bf16 autocast on the CPU: close to float32, not equal
    assert bf16.shape == saved.shape and not np.array_equal(bf16, saved) and np.abs(bf16 - saved).max() < 2e-2
    result = CliRunner().invoke(main, [*half[:-1], "float16", "--device", "cpu"])
    assert result.exit_code == 1 and "float16 needs a CUDA device" in result.output
