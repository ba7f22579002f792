"""Training from scratch: a tokenizer trained on the corpus, a transformer built from an
architecture, masked-LM pretraining on packed windows, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures.declutr_process import run_declutr

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "training_config" / "pretrain_small.jsonnet"
FIXTURES = ROOT / "tests" / "fixtures"
TINY = {
    "vocab_size": None,  # filled with the trained tokenizer's size
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 48,
}


@pytest.fixture(scope="module")
def corpus_tokenizer(documents_file, tmp_path_factory) -> Path:
    """``declutr tokenizer`` on the test documents: a 300-token WordPiece vocabulary."""
    output = tmp_path_factory.mktemp("vocabulary") / "tokenizer"
    result = run_declutr("tokenizer", documents_file, "-o", output, "--vocab-size", 300, "--max-length", 48)
    assert result.returncode == 0, result.stderr
    return output


def overrides(tokenizer: Path, data: Path, **trainer) -> str:
    from transformers import AutoTokenizer

    architecture = {**TINY, "vocab_size": len(AutoTokenizer.from_pretrained(str(tokenizer)))}
    return json.dumps(
        {
            "train_data_path": str(data),
            "validation_data_path": str(data),
            "dataset_reader.tokenizer.max_length": 48,
            "data_loader.batch_size": 4,
            "model.encoder.architecture": architecture,
            "trainer": {"max_steps": 6, "log_every": 1, "checkpoint_every": 3, "validation_every": 6, **trainer},
        }
    )


def test_tokenizer_command_trains_a_loadable_vocabulary(corpus_tokenizer, documents_file):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(corpus_tokenizer))
    assert len(tokenizer) == 300
    assert tokenizer.model_max_length == 48
    ids = tokenizer("The Quick fox")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    record = json.loads((corpus_tokenizer / "vocabulary.json").read_text())
    assert record["documents"] == 12 and record["kind"] == "wordpiece" and record["lowercase"] is True
    again = run_declutr("tokenizer", documents_file, "-o", corpus_tokenizer)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [f"Error: {corpus_tokenizer}: already exists (choose a new folder)"]


def test_pretraining_from_scratch_end_to_end(corpus_tokenizer, documents_file, tmp_path):
    """`declutr train` pretrains the architecture; the export loads as a masked LM and as an
    encoder, and `--recover` from a checkpoint continues the same losses."""
    from transformers import AutoModelForMaskedLM

    from declutr.inference.encoder import Encoder

    run = tmp_path / "run"
    args = ("train", CONFIG, "-s", run, "--ext-var", f"TOKENIZER={corpus_tokenizer}")
    result = run_declutr(*args, "--overrides", overrides(corpus_tokenizer, documents_file))
    assert result.returncode == 0, result.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["mlm_loss"] for m in metrics if "mlm_loss" in m]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert any("validation_mlm_loss" in m for m in metrics)
    # packed windows: every step trains batch x window real tokens, no padding
    assert [m["tokens_seen"] for m in metrics if "mlm_loss" in m] == [4 * 48 * step for step in range(1, 7)]
    masked_lm = AutoModelForMaskedLM.from_pretrained(str(run / "model"))
    assert type(masked_lm).__name__ == "BertForMaskedLM" and masked_lm.config.hidden_size == 32
    embeddings = Encoder(run / "model").embed(["a short sentence", "another one"])
    assert embeddings.shape == (2, 32)
    # pretrained without dropout (the config's 0), continued with it: the encoder's dropout key
    from declutr.modules.encoders import TransformerEncoder

    assert masked_lm.config.hidden_dropout_prob == 0
    continued = TransformerEncoder(str(run / "model"), dropout=0.1).model.config
    assert continued.hidden_dropout_prob == continued.attention_probs_dropout_prob == 0.1

    # killed after step 4 (checkpoint at 3), --recover reproduces the uninterrupted run
    killed_run = tmp_path / "killed"
    given = overrides(corpus_tokenizer, documents_file)
    killer = {"extra_path": [FIXTURES / "killer"], "env": {"DECLUTR_KILL_AT_STEP": "4"}}
    killed = run_declutr(
        *args[:3], killed_run, *args[4:], "--overrides", given, "--include-package", "declutr_kill_at_step", **killer
    )
    assert killed.returncode == -9
    finished = run_declutr(*args[:3], killed_run, *args[4:], "--overrides", given, "--recover")
    assert finished.returncode == 0, finished.stderr
    for name, tensor in AutoModelForMaskedLM.from_pretrained(str(killed_run / "model")).state_dict().items():
        torch.testing.assert_close(tensor, masked_lm.state_dict()[name], rtol=0, atol=1e-6)


def test_windows_are_full_contiguous_and_cover_the_stream(corpus_tokenizer, documents_file, tmp_path):
    from declutr.data.readers import WindowReader
    from declutr.data.tokenizer import TransformerTokenizer

    tokenizer = TransformerTokenizer(str(corpus_tokenizer), max_length=48)
    reader = WindowReader(tokenizer, cache_directory=str(tmp_path))
    index = reader.index(documents_file, progress=False)
    windows = reader.select(index).records
    documents = [np.asarray(index.tokens(i), dtype=np.int64) for i in range(len(index))]
    stream = np.concatenate([np.append(d, tokenizer.hf.sep_token_id) for d in documents])
    assert len(windows) == len(stream) // 46
    rebuilt, masked_separators = [], 0
    for window in windows:
        example = reader.example(index, int(window), np.random.default_rng(int(window)))
        (ids, special), labels = example.anchors[0], example.mlm_labels[0]
        assert len(ids) == 48 and ids[0] == tokenizer.hf.cls_token_id and ids[-1] == tokenizer.hf.sep_token_id
        original = np.where(labels >= 0, labels, ids)[1:-1]
        inner = special[1:-1].astype(bool)
        assert (original[inner] == tokenizer.hf.sep_token_id).all()
        masked_separators += int((labels[1:-1][inner] >= 0).sum())
        rebuilt.append(original)
    assert masked_separators == 0
    # unmasked where not selected; the selected positions' labels are the original ids
    np.testing.assert_array_equal(np.concatenate(rebuilt), stream[: len(windows) * 46])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"model.encoder.architecture.vocab_size": 999},
            "model.encoder.architecture.vocab_size: 999, but the tokenizer of dataset_reader.tokenizer.model_name",
        ),
        (
            {"dataset_reader.tokenizer.max_length": 64},
            "dataset_reader.tokenizer.max_length: 64 tokens, longer than the 48 positions of model.encoder.architecture",
        ),
        (
            {"model.encoder.model_name": "bert-base-uncased"},
            "model.encoder: names both a pretrained model (model_name) and an architecture to build from scratch",
        ),
    ],
)
def test_from_scratch_config_errors(corpus_tokenizer, documents_file, change, message):
    given = json.loads(overrides(corpus_tokenizer, documents_file))
    result = run_declutr(
        "config", CONFIG, "--ext-var", f"TOKENIZER={corpus_tokenizer}", "--overrides", json.dumps({**given, **change})
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.stderr
