"""Retrieval on your own labelled queries, in BEIR's folder format, scored as BEIR and MTEB score it.

    from declutr import Encoder
    from declutr.evaluation.beir import evaluate_beir, format_beir_table

    encoder = Encoder("runs/my-model")
    result = evaluate_beir(encoder.embed, "my-labels", split="test")
    print(format_beir_table(result))

The folder (docs/beir.md): ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, after a
header line). A passage is embedded as BEIR and MTEB embed it: ``(title + " " + text).strip()``.
The split's queries (those its qrels name) are searched exhaustively; metrics are nDCG@10,
MRR@10, recall@100 and MAP@100, defined as ``pytrec_eval`` (trec_eval) defines ``ndcg_cut``,
``recip_rank``, ``recall`` and ``map_cut``, and averaged over every query of the split.

Memory: the corpus is read twice as a stream (ids first, to check the qrels; then texts,
``batch_size`` passages per ``embed`` call), each batch's vectors are scored against the queries
in blocks of at most ``SCORE_BLOCK`` scores and folded into a running top 100 per query, so
neither the corpus's embeddings nor a queries x corpus matrix is ever held, nor its texts for the
model's row (the BM25 row, computed after it, indexes them all: ``declutr.evaluation.bm25``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from declutr.core.errors import DeclutrError

logger = logging.getLogger(__name__)

#: the metrics reported, in table order
METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100")
#: how many passages are kept per query (the deepest cutoff of ``METRICS``)
TOP_K = 100
#: trec_eval's default: a judgement counts as relevant from this grade up (nDCG uses every positive grade)
RELEVANCE_LEVEL = 1
#: passages per ``embed`` call while streaming the corpus
CORPUS_BATCH = 8192
#: the most query x passage scores held at once (16 MiB of float32, 32 MiB of argpartition's indices)
SCORE_BLOCK = 1 << 22
PROTOCOL = {
    "name": "BEIR",
    "metrics": "pytrec_eval ndcg_cut.10, recip_rank cut at 10 (BEIR/MTEB MRR@10), recall.100, map_cut.100",
    "passage": '(title + " " + text).strip()',
    "ties": "score descending, then corpus id descending (trec_eval)",
}
SIMILARITIES = ("cosine", "dot")


# ---------------------------------------------------------------------------------------- loading


def _json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file."""
    if not path.is_file():
        raise DeclutrError(f"{path}: no such file (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError as error:
                raise DeclutrError(f"{path}:{number}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            except json.JSONDecodeError as error:
                raise DeclutrError(
                    f"{path}:{number}: not a JSON object ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(obj, dict):
                raise DeclutrError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            yield number, obj


def _field(obj: dict, key: str, where: str, optional: bool = False) -> str:
    value = obj.get(key)
    if key == "_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a numeric id matches its qrels text
    if isinstance(value, str) or (optional and value is None):
        return value or ""
    if key in obj:
        raise DeclutrError(f'{where}: the "{key}" field holds a {type(value).__name__}, not a string')
    raise DeclutrError(f'{where}: the object has no "{key}" field (keys: {", ".join(list(obj)[:8])})')


def passage_text(title: str, text: str) -> str:
    """A passage as BEIR and MTEB embed it: the title, a space and the text, stripped."""
    return (title + " " + text).strip() if title else text.strip()


def _passages(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, _id, title + " " + text)`` for each passage of ``corpus.jsonl``."""
    for number, obj in _json_objects(path):
        where = f"{path}:{number}"
        yield (
            number,
            _field(obj, "_id", where),
            passage_text(_field(obj, "title", where, True), _field(obj, "text", where)),
        )


def _duplicate(path: Path, number: int, key: str, first: int) -> DeclutrError:
    return DeclutrError(f'{path}:{number}: duplicate _id "{key}" (first on line {first})')


@dataclass
class BeirData:
    """A checked BEIR folder: the corpus ids (its texts stay on disk), the split's queries and judgements."""

    folder: Path
    split: str
    corpus_ids: list[str]
    query_ids: list[str]
    queries: list[str]
    #: one row per judgement: query position, corpus position, grade
    judgements: np.ndarray

    @property
    def corpus_file(self) -> Path:
        return self.folder / "corpus.jsonl"

    def passages(self, batch_size: int = CORPUS_BATCH) -> Iterator[list[str]]:
        """The passages' texts, ``batch_size`` at a time, in corpus order (read from disk again)."""
        batch: list[str] = []
        read = 0
        for read, (number, key, text) in enumerate(_passages(self.corpus_file), 1):
            if read > len(self.corpus_ids) or self.corpus_ids[read - 1] != key:
                raise DeclutrError(f"{self.corpus_file}:{number}: the file changed while it was being evaluated")
            batch.append(text)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if read != len(self.corpus_ids):
            raise DeclutrError(f"{self.corpus_file}: the file changed while it was being evaluated")
        if batch:
            yield batch

    def qrels(self) -> dict[str, dict[str, int]]:
        """The judgements as pytrec_eval takes them: ``{query id: {corpus id: grade}}``."""
        qrels: dict[str, dict[str, int]] = {key: {} for key in self.query_ids}
        for query, doc, grade in self.judgements.tolist():
            qrels[self.query_ids[query]][self.corpus_ids[doc]] = grade
        return qrels

    def tie_order(self) -> np.ndarray:
        """Each passage's place among equal scores: trec_eval ranks tied documents by id, descending."""
        order = sorted(range(len(self.corpus_ids)), key=self.corpus_ids.__getitem__, reverse=True)
        places = np.empty(len(order), dtype=np.int64)
        places[order] = np.arange(len(order))
        return places


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirData:
    """Read and check ``folder`` (one line naming the file and line for anything wrong), keeping only ids
    of the corpus. The split's queries are those its qrels name, in their order of first mention."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeclutrError(f"{folder}: not a folder (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        found = f"qrels/ has: {', '.join(splits)}" if splits else "no qrels/*.tsv in the folder"
        raise DeclutrError(f"{qrels_file}: no such file (split {split!r}; {found})")
    corpus_file, queries_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    corpus_ids: list[str] = []
    corpus_index: dict[str, int] = {}
    lines: list[int] = []
    for number, key, _ in _passages(corpus_file):
        if key in corpus_index:
            raise _duplicate(corpus_file, number, key, lines[corpus_index[key]])
        corpus_index[key] = len(corpus_ids)
        corpus_ids.append(key)
        lines.append(number)
    if not corpus_ids:
        raise DeclutrError(f"{corpus_file}: no passages")
    query_texts: dict[str, tuple[int, str]] = {}
    for number, obj in _json_objects(queries_file):
        where = f"{queries_file}:{number}"
        key = _field(obj, "_id", where)
        if key in query_texts:
            raise _duplicate(queries_file, number, key, query_texts[key][0])
        query_texts[key] = (number, _field(obj, "text", where))
    query_ids, judgements = _read_qrels(qrels_file, query_texts, corpus_index)
    return BeirData(folder, split, corpus_ids, query_ids, [query_texts[key][1] for key in query_ids], judgements)


def _read_qrels(path: Path, queries: dict, corpus_index: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """The split's query ids (order of first mention) and its ``[judgements, 3]`` rows."""
    query_index: dict[str, int] = {}
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # (query, passage) -> (grade, line)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DeclutrError(f"{where}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise DeclutrError(
                    f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), found {len(fields)}"
                )
            query, doc, score = fields
            try:
                grade = int(score)
            except ValueError:
                if number == 1:
                    continue  # the header
                raise DeclutrError(f"{where}: the score {score!r} is not an integer") from None
            if number == 1:
                raise DeclutrError(f"{where}: expected the header line (query-id, corpus-id, score), found a judgement")
            if query not in queries:
                raise DeclutrError(f'{where}: query-id "{query}" is not in queries.jsonl')
            if doc not in corpus_index:
                raise DeclutrError(f'{where}: corpus-id "{doc}" is not in corpus.jsonl')
            pair = (query_index.setdefault(query, len(query_index)), corpus_index[doc])
            if pair in seen and seen[pair][0] != grade:
                raise DeclutrError(
                    f"{where}: {query} -> {doc} scored {grade}, line {seen[pair][1]} scored it {seen[pair][0]}"
                )
            seen[pair] = (grade, number)
    if not seen:
        raise DeclutrError(f"{path}: no judgements")
    rows = np.array([(query, doc, grade) for (query, doc), (grade, _) in seen.items()], dtype=np.int64)
    return list(query_index), rows


# ---------------------------------------------------------------------------------------- metrics


def _discounts(width: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))


