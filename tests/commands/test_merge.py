"""``declutr merge`` as a user runs it: a merge, the one-line mismatch error, and the alpha sweep."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.commands.merge import format_sweep, stsb_dev_pairs, stsb_score, sweep
from declutr.inference import Encoder
from declutr.io.merge import MERGE_RECORD, Interpolation
from declutr.testing import tiny_declutr_config, train_tiny, write_documents
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


def test_held_out_documents_too_short_are_one_line_before_any_model_loads(run, tmp_path):
    documents = tmp_path / "short.txt"
    documents.write_text("A short document.\nAnother one.\n")
    result = CliRunner().invoke(
        main, ["merge", str(run), "--sweep", "0,1", "--documents", str(documents), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 1 and str(documents) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "merging" not in result.stderr
    assert not (tmp_path / "out").exists()


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


def test_sweep_selects_by_the_chosen_figure_and_scores_bm25_once(run, monkeypatch, tmp_path):
    from declutr.evaluation import same_document

    calls = []
    score = same_document.score_same_document

    def counted(embed, passages, *, bm25=True):
        calls.append(bm25)
        return score(embed, passages, bm25=bm25)

    monkeypatch.setattr(same_document, "score_same_document", counted)
    documents = write_documents(tmp_path / "heldout.jsonl", count=6, words=600)
    passages = same_document.prepare_same_document(documents, passage_words=32)
    interpolation = Interpolation(run)
    encoder = Encoder(run / "model")

    def embedder(state):
        encoder.model.load_state_dict(state, strict=False)
        return encoder.embed

    result = sweep(interpolation, [0.0, 0.5, 1.0], embedder, passages=passages, select="far_mrr")
    assert calls == [True, False, False]
    figures = [row["far"]["model"]["mrr"] for row in result["rows"]]
    assert result["best_alpha"] == [0.0, 0.5, 1.0][figures.index(max(figures))]
    table = format_sweep(result).splitlines()
    assert table[0].split() == ["alpha", "near", "R@1", "near", "MRR", "far", "R@1", "far", "MRR"]
    bm25 = result["bm25"]
    assert table[1].split() == ["BM25", *(f"{bm25[m][k]:.4f}" for m in ("near", "far") for k in ("recall@1", "mrr"))]
    assert sum(line.split()[1] == "*" for line in table[2:5]) == 1
    assert table[-1] == f"selected alpha {result['best_alpha']:g} by far_mrr (*)"


def test_sweep_on_held_out_documents_prints_bm25_and_keeps_the_best(run, sts_dir, tmp_path):
    from declutr.evaluation.same_document import evaluate_same_document

    documents = write_documents(tmp_path / "heldout.jsonl", count=6, words=600)
    args = ("--documents", documents, "--passage-words", "32", "--sts-dir", sts_dir)
    result = run_declutr("merge", run, "--sweep", "0,0.5,1", *args, "-o", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["alpha", "near", "R@1", "near", "MRR", "far", "R@1", "far", "MRR", "STS-B", "dev"]
    assert lines[1].split()[0] == "BM25" and len(lines[1].split()) == 5
    assert lines[-1].endswith("by near_mrr (*)")
    record = json.loads((tmp_path / "best" / MERGE_RECORD).read_text())
    rows = record["sweep"]["rows"]
    best = max(rows, key=lambda row: row["near"]["model"]["mrr"])
    assert record["alpha"] == best["alpha"]
    again = evaluate_same_document(Encoder(tmp_path / "best").embed, str(documents), passage_words=32, bm25=False)
    for mode in ("near", "far"):
        for name, value in again[mode]["model"].items():
            assert best[mode]["model"][name] == pytest.approx(value, abs=1e-6), (mode, name)
