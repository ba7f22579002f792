"""Span samplers: which pieces of a text become anchors and positives (docs/data.md, "Span samplers").

A sampler sees only a text's length ``n`` in its unit and a ``numpy.random.Generator``, and
returns half-open ``[start, end)`` unit ranges: ``anchors`` ``(A, 2)`` and ``positives``
``(A * P, 2)`` grouped by anchor (positive ``j`` belongs to anchor ``j // P``). The reader
slices token ids with them. Randomness comes only from the generator it is handed (never the
global RNG), so spans are a function of the seed the reader derives for each visit.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from declutr.core.registrable import Registrable

logger = logging.getLogger(__name__)
Unit = Literal["subword", "whitespace"]


class SpanSampler(Registrable):
    """Draws anchor and positive spans from a text of a given length."""

    default_implementation = "declutr"
    kind_name = "span_sampler"
    num_anchors: int = 1
    num_positives: int = 0
    unit: str = "subword"

    @property
    def min_length(self) -> int:
        """The shortest text (in units) this sampler can draw from."""
        return 1

    def sample(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@SpanSampler.register("declutr")
class DeclutrSpanSampler(SpanSampler):
    """DeCLUTR's sampler: long anchors from non-adjacent blocks, short positives around them.

    Anchor length ``int(Beta(4,2) * (max - min) + min)``; the text is cut into whole blocks of
    ``max_span_len`` units, a block is drawn uniformly and the anchor placed uniformly inside
    it; that block and its neighbours are then removed. When fewer candidate blocks remain than
    the reference considers safe (``len(blocks) // left < left`` for ``left`` anchors still to
    draw) the first or the last remaining block is taken, as the reference did.
    Positive length ``int(Beta(2,4) * (max - min) + min)``, per ``strategy``:
    ``default``: start uniform in ``[max(0, a_start - len), min(a_end, n - len)]`` (adjacent,
    overlapping or subsumed); ``subsuming``: length ``int(Beta(2,4) * (anchor_len - min) + min)``,
    inside the anchor; ``adjacent``: length capped to the room beside the anchor, touching its
    start or its end.

    # Parameters
    num_anchors: anchors per document [2]. num_positives: positives per anchor [2].
    min_span_len, max_span_len: span lengths in units [32, 512].
    strategy: ``default``, ``subsuming`` or ``adjacent``.
    unit: ``subword`` (the model tokenizer's tokens; default) or ``whitespace`` (words, as the
        paper-era code sampled; spans are then mapped to the tokens of those words).
    """

    def __init__(
        self,
        num_anchors: int = 2,
        num_positives: int = 2,
        min_span_len: int = 32,
        max_span_len: int = 512,
        strategy: Literal["default", "subsuming", "adjacent"] = "default",
        unit: Unit = "subword",
    ):
        if num_anchors < 1:
            raise ValueError(f"num_anchors must be at least 1, got {num_anchors}")
        if num_positives < 1:
            raise ValueError(f"num_positives must be at least 1, got {num_positives}")
        if not 1 <= min_span_len <= max_span_len:
            raise ValueError(f"need 1 <= min_span_len <= max_span_len, got {min_span_len} and {max_span_len}")
        if strategy not in ("default", "subsuming", "adjacent"):
            raise ValueError(f'strategy must be "default", "subsuming" or "adjacent", got {strategy!r}')
        if unit not in ("subword", "whitespace"):
            raise ValueError(f'unit must be "subword" or "whitespace", got {unit!r}')
        self.num_anchors, self.num_positives = num_anchors, num_positives
        self.min_span_len, self.max_span_len = min_span_len, max_span_len
        self.strategy, self.unit = strategy, unit

    @property
    def min_length(self) -> int:
        return self.num_anchors * self.max_span_len * 2

    def _length(self, rng: np.random.Generator, a: float, b: float, high: int) -> int:
        return int(rng.beta(a, b) * (high - self.min_span_len) + self.min_span_len)

    def sample(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if length < self.min_length:
            raise ValueError(
                f"a text of {length} units is shorter than num_anchors * max_span_len * 2 = {self.min_length}"
            )
        n, top = length, self.max_span_len
        blocks = list(range(0, n - top + 1, top))  # block starts; the trailing partial block is unused
        anchors = np.empty((self.num_anchors, 2), dtype=np.int64)
        positives = np.empty((self.num_anchors * self.num_positives, 2), dtype=np.int64)
        for i in range(self.num_anchors):
            anchor_len = self._length(rng, 4, 2, top)
            left = self.num_anchors - i
            if len(blocks) // left < left:  # the reference's edge-case rule
                chosen = (0, len(blocks) - 1)[int(rng.integers(2))]
            else:
                chosen = int(rng.integers(len(blocks)))
            a_start = int(rng.integers(blocks[chosen], blocks[chosen] + top - anchor_len + 1))
            del blocks[max(0, chosen - 1) : chosen + 2]
            a_end = a_start + anchor_len
            anchors[i] = a_start, a_end
            for j in range(self.num_positives):
                positives[i * self.num_positives + j] = self._positive(a_start, a_end, n, rng)
        return anchors, positives

    def _positive(self, a_start: int, a_end: int, n: int, rng: np.random.Generator) -> tuple[int, int]:
        if self.strategy == "subsuming":
            length = self._length(rng, 2, 4, a_end - a_start)
            start = int(rng.integers(a_start, a_end - length + 1))
        elif self.strategy == "adjacent":
            room = min(self.max_span_len, max(a_start, n - a_end))
            length = self._length(rng, 2, 4, room) if room >= self.min_span_len else room
            sides = [s for s, ok in ((a_start - length, a_start - length >= 0), (a_end, a_end + length <= n)) if ok]
            start = sides[int(rng.integers(len(sides)))]
        else:
            length = self._length(rng, 2, 4, self.max_span_len)
            start = int(rng.integers(max(0, a_start - length), min(a_end, n - length) + 1))
        return start, start + length


@SpanSampler.register("same_text")
class SameTextSampler(SpanSampler):
    """The whole text as the anchor and again as its one positive (SimCSE unsupervised: the two
    views differ only by dropout)."""

    num_anchors, num_positives = 1, 1

    def sample(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        whole = np.array([[0, length]], dtype=np.int64)
        return whole, whole.copy()


@SpanSampler.register("whole_text")
class WholeTextSampler(SpanSampler):
    """The whole text as the only anchor, no positives (IS-BERT, plain sentences)."""

    num_anchors, num_positives = 1, 0

    def sample(self, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[0, length]], dtype=np.int64), np.empty((0, 2), dtype=np.int64)
