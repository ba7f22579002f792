"""Same-document retrieval: a label-free measure of embeddings on the user's own documents.

    from declutr import Encoder
    from declutr.evaluation.same_document import evaluate_same_document, format_same_document
    results = evaluate_same_document(Encoder("runs/my-run"), "held_out.jsonl")
    print(format_same_document(results, "my-run"))

Exactly the protocol of docs/evaluation.md, "Same-document retrieval". Each held-out document
of ``L`` words (``text.split()``) gives ``k = min(P, L // (4 w))`` pairs of ``w``-word passages (``k = 0``: the document is
skipped, and counted); segment ``j`` covers words ``[j L // k, (j + 1) L // k)``, and a pair is
two passages of it: adjacent at its middle (``near``) or centred at its first and third
quarters (``far``). Every candidate passage of the file forms one corpus; each query's only
relevant item is its own candidate, so the other passages of its document are distractors.
The rank of the relevant item is 1 + the number of other candidates scoring at least as high
(ties count against the model); recall@1, recall@10, MRR and nDCG@10 are means over queries.
Alignment and uniformity (Wang & Isola 2020) describe the geometry of the L2-normalised
embeddings. BM25 (``declutr.evaluation.bm25``) ranks the same pairs as the lexical baseline.

Scores are computed a block of queries at a time (about 32M scores at once), so the corpus
size is bounded by the embeddings, not by a queries x candidates matrix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from declutr.core.errors import DeclutrError
from declutr.evaluation.bm25 import BM25, block_rows

Embed = Callable[[list[str]], np.ndarray]
Documents = str | os.PathLike | Sequence[tuple[str, str]]

MODES = ("near", "far")
#: the metric keys of every row, in table order; the geometry ones only for embeddings
RANK_METRICS = ("recall@1", "recall@10", "mrr", "ndcg@10")
GEOMETRY_METRICS = ("alignment", "uniformity")
METRICS = RANK_METRICS + GEOMETRY_METRICS
#: a document needs at least this many passages' worth of words per pair
WORDS_PER_PAIR = 4


@dataclass(frozen=True)
class PassagePairs:
    """The pairs of one mode: ``queries[i]``'s relevant candidate is ``candidates[i]``; ``document[i]``
    is the index (in the documents read) of the document both come from; ``spans[i]`` the word
    offsets ``(query start, candidate start)`` in it."""

    mode: str
    passage_words: int
    pairs_per_document: int
    queries: list[str]
    candidates: list[str]
    document: np.ndarray
    spans: list[tuple[int, int]]
    documents: int
    skipped_documents: int

    def __len__(self) -> int:
        return len(self.queries)


def read_documents(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(id, text)`` for every record of ``path`` in file and line order, read as training reads
    corpora (``declutr.data.sources``: a file, a folder or a glob; plain text one document per line,
    JSON lines, CSV or Parquet with a ``text`` field, a saved or Hub dataset; gzip and zstd looked
    through). ``id`` is ``file:line`` (``file row N``); an empty
    or undecodable record comes back with the text ``""`` (a document too short, hence skipped)."""
    from declutr.data.sources import AutoFormat

    source = AutoFormat()
    parts = source.parts(path)
    return [
        (parts[record.file].location(record.line), record.texts[0] if record.texts else "")
        for record in source.read_parts(parts)
    ]