def _ranked_grades(judgements: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """``[queries, ranks]``: the grade of each ranked document (0: unjudged, or no document)."""
    query, doc, grade = judgements.T
    width = max(int(doc.max(initial=0)), int(ranked.max(initial=0))) + 1
    keys = query * width + doc
    order = np.argsort(keys)
    keys, grade = keys[order], grade[order]
    wanted = np.arange(len(ranked))[:, None] * width + np.clip(ranked, 0, None)
    grades = np.zeros(ranked.shape, dtype=np.int64)
    if len(keys):
        found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        hit = (ranked >= 0) & (keys[found] == wanted)
        grades[hit] = grade[found[hit]]
    return grades


def _ideal_dcg(judgements: np.ndarray, queries: int, depth: int = 10) -> np.ndarray:
    """Each query's DCG@``depth`` of its ideal ranking: its positive grades, highest first."""
    query, _, grade = judgements[judgements[:, 2] > 0].T
    order = np.lexsort((-grade, query))
    query, grade = query[order], grade[order]
    place = np.arange(len(query)) - np.searchsorted(query, query)  # rank within the query's own grades
    ideal = np.zeros((queries, depth))
    ideal[query[place < depth], place[place < depth]] = grade[place < depth]
    return ideal @ _discounts(depth)


def ranking_metrics(judgements: np.ndarray, ranked: np.ndarray) -> dict[str, np.ndarray]:
    """Each query's nDCG@10, MRR@10, recall@100 and MAP@100 as trec_eval computes them.

    ``judgements``: ``[n, 3]`` rows (query, document, grade); ``ranked``: ``[queries, ranks]``
    document numbers in rank order, -1 where a query has fewer. nDCG's gain is the grade where
    positive, the ideal ranking every positive judgement of the query, best first; the other
    metrics count a document relevant from grade ``RELEVANCE_LEVEL`` and divide by the query's
    number of relevant judgements (0 when it has none)."""
    queries = len(ranked)
    grades = _ranked_grades(judgements, ranked)
    dcg = np.maximum(grades[:, :10], 0) @ _discounts(min(10, grades.shape[1]))
    idcg = _ideal_dcg(judgements, queries)
    relevant = judgements[judgements[:, 2] >= RELEVANCE_LEVEL, 0]
    relevant_counts = np.bincount(relevant, minlength=queries).astype(np.float64)

    hits = grades[:, :TOP_K] >= RELEVANCE_LEVEL
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    first = np.argmax(hits[:, :10], axis=1) if hits.shape[1] else np.zeros(queries, dtype=np.int64)
    reciprocal = np.where(hits[:, :10].any(axis=1), 1.0 / (first + 1), 0.0)

    def per_relevant(values):
        return np.divide(values, relevant_counts, out=np.zeros(queries), where=relevant_counts > 0)

    return {
        "ndcg@10": np.divide(dcg, idcg, out=np.zeros(queries), where=idcg > 0),
        "mrr@10": reciprocal,
        "recall@100": per_relevant(hits.sum(axis=1)),
        "map@100": per_relevant((precision * hits).sum(axis=1)),
    }


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """:func:`ranking_metrics` for a run in pytrec_eval's form, one value per query of ``qrels``
    (in its order). A run's documents are ranked as trec_eval ranks them: score descending, ties
    by document id descending. A query absent from ``run`` scores 0 (pytrec_eval leaves it out)."""
    numbers: dict[str, int] = {}
    rows = [
        (q, numbers.setdefault(d, len(numbers)), g) for q, docs in enumerate(qrels.values()) for d, g in docs.items()
    ]
    rankings = []
    for key in qrels:
        ranked = sorted(run.get(key, {}).items(), key=lambda item: (item[1], item[0]), reverse=True)[:TOP_K]
        rankings.append([numbers.setdefault(d, len(numbers)) for d, _ in ranked])
    ranked = np.full((len(rankings), max(map(len, rankings), default=0)), -1, dtype=np.int64)
    for row, docs in enumerate(rankings):
        ranked[row, : len(docs)] = docs
    return ranking_metrics(np.array(rows, dtype=np.int64).reshape(-1, 3), ranked)


# ----------------------------------------------------------------------------------------- search


def _block_top(scores: np.ndarray, k: int, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` columns of each row of ``scores`` (unordered), ties at the cut taken in ``ties`` order."""
    width = scores.shape[1]
    if width <= k:
        columns = np.broadcast_to(np.arange(width), scores.shape).copy()
        return columns, scores.copy()
    columns = np.argpartition(scores, width - k, axis=1)[:, width - k :]
    best = np.take_along_axis(scores, columns, axis=1)
    cut = best.min(axis=1)
    for row in np.flatnonzero((scores >= cut[:, None]).sum(axis=1) > k):  # the k-th score is shared past the cut
        candidates = np.flatnonzero(scores[row] >= cut[row])
        columns[row] = candidates[np.lexsort((ties[candidates], -scores[row, candidates]))[:k]]
        best[row] = scores[row, columns[row]]
    return columns, best


def _above(scores: np.ndarray, floor: np.ndarray, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The columns of each row of ``scores`` at or above the row's ``floor`` (the k-th best so far), padded
    with -1 (score -inf); ``(None, None)`` when some row has too many to merge cheaply (:func:`_block_top` picks)."""
    candidates = scores >= floor[:, None]
    counts = candidates.sum(axis=1)
    most = int(counts.max(initial=0))
    if most > max(k, scores.shape[1] // 8):
        return None, None
    rows, columns = np.nonzero(candidates)
    place = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.full((len(scores), most), -1, dtype=np.int64)
    padded[rows, place] = columns
    best = np.full((len(scores), most), -np.inf, dtype=scores.dtype)
    best[rows, place] = scores[rows, columns]
    return padded, best


class RunningTop:
    """The best ``k`` passages per query so far, ranked as trec_eval ranks: score descending, then
    ``ties`` (each passage's rank among equal scores; default: corpus order). ``exclude[q]``: a
    passage query ``q`` must not retrieve (-1: none). Empty places hold index -1, score -inf."""

    def __init__(self, queries: int, k: int, *, ties=None, exclude=None, dtype=np.float32):
        self.k, self.ties, self.exclude = k, ties, exclude
        self.scores = np.full((queries, k), -np.inf, dtype=dtype)
        self.index = np.full((queries, k), -1, dtype=np.int64)

    def add(self, rows: slice, scores: np.ndarray, offset: int) -> None:
        """Fold in ``scores`` (changed in place) of the queries ``rows`` against passages ``offset, offset + 1, ...``."""
        width = scores.shape[1]
        scores[np.isnan(scores)] = -1.0  # as BEIR's exact search
        if self.exclude is not None:
            excluded = self.exclude[rows] - offset
            hit = np.flatnonzero((excluded >= 0) & (excluded < width))
            scores[hit, excluded[hit]] = -np.inf
        columns, best = _above(scores, self.scores[rows, -1], self.k)  # only what can still enter
        if columns is None:
            order = np.arange(offset, offset + width) if self.ties is None else self.ties[offset : offset + width]
            columns, best = _block_top(scores, self.k, order)
        index = np.where(columns >= 0, columns + offset, -1)
        index = np.concatenate([self.index[rows], index], axis=1)
        merged = np.concatenate([self.scores[rows], best], axis=1)
        rank = index if self.ties is None else self.ties[np.clip(index, 0, None)]
        keep = np.lexsort((np.where(index >= 0, rank, np.iinfo(np.int64).max), -merged), axis=1)[:, : self.k]
        self.index[rows] = np.take_along_axis(index, keep, axis=1)
        self.scores[rows] = np.take_along_axis(merged, keep, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, indices)``, each ``[queries, k]``, best first."""
        self.index[np.isneginf(self.scores)] = -1
        return self.scores, self.index


def dense_search(
    queries: np.ndarray,
    passages: Iterable[np.ndarray],
    k: int = TOP_K,
    *,
    exclude: np.ndarray | None = None,
    ties: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner-product search: ``(scores, indices)``, each ``[queries, k]``, best first
    (see :class:`RunningTop` for ``exclude`` and ``ties``).

    ``passages`` yields the corpus's vectors block by block (as they are embedded); each block is
    scored against the queries at most ``SCORE_BLOCK`` scores at a time and folded into a running
    top ``k``, so no queries x corpus matrix is ever held."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    top = RunningTop(len(queries), k, ties=ties, exclude=exclude)
    offset = 0
    for block in passages:
        block = np.asarray(block, dtype=np.float32)
        step = max(1, SCORE_BLOCK // max(len(block), 1))
        for start in range(0, len(queries), step):
            rows = slice(start, min(start + step, len(queries)))
            top.add(rows, queries[rows] @ block.T, offset)
        offset += len(block)
    return top.result()


# ------------------------------------------------------------------------------------- evaluation


def _vectors(embed: Callable, texts: list[str], similarity: str, dimension: int | None = None) -> np.ndarray:
    """``embed(texts)`` as float32, checked, L2-normalised for cosine similarity."""
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts) or dimension not in (None, vectors.shape[1]):
        expected = f"[{len(texts)}, {dimension or 'D'}]"
        raise DeclutrError(f"embed returned shape {list(vectors.shape)} for {len(texts)} texts, expected {expected}")
    if similarity == "cosine":
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def _means(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values[name].mean()) for name in METRICS}


def evaluate_beir(
    embed: Callable[[list[str]], np.ndarray] | None,
    folder: str | os.PathLike | BeirData,
    *,
    split: str = "test",
    bm25: bool = True,
    batch_size: int = CORPUS_BATCH,
    similarity: str = "cosine",
    ignore_identical_ids: bool = True,
    show_progress: bool | None = None,
) -> dict:
    """Score ``embed`` (any ``Callable[[list[str]], np.ndarray]``, e.g. ``Encoder(path).embed``; None:
    BM25 only) and BM25 on a BEIR folder's ``split``.

    ``folder`` may be a :func:`load_beir` result (check the folder before loading a model).
    ``batch_size``: passages per ``embed`` call while streaming the corpus. ``similarity``:
    ``"cosine"`` (BEIR's default ``cos_sim``: vectors L2-normalised here) or ``"dot"`` (the
    vectors as ``embed`` returns them). ``ignore_identical_ids``: a query never retrieves the
    passage with its own id (BEIR's default; MTEB sets it per task). Returns
    ``{"queries": n, "corpus": m, "model": {metric: value}, "bm25": {...}, "split", "folder", "protocol"}``
    (no ``model`` when ``embed`` is None, no ``bm25`` when ``bm25`` is False)."""
    if similarity not in SIMILARITIES:
        raise DeclutrError(f'similarity must be "cosine" or "dot", got {similarity!r}')
    if batch_size <= 0:
        raise DeclutrError(f"batch_size must be positive, got {batch_size}")
    data = folder if isinstance(folder, BeirData) else load_beir(folder, split)
    exclude = _identical(data) if ignore_identical_ids else None
    ties = data.tie_order()
    result: dict = {
        "protocol": dict(PROTOCOL, similarity=similarity, ignore_identical_ids=ignore_identical_ids),
        "folder": str(data.folder),
        "split": data.split,
        "queries": len(data.query_ids),
        "corpus": len(data.corpus_ids),
    }
    if embed is not None:
        queries = _vectors(embed, data.queries, similarity)
        progress = len(data.corpus_ids) >= 2048 if show_progress is None else show_progress
        texts = _progress(data, batch_size, progress)
        blocks = (_vectors(embed, batch, similarity, queries.shape[1]) for batch in texts)
        _, ranked = dense_search(queries, blocks, TOP_K, exclude=exclude, ties=ties)
        result["model"] = _means(ranking_metrics(data.judgements, ranked))
    if bm25:
        result["bm25"] = _means(ranking_metrics(data.judgements, _bm25_ranking(data, batch_size, exclude, ties)))
    return result


def _identical(data: BeirData) -> np.ndarray:
    """Per query, the corpus position of the passage with the query's own id (-1: none)."""
    positions = {key: i for i, key in enumerate(data.query_ids)}
    exclude = np.full(len(data.query_ids), -1, dtype=np.int64)
    for index, key in enumerate(data.corpus_ids):
        if key in positions:
            exclude[positions[key]] = index
    relevant = data.judgements[:, 2] >= RELEVANCE_LEVEL
    unreachable = int(np.sum(exclude[data.judgements[relevant, 0]] == data.judgements[relevant, 1]))
    if unreachable:
        logger.warning(
            "%d relevant judgements pair a query with the passage of the same id, which ignore_identical_ids "
            "(BEIR's default) never retrieves; pass ignore_identical_ids=False if the ids are unrelated",
            unreachable,
        )
    return exclude


def _progress(data: BeirData, batch_size: int, enabled: bool) -> Iterator[list[str]]:
    from tqdm.auto import tqdm

    with tqdm(total=len(data.corpus_ids), disable=not enabled, unit="passage", desc="corpus", leave=False) as bar:
        for texts in data.passages(batch_size):
            yield texts
            bar.update(len(texts))


def _bm25_ranking(data: BeirData, batch_size: int, exclude: np.ndarray | None, ties: np.ndarray) -> np.ndarray:
    """BM25 (``declutr.evaluation.bm25``) over the same passage texts: the top 100 per query, ranked
    and filtered as the model's are; scores in blocks of at most ``SCORE_BLOCK`` per query block."""
    from declutr.evaluation.bm25 import BM25, block_rows

    index = BM25([text for texts in data.passages(batch_size) for text in texts])
    top = RunningTop(len(data.queries), TOP_K, ties=ties, exclude=exclude, dtype=np.float64)
    for start, scores in index.iter_scores(data.queries, block_rows(len(index), SCORE_BLOCK)):
        top.add(slice(start, start + len(scores)), scores, 0)
    return top.result()[1]


def format_beir_table(result: dict, model_name: str = "model") -> str:
    """A plain-text table: one row per system (BM25, the model) and a column per metric."""
    header = (
        f"BEIR retrieval, {result['folder']} split {result['split']}: {result['queries']:,} queries, "
        f"{result['corpus']:,} passages ({result['protocol']['similarity']}; metrics as pytrec_eval/BEIR/MTEB)"
    )
    names = {"bm25": "BM25", "model": model_name}
    rows = [("", "nDCG@10", "MRR@10", "R@100", "MAP@100")]
    rows += [(names[key], *(f"{result[key][m]:.4f}" for m in METRICS)) for key in ("bm25", "model") if key in result]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([header, *lines])


__all__: Sequence[str] = (
    "METRICS",
    "BeirData",
    "dense_search",
    "evaluate_beir",
    "evaluate_run",
    "format_beir_table",
    "load_beir",
    "passage_text",
    "ranking_metrics",
)
