"""A first run is quiet and honest: one line of ours about the checkpoint instead of transformers'
load report, data paths and model paths checked before any weights load."""

from __future__ import annotations

import json

import pytest

from declutr.testing import tiny_declutr_config
from tests.fixtures.declutr_process import run_declutr


@pytest.fixture(scope="module")
def headless(tiny_roberta, tmp_path_factory):
    """The tiny RoBERTa saved without its masked-LM head (as all-MiniLM-L6-v2 is)."""
    from transformers import AutoModel, AutoTokenizer

    directory = tmp_path_factory.mktemp("headless")
    AutoModel.from_pretrained(tiny_roberta).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_roberta).save_pretrained(directory)
    return directory


def config(tmp_path, model, data):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(tiny_declutr_config(model, data, max_steps=1)))
    return path


def test_a_checkpoint_without_a_masked_lm_head_is_one_line(headless, documents_file, tmp_path):
    result = run_declutr("train", config(tmp_path, headless, documents_file), "-s", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "LOAD REPORT" not in result.stderr and "corrupted" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "in the checkpoint" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"{headless}: masked-LM head not in the checkpoint: ")
    assert " tensors initialised (lm_head." in lines[0]


def test_a_missing_data_path_is_reported_before_any_weights_load(headless, tmp_path):
    result = run_declutr("train", config(tmp_path, headless, tmp_path / "missing.jsonl"), "-s", tmp_path / "run")
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"Error: train_data_path: {tmp_path / 'missing.jsonl'}: no such file or directory"
    )
    assert "in the checkpoint" not in result.stderr  # the encoder was never loaded


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model"])
def test_a_missing_model_directory_says_so(tmp_path, documents_file, name):
    result = run_declutr("train", config(tmp_path, name, documents_file), "-s", tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: dataset_reader.tokenizer: {name}: no such model directory (a Hugging Face model is named NAME or ORG/NAME)"
    ]