def segment_spans(length: int, passage_words: int, pairs_per_document: int, mode: str) -> list[tuple[int, int]]:
    """``(query start, candidate start)`` word offsets of the pairs a document of ``length`` words
    gives (docs/evaluation.md); both passages are ``passage_words`` long. Empty when the document is
    shorter than ``4 * passage_words`` words."""
    w = passage_words
    pairs = min(pairs_per_document, length // (WORDS_PER_PAIR * w))
    spans = []
    for j in range(pairs):
        start, end = j * length // pairs, (j + 1) * length // pairs
        n = end - start
        if mode == "near":
            middle = start + n // 2
            spans.append((middle - w, middle))
        else:
            spans.append((start + n // 4 - w // 2, start + 3 * n // 4 - w // 2))
    return spans


def check_settings(passage_words: int, pairs_per_document: int, modes: Iterable[str]) -> tuple[str, ...]:
    """The modes, after checking the three settings (one ``DeclutrError`` line for the first bad one)."""
    if not _positive_integer(passage_words):
        raise DeclutrError(f"passage length must be a positive number of words, got {passage_words!r}")
    if not _positive_integer(pairs_per_document):
        raise DeclutrError(f"pairs per document must be a positive integer, got {pairs_per_document!r}")
    modes = tuple(modes)
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise DeclutrError(f"same-document retrieval modes are near and far, got {', '.join(modes) or 'none'}")
    return tuple(dict.fromkeys(modes))


def _positive_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def passage_pairs(
    documents: Sequence[tuple[str, str]],
    passage_words: int = 64,
    pairs_per_document: int = 4,
    mode: str = "near",
    source: str = "the documents given",
) -> PassagePairs:
    """Cut ``documents`` (``(id, text)``, in order) into the pairs of ``mode``; raises a one-line
    ``DeclutrError`` naming ``source`` when no document is long enough for a single pair."""
    check_settings(passage_words, pairs_per_document, [mode])
    queries, candidates, owners, spans = [], [], [], []
    skipped = longest = 0
    for number, (_, text) in enumerate(documents):
        words = text.split()
        longest = max(longest, len(words))
        pairs = segment_spans(len(words), passage_words, pairs_per_document, mode)
        skipped += not pairs
        for query, candidate in pairs:
            queries.append(" ".join(words[query : query + passage_words]))
            candidates.append(" ".join(words[candidate : candidate + passage_words]))
            owners.append(number)
            spans.append((query, candidate))
    if not documents:
        raise DeclutrError(f"{source}: no documents to cut passages from")
    if not queries:
        raise DeclutrError(
            f"{source}: no document is long enough for same-document retrieval with {passage_words}-word passages: "
            f"a document needs at least {WORDS_PER_PAIR * passage_words} words "
            f"(the longest of {len(documents)} has {longest})"
        )
    return PassagePairs(
        mode,
        passage_words,
        pairs_per_document,
        queries,
        candidates,
        np.asarray(owners, dtype=np.int64),
        spans,
        len(documents),
        skipped,
    )


# ---------------------------------------------------------------------- ranks and metrics


def relevant_ranks(score_blocks: Iterable[tuple[int, np.ndarray]], relevant: np.ndarray | None = None) -> np.ndarray:
    """The rank of each query's relevant candidate from its scores, given block by block as
    ``(first query, [rows, C] scores)``: 1 + the number of *other* candidates scoring at least
    as high (ties count against the model; a NaN score counts as the lowest). ``relevant[i]`` is
    query ``i``'s relevant column (default: column ``i``)."""
    ranks = []
    for start, scores in score_blocks:
        scores = np.where(np.isnan(scores), -np.inf, scores)
        rows = np.arange(len(scores))
        columns = rows + start if relevant is None else np.asarray(relevant)[start : start + len(scores)]
        target = scores[rows, columns]
        ranks.append((scores >= target[:, None]).sum(axis=1))  # the relevant item counts itself: 1 + others
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """recall@1, recall@10, MRR (mean of 1/rank over all ranks) and nDCG@10 (one relevant item:
    ``1 / log2(1 + rank)`` when ``rank <= 10``, else 0), means over queries."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@10": float(np.mean(ranks <= 10)),
        "mrr": float(np.mean(1.0 / ranks)),
        "ndcg@10": float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(1.0 + ranks), 0.0))),
    }


def normalized(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as float64 rows of unit L2 norm (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def alignment(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Wang & Isola's alignment: the mean of ``||q - c||^2`` over the pairs (unit vectors)."""
    return float(np.mean(np.sum((queries - candidates) ** 2, axis=1)))


def uniformity(vectors: np.ndarray, t: float = 2.0, block: int | None = None) -> float:
    """Wang & Isola's uniformity: ``log`` of the mean of ``exp(-t ||x - y||^2)`` over all pairs of
    distinct rows ``x != y`` of ``vectors`` (unit vectors), summed ``block`` rows at a time."""
    count = len(vectors)
    if count < 2:
        return float("nan")
    squared = np.sum(vectors**2, axis=1)
    total = 0.0
    step = block or block_rows(count)
    for start in range(0, count, step):
        rows = vectors[start : start + step]
        distances = np.maximum(squared[start : start + step, None] + squared[None, :] - 2 * rows @ vectors.T, 0.0)
        distances[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf  # x == y: left out
        total += float(np.exp(-t * distances).sum())
    return math.log(total / (count * (count - 1)))


def embedding_metrics(
    query_vectors: np.ndarray, candidate_vectors: np.ndarray, block: int | None = None
) -> dict[str, float]:
    """The model's row: ranks by cosine similarity, then alignment and uniformity over the query
    and candidate passages, all on L2-normalised embeddings (float64), ``block`` query rows at a
    time (default: about 32M scores)."""
    queries, candidates = normalized(query_vectors), normalized(candidate_vectors)
    step = block or block_rows(len(candidates))
    blocks = ((start, queries[start : start + step] @ candidates.T) for start in range(0, len(queries), step))
    return {
        **rank_metrics(relevant_ranks(blocks)),
        "alignment": alignment(queries, candidates),
        "uniformity": uniformity(np.concatenate([queries, candidates]), block=block),
    }


def bm25_metrics(pairs: PassagePairs) -> dict[str, float]:
    """The BM25 row: the candidates indexed (the protocol's tokens, k1, b and Lucene idf), each
    query scored against all of them, block by block."""
    index = BM25(pairs.candidates)
    return rank_metrics(relevant_ranks(index.iter_scores(pairs.queries)))


def embed_passages(embed: Embed, pairs: PassagePairs) -> tuple[np.ndarray, np.ndarray]:
    """The query and candidate embeddings, from one call of ``embed`` (queries first)."""
    texts = pairs.queries + pairs.candidates
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise DeclutrError(f"the embedding function returned shape {vectors.shape} for {len(texts)} passages")
    return vectors[: len(pairs)], vectors[len(pairs) :]


# ---------------------------------------------------------------------- entry point and table


def load_documents(documents: Documents) -> tuple[list[tuple[str, str]], str]:
    """``(documents, how to name them in errors)`` from a path or a list of ``(id, text)``."""
    if isinstance(documents, (str, os.PathLike)):
        return read_documents(documents), str(documents)
    documents = list(documents)
    if not all(isinstance(item, (tuple, list)) and len(item) == 2 for item in documents):
        raise DeclutrError("documents must be a path or a list of (id, text) pairs")
    return [(str(name), str(text)) for name, text in documents], "the documents given"


def prepare_same_document(
    documents: Documents,
    *,
    passage_words: int = 64,
    pairs_per_document: int = 4,
    modes: Sequence[str] = MODES,
) -> dict[str, PassagePairs]:
    """The pairs of every mode, cut before any model is needed: a command can check the documents
    (and report a file whose documents are all too short) before it loads a model."""
    modes = check_settings(passage_words, pairs_per_document, modes)
    loaded, source = load_documents(documents)
    return {mode: passage_pairs(loaded, passage_words, pairs_per_document, mode, source) for mode in modes}


def score_same_document(embed: Embed | None, prepared: dict[str, PassagePairs], *, bm25: bool = True) -> dict:
    """Score ``embed`` (and/or BM25) on pairs from :func:`prepare_same_document`; the result of
    :func:`evaluate_same_document`."""
    if embed is None and not bm25:
        raise DeclutrError("nothing to evaluate: give an embedding function, BM25, or both")
    results = {}
    for mode, pairs in prepared.items():
        result: dict = {
            "queries": len(pairs),
            "documents": pairs.documents,
            "skipped_documents": pairs.skipped_documents,
        }
        if embed is not None:
            result["model"] = embedding_metrics(*embed_passages(embed, pairs))
        if bm25:
            result["bm25"] = bm25_metrics(pairs)
        results[mode] = result
    return results


def evaluate_same_document(
    embed: Embed | None,
    documents: Documents,
    *,
    passage_words: int = 64,
    pairs_per_document: int = 4,
    modes: Sequence[str] = MODES,
    bm25: bool = True,
) -> dict:
    """Same-document retrieval (docs/evaluation.md) of ``embed`` on held-out ``documents``.

    ``embed`` maps a list of texts to ``[N, D]`` embeddings (a :class:`declutr.Encoder`, a cached
    one, any function), or is ``None`` for the BM25 row only. ``documents`` is a path read as
    training reads corpora (:func:`read_documents`) or a list of ``(id, text)``.

    Returns ``{mode: {"queries": int, "documents": int, "skipped_documents": int, "model":
    {metric: value}, "bm25": {metric: value}}}`` for each of ``modes`` (``model`` only with
    ``embed``, ``bm25`` only with ``bm25``); metrics ``recall@1``, ``recall@10``, ``mrr``,
    ``ndcg@10`` and, for the model, ``alignment`` and ``uniformity``. Raises a one-line
    :class:`~declutr.core.DeclutrError` when no document is long enough (at least ``4 *
    passage_words`` words)."""
    prepared = prepare_same_document(
        documents, passage_words=passage_words, pairs_per_document=pairs_per_document, modes=modes
    )
    return score_same_document(embed, prepared, bm25=bm25)


def protocol(passage_words: int, pairs_per_document: int, documents: str | None = None) -> dict:
    """What the figures mean, for a results file."""
    return {
        "name": "same-document retrieval (docs/evaluation.md)",
        **({"documents": documents} if documents else {}),
        "passage_words": passage_words,
        "pairs_per_document": pairs_per_document,
        "pairs": f"min(P, L // {WORDS_PER_PAIR * passage_words}) per document of L words; near = adjacent "
        "passages at a segment's middle, far = passages centred at its first and third quarters",
        "scores": "cosine similarity of the embeddings; BM25 k1=1.5 b=0.75, Lucene idf over the candidates, "
        'tokens re.findall(r"\\w+", text.lower()), a repeated query term counted once',
        "ranks": "1 + the number of other candidates scoring at least as high (ties count against the model)",
        "geometry": "alignment = mean ||q - c||^2, uniformity = log mean exp(-2 ||x - y||^2) over all pairs "
        "x != y of query and candidate passages; on L2-normalised embeddings",
    }


def format_same_document(results: dict, model_name: str = "model") -> str:
    """The results as the markdown table of issue 23: one BM25 row and one model row per mode,
    under a line giving the queries and skipped documents of each mode."""
    header = ["mode", "model", "R@1", "R@10", "MRR", "nDCG@10", "alignment", "uniformity"]
    lines = [
        "same-document retrieval: "
        + "; ".join(
            f"{mode} {result['queries']} queries, {result['skipped_documents']} of "
            f"{result.get('documents', '?')} documents skipped"
            for mode, result in results.items()
        ),
        _row(header),
        "|" + "---|" * len(header),
    ]
    for mode, result in results.items():
        for key, name in (("bm25", "BM25"), ("model", model_name)):
            if key in result:
                values = [f"{result[key][metric]:.4f}" if metric in result[key] else "" for metric in METRICS]
                lines.append(_row([mode, name, *values]))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "|" + "".join(f" {cell} |" if cell else " |" for cell in cells)


def display_name(model: str | os.PathLike) -> str:
    """A short name for a model in the table: its folder's name (the run directory's or the
    package's when the folder is just called ``model``)."""
    path = Path(str(model).rstrip("/\\"))
    return path.parent.name if path.name == "model" and path.parent.name else path.name or str(model)
