"""Okapi BM25 on scipy sparse matrices: the lexical baseline of the retrieval evaluations.

    index = BM25(corpus_texts)
    scores = index.scores(query_texts)              # [Q, C] float64, dense
    values, indices = index.search(query_texts, 10)  # top 10 per query, in blocks of queries

Exactly the baseline of the same-document protocol (docs/evaluation.md, "Same-document
retrieval"), so that any implementation gives the same ranks:

- tokens = ``re.findall(r"\\w+", text.lower())``: no stemming, no stop words;
- ``score(q, d) = sum over the query's distinct terms t of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))``
  with ``k1 = 1.5``, ``b = 0.75``, ``tf`` the count of ``t`` in ``d``, ``|d|`` its number of
  tokens and ``avgdl`` their mean over the corpus;
- Lucene's idf ``ln(1 + (N - df + 0.5) / (df + 0.5))`` over the ``N`` corpus texts, ``df`` the
  number of texts holding the term (never negative, unlike Robertson's original);
- a term repeated in the query counts once (each distinct query term adds its weight once).
  This is what reproduces the reference figures of issue 23 exactly (near/far recall@1 0.1173 /
  0.0401); counting it per occurrence, as ``rank_bm25``'s loop over the query's tokens does,
  gives 0.1235 / 0.0370 instead. ``query_terms="repeated"`` selects that variant.

Lucene since 8.0 and ``bm25s`` (``method="lucene"``) leave out the constant ``k1 + 1`` factor;
scores here keep it (classic Okapi), which changes no rank.

Vectorised: the corpus becomes one ``[V, C]`` CSR matrix of per-term weights (the whole
formula above except the query's counts), a block of queries one ``[Q, V]`` CSR matrix of
counts, and their sparse product is the block's scores. Only tokenisation loops in Python.
Query terms absent from the corpus score nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

import numpy as np

TOKEN = re.compile(r"\w+")
#: Okapi BM25's term-frequency saturation and length normalisation (docs/evaluation.md)
K1, B = 1.5, 0.75
#: ``BM25(query_terms=...)``: a repeated query term counts once (``unique``, the reference figures)
#: or per occurrence (``repeated``)
QUERY_TERMS = ("unique", "repeated")
#: dense scores held at once by ``search``/``iter_scores``: query rows x corpus columns
BLOCK_ELEMENTS = 1 << 25


def tokenize(text: str) -> list[str]:
    """the protocol's BM25 tokens: lower-cased runs of word characters."""
    return TOKEN.findall(text.lower())


def idf(num_texts: int, document_frequency: np.ndarray) -> np.ndarray:
    """Lucene's idf ``ln(1 + (N - df + 0.5) / (df + 0.5))``."""
    df = np.asarray(document_frequency, dtype=np.float64)
    return np.log1p((num_texts - df + 0.5) / (df + 0.5))


def block_rows(columns: int, elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of ``columns`` dense scores make a block of about ``elements`` values."""
    return max(1, elements // max(1, columns))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row of ``scores`` ``[Q, C]``: ``(values, indices)``, both ``[Q, k']``
    with ``k' = min(k, C)``, best first; equal scores in ascending index order (deterministic,
    whatever the partition algorithm does)."""
    scores = np.asarray(scores)
    rows, columns = scores.shape
    k = min(int(k), columns)
    if k <= 0:
        return np.zeros((rows, 0), dtype=scores.dtype), np.zeros((rows, 0), dtype=np.int64)
    if k < columns:
        # the k-th best value of each row; take every score above it and, of those equal to it,
        # the first ones in index order until k are taken
        threshold = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above = scores > threshold
        tied = scores == threshold
        needed = k - above.sum(axis=1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= needed))
        indices = np.nonzero(chosen)[1].reshape(rows, k)
    else:
        indices = np.broadcast_to(np.arange(columns), (rows, columns)).copy()
    values = np.take_along_axis(scores, indices, axis=1)
    order = np.lexsort((indices, -values), axis=1) if rows else indices
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(indices, order, axis=1).astype(np.int64)


