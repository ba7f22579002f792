"""Merging a trained model with its start model: alpha 0 is the start, 1 the trained export, 0.5
the average of every tensor; prefixes and heads matched; mismatches refused before any write."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from declutr.core.errors import DeclutrError
from declutr.inference import Encoder
from declutr.io.merge import MERGE_RECORD, Interpolation, MergeError, merge_models
from declutr.testing import tiny_declutr_config, train_tiny

TEXTS = ["The captain went to the island.", "A letter came in the morning, before the winter night."]


def bare_state(model: str | Path) -> dict[str, torch.Tensor]:
    """The transformer's tensors as ``AutoModel`` names them (whatever prefix the file has)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model)).state_dict()


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show a folder was not touched)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["roberta", "bert"])
def tiny_run(request, tmp_path_factory, documents_file) -> tuple[Path, Path]:
    """``(run directory, start checkpoint)``: 2 steps of DeCLUTR. The RoBERTa run trains with
    masked-LM (its export holds ``roberta.`` tensors and an ``lm_head``); the BERT run without
    (its export holds bare ``BertModel`` tensors while the start checkpoint's carry ``bert.``)."""
    start = request.getfixturevalue(f"tiny_{request.param}")
    config = tiny_declutr_config(start, documents_file, max_steps=2)
    if request.param == "bert":
        config["model"]["mlm_weight"] = 0.0
        config["dataset_reader"]["mlm_probability"] = None
    run = tmp_path_factory.mktemp(f"merge-{request.param}") / "run"
    train_tiny(config, run)
    trainer_log = logging.getLogger("declutr")  # training in this process left it writing to run/out.log
    for handler in list(trainer_log.handlers):
        trainer_log.removeHandler(handler)
        handler.close()
    return run, start


def test_alpha_0_is_the_start_model_1_the_trained_and_half_the_average(tiny_run, tmp_path):
    run, start = tiny_run
    before = folder_state(run)
    start_vectors, trained_vectors = Encoder(start).embed(TEXTS), Encoder(run).embed(TEXTS)
    assert np.abs(start_vectors - trained_vectors).max() > 1e-3  # training moved the weights

    # start read from the run's config.json (model.encoder.model_name)
    assert np.array_equal(Encoder(merge_models(run, None, 0.0, tmp_path / "zero")).embed(TEXTS), start_vectors)
    assert np.array_equal(Encoder(merge_models(run, None, 1.0, tmp_path / "one")).embed(TEXTS), trained_vectors)

    half = merge_models(run, str(start), 0.5, tmp_path / "half")
    merged, trained, initial = bare_state(half), bare_state(run / "model"), bare_state(start)
    assert merged.keys() >= trained.keys() - {"pooler.dense.weight", "pooler.dense.bias"}
    for name, tensor in merged.items():
        if name.startswith("pooler."):  # not in the export; AutoModel initialises it at random
            continue
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (trained[name] + initial[name]) / 2, rtol=0, atol=1e-6, msg=name)
        else:
            assert torch.equal(tensor, trained[name]), name

    record = json.loads((half / MERGE_RECORD).read_text())
    assert record["alpha"] == 0.5 and record["start"] == str(Path(start).resolve())
    assert record["trained"] == str((run / "model").resolve())
    assert folder_state(run) == before  # the run directory, its export and checkpoints only read


def test_a_masked_lm_head_only_the_trained_model_has_is_kept(tiny_run, tmp_path):
    from safetensors.torch import load_file

    run, _ = tiny_run
    interpolation = Interpolation(run)
    exported = load_file(str(run / "model" / "model.safetensors"))
    heads = [name for name in exported if name.startswith(("lm_head.", "cls."))]
    if not heads:  # the BERT run trained without masked-LM: nothing beyond the transformer
        assert interpolation.kept_from_trained == []
        return
    assert sorted(interpolation.kept_from_trained) == sorted(heads)
    assert any("kept from the trained model" in line for line in interpolation.summary())
    merged = load_file(str(interpolation.save(0.25, tmp_path / "merged") / "model.safetensors"))
    for name in heads:
        assert torch.equal(merged[name], exported[name]), name
    assert json.loads((tmp_path / "merged" / MERGE_RECORD).read_text())["kept_from_trained"] == (
        interpolation.kept_from_trained
    )


