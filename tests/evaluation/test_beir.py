"""Retrieval in BEIR's format: loading and its errors, metrics equal to pytrec_eval, blocked exact search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from declutr.core.errors import DeclutrError
from declutr.evaluation import beir
from declutr.evaluation.beir import dense_search, evaluate_beir, evaluate_run, format_beir_table, load_beir
from tests.evaluation.evalhelpers import Recorder

CORPUS = [
    {"_id": "d1", "title": "Rivers", "text": "the river runs to the sea"},
    {"_id": "d2", "title": "", "text": "  a horse in the village  "},
    {"_id": "d3", "title": "Winter", "text": "snow falls on the garden in winter"},
    {"_id": "q2", "title": None, "text": "the doctor rode a horse to the village"},  # shares query q2's id
    {"_id": 5, "text": "a letter came in the morning"},  # no title; a numeric id
]
QUERIES = [
    {"_id": "q1", "text": "where does the river run"},
    {"_id": "q2", "text": "horse village"},
    {"_id": "q3", "text": "winter garden snow"},
    {"_id": "q4", "text": "not judged in this split"},
]
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "q2", 1), ("q3", "d3", 1), ("q3", "5", 0)]


def write_folder(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS, split: str = "test") -> Path:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv (with its header)."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries), encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(map(str, row)) for row in qrels]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def words(texts: list[str]) -> np.ndarray:
    """An integer bag-of-words over a small vocabulary (exact dot products, so no rounding ties)."""
    vocabulary = [
        "river",
        "sea",
        "horse",
        "village",
        "snow",
        "winter",
        "garden",
        "letter",
        "morning",
        "doctor",
        "run",
        "runs",
        "the",
    ]
    return np.array([[text.lower().split().count(word) for word in vocabulary] for text in texts], dtype=np.float32)


# ---------------------------------------------------------------------------------------- metrics


def test_metrics_on_a_hand_computed_ranking():
    # d ranks first (score 0.9, grade -1: no gain); the four tied at 0.5 rank by id descending: e, c, b, a
    qrels = {"q1": {"a": 1, "b": 0, "c": 2, "d": -1}, "q2": {"x": 0}, "q3": {"a": 1}}
    run = {"q1": {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.9, "e": 0.5}, "q2": {"x": 1.0, "y": 0.2}}
    metrics = evaluate_run(qrels, run)
    ndcg = (2 / math.log2(4) + 1 / math.log2(6)) / (2 + 1 / math.log2(3))  # c at rank 3, a at rank 5
    assert metrics["ndcg@10"] == pytest.approx([ndcg, 0, 0], abs=1e-15)
    assert metrics["mrr@10"] == pytest.approx([1 / 3, 0, 0], abs=1e-15)
    assert metrics["recall@100"] == pytest.approx([1, 0, 0], abs=1e-15)
    assert metrics["map@100"] == pytest.approx([(1 / 3 + 2 / 5) / 2, 0, 0], abs=1e-15)


def test_cutoffs_count_only_the_first_10_and_100_ranks():
    ranked = {f"d{i:03d}": 1000.0 - i for i in range(150)}  # d000 first, d149 last
    qrels = {"q": {"d010": 1, "d099": 1, "d100": 3}}
    metrics = evaluate_run(qrels, {"q": ranked})
    assert metrics["mrr@10"][0] == 0  # d010 is at rank 11
    assert metrics["ndcg@10"][0] == 0
    assert metrics["recall@100"][0] == pytest.approx(2 / 3)  # d100 is at rank 101
    assert metrics["map@100"][0] == pytest.approx((1 / 11 + 2 / 100) / 3)


def random_case(rng, ties: bool) -> tuple[dict, dict]:
    """Random qrels (grades -1..3, queries without relevant or any results) and a run over 150+ ids."""
    docs = [f"d{i}" for i in range(rng.integers(1, 150))] + ["x", "é", "D1", "d01"]
    qrels, run = {}, {}
    for q in range(rng.integers(1, 12)):
        judged = rng.choice(docs, size=rng.integers(0, min(len(docs), 15) + 1), replace=False)
        qrels[f"q{q}"] = {str(d): int(rng.integers(-1, 4)) for d in judged}
        if rng.random() < 0.9:
            retrieved = rng.choice(docs, size=rng.integers(0, len(docs) + 1), replace=False)
            run[f"q{q}"] = {str(d): float(rng.integers(0, 5) if ties else rng.random()) for d in retrieved}
    return qrels, run


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_equal_pytrec_eval_on_random_runs(ties):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(23 + ties)
    compared = 0
    for _ in range(150):
        qrels, run = random_case(rng, ties)
        ours = evaluate_run(qrels, run)
        measures = {"ndcg_cut.10", "map_cut.100", "recall.100", "recip_rank"}
        reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        for row, query in enumerate(qrels):
            if query not in reference:  # pytrec_eval leaves out a query without results; ours scores it 0
                assert all(ours[name][row] == 0 for name in beir.METRICS)
                continue
            expected = reference[query]
            reciprocal = expected["recip_rank"] if expected["recip_rank"] >= 1 / 10 else 0.0  # first hit in the top 10
            assert ours["ndcg@10"][row] == pytest.approx(expected["ndcg_cut_10"], abs=1e-12)
            assert ours["map@100"][row] == pytest.approx(expected["map_cut_100"], abs=1e-12)
            assert ours["recall@100"][row] == pytest.approx(expected["recall_100"], abs=1e-12)
            assert ours["mrr@10"][row] == pytest.approx(reciprocal, abs=1e-12)
            compared += 1
    assert compared > 500


# ----------------------------------------------------------------------------------------- search


def test_blocked_search_equals_full_search(monkeypatch):
    rng = np.random.default_rng(0)
    for _ in range(40):
        count, queries = int(rng.integers(1, 300)), int(rng.integers(1, 25))
        passages = rng.integers(-2, 3, size=(count, 4)).astype(np.float32)  # small integers: many exact ties
        query_vectors = rng.integers(-2, 3, size=(queries, 4)).astype(np.float32)
        ties, k = rng.permutation(count), int(rng.integers(1, 120))
        exclude = np.where(rng.random(queries) < 0.5, rng.integers(0, count, queries), -1)
        full = query_vectors @ passages.T
        full[np.flatnonzero(exclude >= 0), exclude[exclude >= 0]] = -np.inf
        expected = np.lexsort((np.broadcast_to(ties, full.shape), -full), axis=1)[:, :k]
        expected = np.where(np.isneginf(np.take_along_axis(full, expected, 1)), -1, expected)
        expected = np.pad(expected, ((0, 0), (0, k - expected.shape[1])), constant_values=-1)
        block = int(rng.integers(1, 130))
        monkeypatch.setattr(beir, "SCORE_BLOCK", int(rng.integers(1, 2000)))  # query blocks of a few rows
        blocks = (passages[start : start + block] for start in range(0, count, block))
        scores, index = dense_search(query_vectors, blocks, k, exclude=exclude, ties=ties)
        assert (index == expected).all()
        assert (scores[index >= 0] == np.take_along_axis(full, np.clip(index, 0, None), 1)[index >= 0]).all()


# ------------------------------------------------------------------------------------- evaluation


def test_load_keeps_the_splits_queries_and_judgements(tmp_path):
    data = load_beir(write_folder(tmp_path), "test")
    assert data.corpus_ids == ["d1", "d2", "d3", "q2", "5"]
    assert data.query_ids == ["q1", "q2", "q3"] and data.queries[1] == "horse village"
    assert data.qrels() == {"q1": {"d1": 1}, "q2": {"d2": 2, "q2": 1}, "q3": {"d3": 1, "5": 0}}
    passages = [text for batch in data.passages(2) for text in batch]
    assert passages[:2] == [
        "Rivers the river runs to the sea",
        "a horse in the village",
    ]  # title + " " + text, stripped
    assert passages[3:] == ["the doctor rode a horse to the village", "a letter came in the morning"]


def brute_force_run(data, ignore_identical_ids: bool) -> dict:
    """Every query against every passage (dot products of ``words``), as a pytrec_eval run."""
    passages = words([text for batch in data.passages() for text in batch])
    scores = words(data.queries) @ passages.T
    return {
        query: {
            doc: float(scores[q, d])
            for d, doc in enumerate(data.corpus_ids)
            if not ignore_identical_ids or doc != query
        }
        for q, query in enumerate(data.query_ids)
    }


@pytest.mark.parametrize("ignore_identical_ids", [True, False])
def test_evaluate_beir_equals_brute_force_search_scored_by_pytrec_eval(tmp_path, ignore_identical_ids):
    data = load_beir(write_folder(tmp_path))
    result = evaluate_beir(words, data, bm25=False, similarity="dot", ignore_identical_ids=ignore_identical_ids)
    assert (result["queries"], result["corpus"], result["split"]) == (3, 5, "test")
    assert "bm25" not in result and result["protocol"]["ignore_identical_ids"] is ignore_identical_ids
    expected = evaluate_run(data.qrels(), brute_force_run(data, ignore_identical_ids))
    assert result["model"] == pytest.approx({name: float(np.mean(values)) for name, values in expected.items()})
    pytrec_eval = pytest.importorskip("pytrec_eval")
    measures = {"ndcg_cut.10", "map_cut.100", "recall.100"}
    reference = pytrec_eval.RelevanceEvaluator(data.qrels(), measures).evaluate(
        brute_force_run(data, ignore_identical_ids)
    )
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("map@100", "map_cut_100"), ("recall@100", "recall_100")):
        assert result["model"][ours] == pytest.approx(np.mean([scores[theirs] for scores in reference.values()]))


def test_identical_ids_are_never_retrieved_by_default(tmp_path, caplog):
    # q2's only text match beside d2 is the passage with id "q2"; it is judged relevant, so a warning says so
    result = evaluate_beir(words, write_folder(tmp_path), bm25=False, similarity="dot")
    assert result["model"]["recall@100"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert "1 relevant judgements pair a query with the passage of the same id" in caplog.text
    kept = evaluate_beir(words, tmp_path, bm25=False, similarity="dot", ignore_identical_ids=False)
    assert kept["model"]["recall@100"] == pytest.approx(1.0)


def test_corpus_streams_in_batches_and_batching_changes_nothing(tmp_path):
    folder = write_folder(tmp_path)
    recorder, sizes = Recorder(), []

    def embed(texts):
        sizes.append(len(texts))
        return recorder(texts)

    small = evaluate_beir(embed, folder, bm25=False, batch_size=2)
    assert sizes == [3, 2, 2, 1]  # the queries, then the corpus 2 passages at a time
    assert recorder.texts[:3] == ["where does the river run", "horse village", "winter garden snow"]
    assert recorder.texts[3] == "Rivers the river runs to the sea"
    assert small["model"] == evaluate_beir(recorder, folder, bm25=False)["model"]


@pytest.mark.parametrize("ignore_identical_ids", [True, False])
def test_bm25_row_equals_full_bm25_scores_ranked_the_same_way(tmp_path, monkeypatch, ignore_identical_ids):
    from declutr.evaluation.bm25 import BM25

    data = load_beir(write_folder(tmp_path))
    monkeypatch.setattr(beir, "SCORE_BLOCK", 5)  # one query per block of scores
    result = evaluate_beir(None, data, ignore_identical_ids=ignore_identical_ids)
    assert "model" not in result and set(result["bm25"]) == set(beir.METRICS)
    passages = [text for batch in data.passages() for text in batch]
    scores = BM25(passages).scores(data.queries)
    run = {
        query: {
            doc: float(scores[q, d])
            for d, doc in enumerate(data.corpus_ids)
            if not ignore_identical_ids or doc != query
        }
        for q, query in enumerate(data.query_ids)
    }
    expected = evaluate_run(data.qrels(), run)
    assert result["bm25"] == pytest.approx({name: float(np.mean(values)) for name, values in expected.items()})
    assert result["bm25"]["recall@100"] == pytest.approx((1 + 0.5 + 1) / 3 if ignore_identical_ids else 1.0)


def test_table_has_a_row_per_system(tmp_path):
    result = evaluate_beir(words, write_folder(tmp_path))
    table = format_beir_table(result, model_name="my-model").splitlines()
    assert table[0].startswith(f"BEIR retrieval, {tmp_path} split test: 3 queries, 5 passages")
    assert table[1].split() == ["nDCG@10", "MRR@10", "R@100", "MAP@100"]
    assert [line.split()[0] for line in table[3:]] == ["BM25", "my-model"]
    assert float(table[4].split()[1]) == round(result["model"]["ndcg@10"], 4)
    assert float(table[3].split()[4]) == round(result["bm25"]["map@100"], 4)


# ----------------------------------------------------------------------------------------- errors


def corrupt(root: Path, name: str, lines: list[str]) -> None:
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


ROWS = [json.dumps(row) for row in CORPUS]
QROWS = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2"]
ERRORS = [
    ("corpus.jsonl", [ROWS[0], ROWS[1], "{not json"], "corpus.jsonl:3: not a JSON object"),
    ("corpus.jsonl", [ROWS[0], "[1, 2]"], "corpus.jsonl:2: expected a JSON object, got list"),
    ("corpus.jsonl", [ROWS[0], '{"text": "no id"}'], 'corpus.jsonl:2: the object has no "_id" field (keys: text)'),
    (
        "corpus.jsonl",
        [ROWS[0], '{"_id": "d9", "text": 3}'],
        'corpus.jsonl:2: the "text" field holds a int, not a string',
    ),
    ("corpus.jsonl", [ROWS[0], "", ROWS[0]], 'corpus.jsonl:3: duplicate _id "d1" (first on line 1)'),
    ("queries.jsonl", ['{"_id": "q1"}'], 'queries.jsonl:1: the object has no "text" field'),
    ("qrels/test.tsv", [*QROWS, "q9\td1\t1"], 'qrels/test.tsv:4: query-id "q9" is not in queries.jsonl'),
    ("qrels/test.tsv", [*QROWS, "q1\tnope\t1"], 'qrels/test.tsv:4: corpus-id "nope" is not in corpus.jsonl'),
    ("qrels/test.tsv", [*QROWS, "q1\td3\t0.5"], "qrels/test.tsv:4: the score '0.5' is not an integer"),
    ("qrels/test.tsv", [*QROWS, "q1 d3 1"], "qrels/test.tsv:4: expected 3 tab-separated fields"),
    ("qrels/test.tsv", [*QROWS, "q1\td1\t2"], "qrels/test.tsv:4: q1 -> d1 scored 2, line 2 scored it 1"),
    ("qrels/test.tsv", QROWS[1:], "qrels/test.tsv:1: expected the header line (query-id, corpus-id, score)"),
    ("qrels/test.tsv", QROWS[:1], "qrels/test.tsv: no judgements"),
]


@pytest.mark.parametrize(
    ("name", "lines", "message"), ERRORS, ids=[e[2].split(":")[0] + str(i) for i, e in enumerate(ERRORS)]
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, name, lines, message):
    folder = write_folder(tmp_path)
    corrupt(folder, name, lines)
    with pytest.raises(DeclutrError) as error:
        evaluate_beir(words, folder, bm25=False)
    assert str(error.value).startswith(str(folder / message.split(":")[0]))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_files_name_the_file_and_the_splits_there_are(tmp_path):
    folder = write_folder(tmp_path, split="dev")
    with pytest.raises(DeclutrError, match=r"qrels/test\.tsv: no such file \(split 'test'; qrels/ has: dev\)"):
        load_beir(folder, "test")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(DeclutrError, match=r"queries\.jsonl: no such file"):
        load_beir(folder, "dev")
    with pytest.raises(DeclutrError, match="not a folder"):
        load_beir(folder / "absent")


def test_a_corpus_changed_after_loading_is_an_error(tmp_path):
    data = load_beir(write_folder(tmp_path))
    corrupt(tmp_path, "corpus.jsonl", ROWS[:3])
    with pytest.raises(DeclutrError, match="changed while it was being evaluated"):
        evaluate_beir(words, data, bm25=False)


def test_an_embed_of_the_wrong_shape_is_one_error(tmp_path):
    folder = write_folder(tmp_path)
    with pytest.raises(DeclutrError, match=r"embed returned shape \[4, 3\] for 3 texts, expected \[3, D\]"):
        evaluate_beir(lambda texts: np.ones((len(texts) + 1, 3)), folder, bm25=False)
    with pytest.raises(DeclutrError, match=r"embed returned shape \[5, 4\] for 5 texts, expected \[5, 3\]"):
        evaluate_beir(lambda texts: np.ones((len(texts), 3 if len(texts) == 3 else 4)), folder, bm25=False)


# ------------------------------------------------------------------------------------ the command


def test_declutr_evaluate_beir_scores_a_model_as_evaluate_beir_does(tmp_path, tiny_roberta):
    from declutr.inference import Encoder
    from tests.fixtures.declutr_process import run_declutr

    folder = write_folder(tmp_path / "beir")
    output = tmp_path / "out.json"
    result = run_declutr(
        "evaluate",
        str(tiny_roberta),
        "--beir",
        str(folder),
        "--beir-split",
        "test",
        "--no-cache",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    assert "BEIR retrieval" in result.stdout and "BM25" in result.stdout
    figures = json.loads(output.read_text())["beir"]
    expected = evaluate_beir(Encoder(str(tiny_roberta)).embed, folder)
    assert figures["queries"] == 3 and figures["bm25"] == pytest.approx(expected["bm25"])
    assert figures["model"] == pytest.approx(expected["model"], abs=1e-6)


def test_declutr_evaluate_reports_a_bad_beir_folder_in_one_line_before_loading_the_model(tmp_path):
    from tests.fixtures.declutr_process import run_declutr

    folder = write_folder(tmp_path / "beir", qrels=[("q1", "unknown", 1)])
    result = run_declutr("evaluate", str(tmp_path / "no-such-model"), "--beir", str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(folder / "qrels" / "test.tsv") in line and "unknown" in line
