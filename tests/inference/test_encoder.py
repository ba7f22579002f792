from __future__ import annotations

import numpy as np
import pytest
import torch

from declutr import Encoder
from declutr.core.errors import DeclutrError

TEXTS = [
    "the captain saw the ship at night",
    "a horse",
    "letters from the village doctor arrived every morning before the winter came to the river house",
    "",
    "window",
    "the garden was still and the mother was in the church on the mountain",
]


@pytest.fixture(scope="module")
def encoder(tiny_bert):
    return Encoder(str(tiny_bert), device="cpu", batch_size=2)


def reference_mean(path, texts):
    """Mean pooling over non-padding tokens (special tokens included), one text at a time."""
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer([text], return_tensors="pt", truncation=True)
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            rows.append(hidden[0].mean(0).numpy())
    return np.stack(rows)


def test_plain_checkpoint_gets_mean_pooling_in_input_order(encoder, tiny_bert):
    vectors = encoder(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), encoder.dimension)
    np.testing.assert_allclose(vectors, reference_mean(tiny_bert, TEXTS), rtol=1e-4, atol=1e-5)
    # batch composition (length sorting, padding) does not change a text's embedding
    np.testing.assert_allclose(encoder(TEXTS[::-1])[::-1], vectors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder(TEXTS, batch_size=64), vectors, rtol=1e-4, atol=1e-5)


def test_single_string_and_text_file(encoder, tmp_path):
    one = encoder(TEXTS[0])
    assert one.shape == (encoder.dimension,)
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")  # trailing newline: no empty text
    from_file = encoder(str(path))
    assert from_file.shape == (3, encoder.dimension)
    np.testing.assert_allclose(from_file, encoder(TEXTS[:3]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder(path), from_file)
    np.testing.assert_allclose(from_file[0], one, rtol=1e-4, atol=1e-5)
    assert encoder([]).shape == (0, encoder.dimension)


def test_normalize_and_sphereize(tiny_bert):
    plain = Encoder(str(tiny_bert), device="cpu")(TEXTS)
    normalized = Encoder(str(tiny_bert), device="cpu", normalize=True)(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(normalized, plain / np.linalg.norm(plain, axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    sphere = Encoder(str(tiny_bert), device="cpu", sphereize=True)
    centred = plain - plain.mean(0)
    np.testing.assert_allclose(
        sphere(TEXTS), centred / np.linalg.norm(centred, axis=1, keepdims=True), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(DeclutrError, match="at least two"):
        sphere(TEXTS[0])


def test_pooler_override(tiny_roberta):
    from transformers import AutoModel, AutoTokenizer

    cls = Encoder(str(tiny_roberta), device="cpu", pooler="cls")(TEXTS[:2])
    model, tokenizer = (
        AutoModel.from_pretrained(str(tiny_roberta)).eval(),
        AutoTokenizer.from_pretrained(str(tiny_roberta)),
    )
    with torch.no_grad():
        hidden = model(**tokenizer([TEXTS[0]], return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(cls[0], hidden[0, 0].numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(DeclutrError, match="pooler"):
        Encoder(str(tiny_roberta), device="cpu", pooler="meen")


def test_sentence_transformers_pooling_mode_is_honoured(tiny_bert, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "st-model")
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        ),
        encoding="utf-8",
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}),
        encoding="utf-8",
    )
    cls = Encoder(str(folder), device="cpu")(TEXTS[:2])
    assert np.allclose(cls, Encoder(str(tiny_bert), device="cpu", pooler="cls")(TEXTS[:2]), atol=1e-5)
    assert not np.allclose(cls, Encoder(str(tiny_bert), device="cpu")(TEXTS[:2]), atol=1e-3)


def test_run_directory_uses_its_model_folder(tiny_bert, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(tiny_bert, run / "model")
    np.testing.assert_allclose(
        Encoder(str(run), device="cpu")(TEXTS[:2]), Encoder(str(tiny_bert), device="cpu")(TEXTS[:2])
    )


def test_bad_model_paths(tmp_path):
    with pytest.raises(DeclutrError, match="does not exist"):
        Encoder(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeclutrError, match="neither a run directory"):
        Encoder(str(tmp_path / "empty"))
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DeclutrError, match="is a file"):
        Encoder(str(tmp_path / "file.txt"))


def test_precision_float32_bfloat16_and_refusals(tiny_bert, tmp_path):
    exact = Encoder(str(tiny_bert), device="cpu", precision="float32")
    np.testing.assert_array_equal(exact(TEXTS), Encoder(str(tiny_bert), device="cpu")(TEXTS))  # auto = fp32 on CPU
    half = Encoder(str(tiny_bert), device="cpu", precision="bfloat16")  # bf16 autocast on the CPU
    vectors = half(TEXTS)
    assert vectors.dtype == np.float32 and half.describe()["precision"] == "bfloat16"
    assert exact.describe()["precision"] == "float32"
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (vectors, exact(TEXTS))]
    difference = np.abs(unit[0] - unit[1]).max()
    assert 0 < difference < 2e-2  # really bf16 arithmetic, and close to float32
    with pytest.raises(DeclutrError, match="float16 needs a CUDA device"):
        Encoder(str(tiny_bert), device="cpu", precision="float16")
    with pytest.raises(DeclutrError, match="precision must be one of"):
        Encoder(str(tiny_bert), device="cpu", precision="fp8")