class BM25:
    """An Okapi BM25 index of ``corpus`` (see the module's docstring).

    # Parameters
    corpus : the texts to rank (passages, documents); their order gives the score columns.
    k1, b : term-frequency saturation and length normalisation (1.5 and 0.75).
    query_terms : ``unique`` (default, the reference figures): a term that occurs twice in a
        query adds its weight once; ``repeated``: twice.
    """

    def __init__(self, corpus: Sequence[str], k1: float = K1, b: float = B, query_terms: str = "unique"):
        from scipy import sparse

        if query_terms not in QUERY_TERMS:
            raise ValueError(f"query_terms must be one of {', '.join(QUERY_TERMS)}, got {query_terms!r}")
        self.k1, self.b, self.query_terms = float(k1), float(b), query_terms
        self.vocabulary: dict[str, int] = {}
        counts = self._count(corpus, grow=True)  # [C, V] term counts
        self.num_texts = counts.shape[0]
        self.lengths = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        self.average_length = float(self.lengths.mean()) if self.num_texts else 0.0
        self.document_frequency = np.bincount(counts.indices, minlength=len(self.vocabulary))
        self.idf = idf(self.num_texts, self.document_frequency)
        tf = counts.data.astype(np.float64)
        rows = np.repeat(np.arange(self.num_texts), np.diff(counts.indptr))
        relative = self.lengths[rows] / self.average_length if self.average_length else np.zeros_like(tf)
        weights = self.idf[counts.indices] * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * relative))
        #: ``[V, C]``: the BM25 weight of each term in each corpus text (the posting lists)
        self.weights = sparse.csr_matrix(
            sparse.csr_matrix((weights, counts.indices, counts.indptr), shape=counts.shape).T
        )

    def __len__(self) -> int:
        return self.num_texts

    def _count(self, texts: Sequence[str], grow: bool):
        """``[len(texts), V]`` CSR counts of the vocabulary's terms in ``texts`` (terms outside it are
        added when ``grow``, else dropped)."""
        from scipy import sparse

        vocabulary = self.vocabulary
        tokens = [tokenize(text) for text in texts]
        if grow:
            ids = [vocabulary.setdefault(token, len(vocabulary)) for text in tokens for token in text]
            lengths = [len(text) for text in tokens]
        else:
            known = [[vocabulary[token] for token in text if token in vocabulary] for text in tokens]
            ids = [i for text in known for i in text]
            lengths = [len(text) for text in known]
        columns = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts)), lengths)
        matrix = sparse.csr_matrix(
            (np.ones(len(columns), dtype=np.float64), (rows, columns)), shape=(len(texts), len(vocabulary))
        )
        matrix.sum_duplicates()  # the COO -> CSR conversion adds repeated (row, term) entries up
        matrix.sort_indices()
        return matrix

    def query_matrix(self, queries: Sequence[str]):
        """``[Q, V]`` CSR: each query's count of every corpus term (1 for each present term with
        ``query_terms="unique"``)."""
        matrix = self._count(queries, grow=False)
        if self.query_terms == "unique":
            matrix.data[:] = 1.0
        return matrix

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """``[len(queries), C]`` float64 BM25 scores of every corpus text for each query (dense:
        call it on blocks of queries, or use :meth:`iter_scores` / :meth:`search`)."""
        return (self.query_matrix(queries) @ self.weights).toarray()

    def iter_scores(self, queries: Sequence[str], block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, scores of queries[start : start + block])`` per block of queries, so that no
        more than ``block x C`` dense scores exist at once (default: about 32M values)."""
        block = block or block_rows(self.num_texts)
        for start in range(0, len(queries), block):
            yield start, self.scores(queries[start : start + block])

    def search(self, queries: Sequence[str], k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best corpus texts per query: ``(scores, indices)``, both ``[Q, min(k, C)]``,
        best first, ties in corpus order (:func:`top_k`); computed block by block."""
        k = min(int(k), self.num_texts)
        values = np.zeros((len(queries), k), dtype=np.float64)
        indices = np.zeros((len(queries), k), dtype=np.int64)
        for start, block_scores in self.iter_scores(queries, block):
            stop = start + len(block_scores)
            values[start:stop], indices[start:stop] = top_k(block_scores, k)
        return values, indices

    def __repr__(self) -> str:
        return f"BM25({self.num_texts} texts, {len(self.vocabulary)} terms, k1={self.k1}, b={self.b})"


def reference_scores(
    queries: Sequence[str], corpus: Sequence[str], k1: float = K1, b: float = B, query_terms: str = "unique"
) -> np.ndarray:
    """The same scores term by term in plain Python (what :class:`BM25` is tested and benchmarked
    against): for each query, for each of its terms, for each corpus text, add the term's weight."""
    texts = [tokenize(text) for text in corpus]
    counts = [{} for _ in texts]
    frequency: dict[str, int] = {}
    for tokens, count in zip(texts, counts):
        for token in tokens:
            count[token] = count.get(token, 0) + 1
        for token in count:
            frequency[token] = frequency.get(token, 0) + 1
    average = sum(len(tokens) for tokens in texts) / max(1, len(texts))
    scores = np.zeros((len(queries), len(texts)))
    for row, query in enumerate(queries):
        terms = tokenize(query)
        for term in dict.fromkeys(terms) if query_terms == "unique" else terms:
            if term not in frequency:
                continue
            weight = math.log(1 + (len(texts) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            for column, (tokens, count) in enumerate(zip(texts, counts)):
                tf = count.get(term, 0)
                if tf:
                    norm = k1 * (1 - b + b * len(tokens) / average)
                    scores[row, column] += weight * tf * (k1 + 1) / (tf + norm)
    return scores