def test_the_merge_is_a_full_export_that_sentence_transformers_loads(tiny_run, tmp_path):
    run, _ = tiny_run
    merged = merge_models(run, None, 0.5, tmp_path / "merged")
    exported = {p.name for p in (run / "model").iterdir()}
    assert exported | {MERGE_RECORD} == {p.name for p in merged.iterdir()}
    vectors = Encoder(merged).embed(TEXTS)
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    sentence_transformers = pytest.importorskip("sentence_transformers")
    encoded = sentence_transformers.SentenceTransformer(str(merged), device="cpu").encode(TEXTS)
    assert np.abs(encoded - vectors).max() <= 1e-5


def one_layer_copy(model: Path, directory: Path) -> Path:
    """``model`` with its second layer removed (every ``encoder.layer.1`` tensor missing)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    full = AutoModelForMaskedLM.from_pretrained(str(model))
    config = full.config
    config.num_hidden_layers = 1
    smaller = AutoModelForMaskedLM.from_config(config)
    smaller.load_state_dict(full.state_dict(), strict=False)
    smaller.save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(model)).save_pretrained(str(directory))
    return directory


def test_tensors_that_differ_in_name_or_shape_are_refused_before_anything_is_written(
    tiny_run, tiny_roberta, tiny_bert, tmp_path
):
    run, start = tiny_run
    other = tiny_bert if start == tiny_roberta else tiny_roberta  # another vocabulary size
    with pytest.raises(MergeError, match=r"^cannot merge: encoder\.layer\.1\.\S+ \(\S+\) of the trained model is not"):
        merge_models(run, str(one_layer_copy(Path(start), tmp_path / "one-layer")), 0.5, tmp_path / "out")
    with pytest.raises(
        MergeError, match=r"^cannot merge: \S+ is \d+x\d+ in the trained model but \d+x\d+ in the start"
    ):
        merge_models(run, str(other), 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["one-layer"]  # no staging folder left behind


def test_outputs_that_would_replace_or_enter_an_input_are_refused(tiny_run, tmp_path):
    run, start = tiny_run
    for output in (run, run / "model", run / "checkpoints", run / "model" / "inside", run.parent, Path(start)):
        with pytest.raises(MergeError, match="which the merge reads"):
            merge_models(run, None, 0.5, output)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(MergeError, match="exists"):
        merge_models(run, None, 0.5, tmp_path / "taken")
    with pytest.raises(DeclutrError, match="between 0 and 1"):
        merge_models(run, None, 1.5, tmp_path / "out")
    assert merge_models(run, None, 0.5, run / "merged") == run / "merged"  # beside model/, inside the run: fine
    shutil.rmtree(run / "merged")


def test_a_projection_head_used_at_inference_is_kept_from_the_trained_model(tiny_roberta, documents_file, tmp_path):
    config = tiny_declutr_config(tiny_roberta, documents_file, max_steps=2)
    config["model"]["feedforward"] = {"hidden_dims": [16], "at_inference": True}
    train_tiny(config, tmp_path / "run")
    interpolation = Interpolation(tmp_path / "run")
    assert "kept from the trained model: its projection head (declutr_pooling.safetensors)" in interpolation.summary()
    merged = interpolation.save(1.0, tmp_path / "merged")
    weights = "declutr_pooling.safetensors"
    assert (merged / weights).read_bytes() == (tmp_path / "run" / "model" / weights).read_bytes()
    assert weights in json.loads((merged / MERGE_RECORD).read_text())["kept_from_trained"]
    vectors = Encoder(merged).embed(TEXTS)
    assert vectors.shape == (2, 16) and np.array_equal(vectors, Encoder(tmp_path / "run").embed(TEXTS))


def test_a_sentence_transformers_start_with_a_pooler_layer(tiny_run, tmp_path):
    """The start as a sentence-transformers folder of a bare model (pooler layer included, Normalize
    module): its pooler is left out and listed, and alpha 0 embeds as the start does."""
    from transformers import AutoModel, AutoTokenizer

    from declutr.testing import normalizing_sentence_transformers_copy

    run, start = tiny_run
    AutoModel.from_pretrained(str(start)).save_pretrained(tmp_path / "bare")
    AutoTokenizer.from_pretrained(str(start)).save_pretrained(str(tmp_path / "bare"))
    folder = normalizing_sentence_transformers_copy(tmp_path / "bare", tmp_path / "sentence-transformers")
    interpolation = Interpolation(run, start=str(folder))
    assert interpolation.ignored_from_start == ["pooler.dense.bias", "pooler.dense.weight"]
    assert "not in the trained model, left out: pooler.dense.bias, pooler.dense.weight of the start model" in (
        interpolation.summary()
    )
    vectors = Encoder(interpolation.save(0.0, tmp_path / "zero")).embed(TEXTS)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.abs(vectors - Encoder(folder).embed(TEXTS)).max() <= 1e-6
