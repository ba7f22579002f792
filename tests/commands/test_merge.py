"""``declutr merge`` as a user runs it: a merge, the one-line mismatch error, and the alpha sweep."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.commands.merge import format_sweep, stsb_dev_pairs, stsb_score, sweep
from declutr.inference import Encoder
from declutr.io.merge import MERGE_RECORD, Interpolation
from declutr.testing import tiny_declutr_config, train_tiny
from tests.evaluation.senteval_files import write_all
from tests.fixtures.declutr_process import run_declutr


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tiny_roberta, documents_file, tmp_path_factory) -> Path:
    """A 2-step DeCLUTR run (with masked-LM) from ``tiny_roberta``."""
    directory = tmp_path_factory.mktemp("merge-cli") / "run"
    train_tiny(tiny_declutr_config(tiny_roberta, documents_file, max_steps=2), directory)
    trainer_log = logging.getLogger("declutr")  # training in this process left it writing to run/out.log
    for handler in list(trainer_log.handlers):
        trainer_log.removeHandler(handler)
        handler.close()
    return directory


@pytest.fixture(scope="module")
def sts_dir(tmp_path_factory) -> Path:
    return write_all(tmp_path_factory.mktemp("senteval") / "downstream")


def test_merge_writes_an_export_and_says_what_it_kept(run, tiny_roberta, tmp_path):
    result = run_declutr("merge", run, "--alpha", "0.5", "-o", tmp_path / "merged")
    assert result.returncode == 0, result.stderr
    assert f"with {tiny_roberta}" in result.stderr  # the start model, read from the run's config.json
    assert "kept from the trained model (the start model has no such part): lm_head." in result.stderr
    record = json.loads((tmp_path / "merged" / MERGE_RECORD).read_text())
    assert record["alpha"] == 0.5 and record["start"] == str(tiny_roberta.resolve())
    assert Encoder(tmp_path / "merged").embed(["A letter came."]).shape == (1, 32)

    again = run_declutr("merge", run, "--alpha", "0.5", "-o", tmp_path / "merged")
    assert again.returncode == 1 and "exists; remove it or pass --force" in again.stderr


def test_a_mismatch_is_one_error_line_and_nothing_is_written(run, tiny_bert, tmp_path):
    before = folder_state(run)
    result = run_declutr("merge", run, "--start", tiny_bert, "--alpha", "0.5", "-o", tmp_path / "merged")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    expected = (
        f"embeddings.word_embeddings.weight is 400x32 in the trained model but 362x32 in the start model {tiny_bert}"
    )
    assert errors == [f"Error: cannot merge: {expected}"]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert folder_state(run) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --alpha A"),
        (("--alpha", "0.5", "--sweep", "0,1"), "not both"),
        (("--sweep", "0,1"), "--sweep needs held-out documents"),
        (("--sweep", "0,x", "--sts-dir", "."), "'x' is not a number"),
        (("--alpha", "0.5", "--sts-dir", "."), "apply to --sweep only"),
        (("--sweep", "0,1", "--sts-dir", ".", "--select", "near_mrr"), "--select near_mrr needs --documents"),
        (("--sweep", "0,1", "--sts-dir", "no-such-dir"), "STSBenchmark: missing"),
    ],
)
def test_option_mistakes_are_one_line_before_any_model_loads(run, tmp_path, args, message):
    result = CliRunner().invoke(main, ["merge", str(run), *args, "-o", str(tmp_path / "merged")])
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "merging" not in result.stderr and not (tmp_path / "merged").exists()


def test_sweep_on_sts_b_dev_keeps_the_best_alpha(run, sts_dir, tmp_path):
    result = run_declutr("merge", run, "--sweep", "0,0.5,1", "--sts-dir", sts_dir, "-o", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["alpha", "STS-B", "dev"]
    assert [line.split()[0] for line in lines[1:4]] == ["0", "0.5", "1"]
    assert sum(line.split()[1] == "*" for line in lines[1:4]) == 1
    record = json.loads((tmp_path / "best" / MERGE_RECORD).read_text())
    rows = record["sweep"]["rows"]
    best = max(rows, key=lambda row: row["stsb"])
    assert record["alpha"] == best["alpha"] == record["sweep"]["best_alpha"]
    assert record["sweep"]["select"] == "stsb"
    pairs = stsb_dev_pairs(str(sts_dir))
    assert stsb_score(Encoder(tmp_path / "best").embed, pairs) == pytest.approx(best["stsb"], abs=1e-6)
    assert stsb_score(Encoder(run).embed, pairs) == pytest.approx(rows[-1]["stsb"], abs=1e-6)


def test_sweep_selects_by_same_document_retrieval_and_scores_bm25_once(run, monkeypatch):
    """With a stand-in for ``declutr.evaluation.same_document`` (its figures made from the embeddings)."""
    calls = []

    def evaluate_same_document(embed, documents, *, passage_words, pairs_per_document, modes, bm25):
        calls.append(bm25)
        vectors = embed(["one passage of a document", "another passage of it"])
        figure = float(np.abs(vectors).mean())
        rank = {"recall@1": figure, "recall@10": 1.0, "mrr": figure / 2, "ndcg@10": figure}
        return {
            mode: {
                "queries": 2,
                "skipped_documents": 0,
                "model": {**rank, "alignment": 1.0, "uniformity": -2.0},
                **({"bm25": {"recall@1": 0.25, "recall@10": 1.0, "mrr": 0.5, "ndcg@10": 0.6}} if bm25 else {}),
            }
            for mode in modes
        }

    fake = types.ModuleType("declutr.evaluation.same_document")
    fake.evaluate_same_document = evaluate_same_document
    monkeypatch.setitem(sys.modules, "declutr.evaluation.same_document", fake)
    interpolation = Interpolation(run)
    encoder = Encoder(run / "model")

    def embedder(state):
        encoder.model.load_state_dict(state, strict=False)
        return encoder.embed

    result = sweep(interpolation, [0.0, 0.5, 1.0], embedder, documents=["a document"], select="far_mrr")
    assert calls == [True, False, False]
    figures = [row["far"]["model"]["mrr"] for row in result["rows"]]
    assert result["best_alpha"] == [0.0, 0.5, 1.0][int(np.argmax(figures))]
    table = format_sweep(result).splitlines()
    assert table[0].split() == ["alpha", "near", "R@1", "near", "MRR", "far", "R@1", "far", "MRR"]
    assert table[1].split() == ["BM25", "0.2500", "0.5000", "0.2500", "0.5000"]
    assert table[-1] == f"selected alpha {result['best_alpha']:g} by far_mrr (*)"
