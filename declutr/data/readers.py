"""Dataset readers: from an indexed corpus to model inputs and batches.

A reader owns the tokenizer, the document source and the sampling policy. For a data path it
returns the cached :class:`~declutr.data.index.CorpusIndex` and the records it will use
(:meth:`DatasetReader.select`, which applies the short-document policy); for one record and a
``numpy.random.Generator`` it builds an example (token-id inputs, anchors masked), and it
collates examples into the batch layout of docs/architecture.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable
from declutr.data.collate import mask_tokens, pad_group
from declutr.data.index import CorpusIndex, load_or_build_index
from declutr.data.samplers import (
    DeclutrSpanSampler,
    SameTextSampler,
    SpanSampler,
    WholeTextSampler,
)
from declutr.data.sources import EMPTY, OK, UNDECODABLE, AutoFormat, DocumentSource
from declutr.data.tokenizer import TransformerTokenizer

logger = logging.getLogger(__name__)
Input = tuple[np.ndarray, np.ndarray]  # (input_ids, special_tokens_mask) of one model input


@dataclass
class Example:
    """The model inputs made from one record."""

    anchors: list[Input]
    positives: list[Input] = field(default_factory=list)
    negatives: list[Input] = field(default_factory=list)
    mlm_labels: list[np.ndarray] | None = None


@dataclass
class Selection:
    """The records a reader uses from an index, and what it left out (corpus-wide counts)."""

    records: np.ndarray
    skipped: dict[str, int]


class DatasetReader(Registrable):
    """Turns a corpus into examples. ``reader.tokenizer`` is the Hugging Face fast tokenizer; a
    reader builds model inputs with the ``TransformerTokenizer`` it was given, ``self._tokenizer``
    (``wrap``, ``pad_id``, ``mask_id``), whose ``hf`` that is.

    # Parameters
    tokenizer: ``{"model_name": ..., "max_length": null}`` (see ``TransformerTokenizer``).
    document_source: how files are read (default ``auto``: by file name, text field ``text``).
    cache_directory: where corpus indexes are cached (default ``$DECLUTR_CACHE`` or
        ``~/.cache/declutr``).
    """

    default_implementation = "declutr"
    kind_name = "dataset_reader"
    unit = "subword"

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        self._tokenizer = tokenizer
        self.source = document_source or AutoFormat()
        self.cache_directory = cache_directory
        self._indexes: dict[tuple[str, str], CorpusIndex] = {}  # by (data path, source fingerprint)

    @property
    def tokenizer(self):
        """The Hugging Face ``PreTrainedTokenizerFast`` (the trainer hands it to the model)."""
        return self._tokenizer.hf

    @property
    def mlm(self) -> bool:
        return False

    @property
    def min_length(self) -> int:
        """The shortest usable text, in ``unit`` s."""
        return 1

    def index(
        self,
        data_path: str | os.PathLike,
        progress: bool = True,
        workers: int | None = None,
        source: DocumentSource | None = None,
    ) -> CorpusIndex:
        """The corpus index of ``data_path`` read by ``source`` (default: the reader's own), built
        and cached on first use by ``workers`` processes (None: ``load_or_build_index`` decides by
        the corpus size, at most one per core)."""
        source = source or self.source
        key = (os.fspath(data_path), json.dumps(source.fingerprint(), sort_keys=True, default=str))
        if key not in self._indexes:
            self._indexes[key] = load_or_build_index(
                data_path,
                source,
                self._tokenizer,
                self.unit,
                self.cache_directory,
                progress,
                workers=workers,
            )
        return self._indexes[key]

    def select(self, index: CorpusIndex) -> Selection:
        """The usable records; the rest counted by reason (or an error, by policy)."""
        if index.num_fields != self.source.num_fields:
            raise DeclutrError(
                f"{index.directory}: indexed with {index.num_fields} fields, the reader needs {self.source.num_fields}"
            )
        lengths = index.lengths.reshape(len(index), index.num_fields).min(axis=1)
        ok = index.status == OK
        long_enough = lengths >= self.min_length
        short = ok & ~long_enough
        if short.any():
            self._short_documents(index, np.flatnonzero(short))
        return Selection(
            records=np.flatnonzero(ok & long_enough),
            skipped={
                "documents_skipped_empty": int((index.status == EMPTY).sum()),
                "documents_skipped_undecodable": int((index.status == UNDECODABLE).sum()),
                "documents_skipped_short": int(short.sum()),
            },
        )

    def _short_documents(self, index: CorpusIndex, records: np.ndarray) -> None:
        """Called with the records too short to use; skipping is the default."""

    def example(self, index: CorpusIndex, record: int, rng: np.random.Generator) -> Example:
        raise NotImplementedError

    def collate(self, examples: list[Example]) -> dict:
        """The batch of docs/architecture.md from examples (in order)."""
        pad = self._tokenizer.pad_id
        anchors = [x for e in examples for x in e.anchors]
        labels = (
            [x for e in examples for x in e.mlm_labels] if examples and examples[0].mlm_labels is not None else None
        )
        batch = {"anchors": pad_group(anchors, pad, labels)}
        if any(e.positives for e in examples):
            positives, owner, offset = [], [], 0
            for e in examples:
                per_anchor = len(e.positives) // len(e.anchors)
                positives.extend(e.positives)
                owner.extend(offset + i // per_anchor for i in range(len(e.positives)))
                offset += len(e.anchors)
            batch["positives"] = pad_group(positives, pad)
            batch["positive_anchor_index"] = torch.tensor(owner, dtype=torch.long)
        if any(e.negatives for e in examples):
            batch["negatives"] = pad_group([x for e in examples for x in e.negatives], pad)
        return batch


@DatasetReader.register("declutr")
class SpanReader(DatasetReader):
    """DeCLUTR: anchors and positives sampled from each document, anchors BERT-masked.

    Each document was tokenized once (into the index); a visit slices its ids for every span,
    adds the special tokens and truncates to the model maximum. Masking is drawn afresh at every
    visit from the same per-visit generator as the spans.

    # Parameters
    span_sampler: how spans are drawn (default ``declutr`` with the paper's 2 anchors,
        2 positives, spans of 32-512 subword tokens).
    mlm_probability: BERT masking rate of anchor tokens [0.15]; null: no masking (and no
        ``mlm_labels``), e.g. for the contrastive-only ablation.
    short_documents: a document shorter than the sampler's minimum
        (``num_anchors * max_span_len * 2``) is skipped and counted (``skip``), or stops the
        run with an error naming it (``error``, the reference's behaviour).
    tokenizer, document_source, cache_directory: see ``DatasetReader``.
    """

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        span_sampler: SpanSampler | None = None,
        mlm_probability: float | None = 0.15,
        short_documents: Literal["skip", "error"] = "skip",
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        super().__init__(tokenizer, document_source, cache_directory)
        self.sampler = span_sampler or DeclutrSpanSampler()
        if mlm_probability is not None and not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must lie in (0, 1) or be null, got {mlm_probability}")
        if mlm_probability is not None and tokenizer.mask_id is None:
            raise ValueError(
                f'the tokenizer of "{tokenizer.model_name}" has no mask token; set mlm_probability to null'
            )
        if short_documents not in ("skip", "error"):
            raise ValueError(f'short_documents must be "skip" or "error", got {short_documents!r}')
        if self.source.num_fields != 1:
            raise ValueError("the document source must give one text per record")
        self.mlm_probability = mlm_probability
        self.short_documents = short_documents
        self.unit = self.sampler.unit

    @property
    def mlm(self) -> bool:
        return self.mlm_probability is not None

    @property
    def min_length(self) -> int:
        return self.sampler.min_length

    def _short_documents(self, index: CorpusIndex, records: np.ndarray) -> None:
        if self.short_documents == "error":
            record = int(records[0])
            unit = "subword tokens" if self.unit == "subword" else "whitespace words"
            raise DeclutrError(
                f"{index.location(record)}: document of {int(index.lengths[record])} {unit}, shorter than the "
                f"minimum {self.min_length} (num_anchors * max_span_len * 2); {len(records)} such document(s) "
                'in all (set dataset_reader.short_documents to "skip" to skip and count them)'
            )

    def example(self, index: CorpusIndex, record: int, rng: np.random.Generator) -> Example:
        tok = self._tokenizer
        tokens = index.tokens(record)
        starts = index.unit_starts(record)
        anchors, positives = self.sampler.sample(int(index.lengths[record]), rng)

        def inputs(spans: np.ndarray) -> list[Input]:
            if starts is not None:  # whitespace words -> the tokens of those words
                spans = starts[spans].astype(np.int64)
            return [tok.wrap(tokens[s:e]) for s, e in spans]

        example = Example(inputs(anchors), inputs(positives))
        if self.mlm:
            masked = [
                mask_tokens(ids, special, rng, tok.mask_id, tok.vocab_size, self.mlm_probability)
                for ids, special in example.anchors
            ]
            example.anchors = [(ids, special) for (ids, _), (_, special) in zip(masked, example.anchors)]
            example.mlm_labels = [labels for _, labels in masked]
        return example


@DatasetReader.register("simcse_unsupervised")
class SimCSEUnsupervisedReader(SpanReader):
    """SimCSE unsupervised: each sentence (one per line) is its own positive; nothing is masked.

    # Parameters
    tokenizer: set ``max_length`` to SimCSE's 32 for the paper setting.
    document_source, cache_directory: see ``DatasetReader``.
    """

    #: SimCSE's optional auxiliary MLM (``--do_mlm``) masks a separate copy of the inputs
    #: (``mlm_input_ids``) and adds its loss; masking the two dropout views instead, as a reader
    #: key would, changes the contrastive views and trains no MLM, so the key is refused.
    refused_keys: ClassVar[dict[str, str]] = {
        "mlm_probability": "the simcse_unsupervised reader does not mask: masking would alter both dropout views "
        "and the simcse model has no MLM term (SimCSE's --do_mlm masks a separate copy of the inputs, which "
        "declutr does not implement); remove the key",
    }

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        super().__init__(tokenizer, SameTextSampler(), None, "skip", document_source, cache_directory)


@DatasetReader.register("sentences")
@DatasetReader.register("isbert")  # the name it had first
class SentenceReader(SpanReader):
    """IS-BERT (and any encoder trained on plain sentences): each sentence is one anchor.

    # Parameters
    tokenizer, document_source, cache_directory: see ``DatasetReader``.
    """

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        super().__init__(tokenizer, WholeTextSampler(), None, "skip", document_source, cache_directory)


@DatasetReader.register("simcse_supervised")
class NLITripletReader(DatasetReader):
    """SimCSE supervised: NLI triplets, premise as anchor, entailment as its positive,
    contradiction as its hard negative. CSV (with a header) or JSON lines.

    # Parameters
    fields: the premise, positive and hard-negative columns/keys (SimCSE's
        ``nli_for_simcse.csv``: ``sent0``, ``sent1``, ``hard_neg``).
    tokenizer, cache_directory: see ``DatasetReader``. A record with an empty text is skipped
        and counted (``documents_skipped_empty``).
    """

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        fields: tuple[str, str, str] = ("sent0", "sent1", "hard_neg"),
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        source = document_source or AutoFormat(fields=list(fields))
        if source.num_fields != 3:
            raise ValueError(
                f"the document source must give 3 texts per record (premise, positive, negative), not {source.num_fields}"
            )
        super().__init__(tokenizer, source, cache_directory)

    def example(self, index: CorpusIndex, record: int, rng: np.random.Generator) -> Example:
        wrap = self._tokenizer.wrap
        anchor, positive, negative = (wrap(index.tokens(record * 3 + f)) for f in range(3))
        return Example([anchor], [positive], [negative])


@DatasetReader.register("windows")
class WindowReader(DatasetReader):
    """Masked-LM pretraining (BERT, RoBERTa): the corpus as one stream, cut into full windows.

    The usable documents, in corpus order and each followed by the tokenizer's separator
    (``[SEP]``, ``</s>``), are read as one stream of token ids and cut into contiguous windows of
    ``max_length`` tokens (the tokenizer's prefix and suffix included): every input is full, so
    no step computes padding. A record of this reader is one window; the loader shuffles windows,
    and the masks of a window are drawn afresh at every visit. The stream's last, partial window
    is left out. Separators inside a window are never masked.

    # Parameters
    mlm_probability: BERT masking rate [0.15].
    separate_documents: put the separator between documents (false: documents run into each other).
    tokenizer, document_source, cache_directory: see ``DatasetReader``; set
        ``tokenizer.max_length`` to the window (at most the model's positions).
    """

    def __init__(
        self,
        tokenizer: TransformerTokenizer,
        mlm_probability: float = 0.15,
        separate_documents: bool = True,
        document_source: DocumentSource | None = None,
        cache_directory: str | None = None,
    ):
        super().__init__(tokenizer, document_source, cache_directory)
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must lie in (0, 1), got {mlm_probability}")
        if tokenizer.mask_id is None:
            raise ValueError(f'the tokenizer of "{tokenizer.model_name}" has no mask token')
        if self.source.num_fields != 1:
            raise ValueError("the document source must give one text per record")
        hf = tokenizer.hf
        separator = hf.sep_token_id if hf.sep_token_id is not None else hf.eos_token_id
        if separate_documents and separator is None:
            raise ValueError(
                f'the tokenizer of "{tokenizer.model_name}" has no separator token; set separate_documents false'
            )
        self.mlm_probability = mlm_probability
        self.separate_documents = separate_documents
        self.separator = separator
        self._layouts: dict[str, tuple[Selection, np.ndarray]] = {}

    @property
    def mlm(self) -> bool:
        return True

    @property
    def window(self) -> int:
        """Content tokens per window (``max_length`` less the special tokens)."""
        return self._tokenizer.max_content

    def layout(self, index: CorpusIndex) -> tuple[np.ndarray, np.ndarray]:
        """``(documents, starts)``: the usable documents in stream order and where each begins in
        the stream (``starts[-1]`` is the stream's length)."""
        selection, starts = self._layout(index)
        return selection.records, starts

    def _layout(self, index: CorpusIndex) -> tuple[Selection, np.ndarray]:
        """The base reader's selection of documents (computed once per corpus) and the starts."""
        key = str(index.directory)
        if key not in self._layouts:
            selection = super().select(index)
            lengths = index.lengths[selection.records].astype(np.int64) + int(self.separate_documents)
            self._layouts[key] = (selection, np.concatenate([[0], np.cumsum(lengths)]))
        return self._layouts[key]

    def select(self, index: CorpusIndex) -> Selection:
        """The windows (``0 .. n-1``); the documents' skip counts as the base reader's."""
        selection, starts = self._layout(index)
        return Selection(records=np.arange(int(starts[-1]) // self.window), skipped=selection.skipped)

    def stream(self, index: CorpusIndex, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids ``start:stop`` of the stream, and which of them are separators."""
        documents, starts = self.layout(index)
        pieces, separators = [], []
        position = int(np.searchsorted(starts, start, side="right")) - 1
        while start < stop:
            begin = int(starts[position])
            tokens = np.asarray(index.tokens(int(documents[position])), dtype=np.int64)
            if self.separate_documents:
                tokens = np.append(tokens, self.separator)
            piece = tokens[start - begin : stop - begin]
            flags = np.zeros(len(piece), dtype=np.int64)
            if self.separate_documents and begin + len(tokens) <= stop:
                flags[-1] = 1  # this document's separator is in the window
            pieces.append(piece)
            separators.append(flags)
            start += len(piece)
            position += 1
        return np.concatenate(pieces), np.concatenate(separators)

    def example(self, index: CorpusIndex, record: int, rng: np.random.Generator) -> Example:
        tok = self._tokenizer
        content, separators = self.stream(index, record * self.window, (record + 1) * self.window)
        input_ids, special = tok.wrap(content)
        special[len(tok.prefix) : len(tok.prefix) + len(content)] = separators
        masked, labels = mask_tokens(input_ids, special, rng, tok.mask_id, tok.vocab_size, self.mlm_probability)
        return Example([(masked, special)], mlm_labels=[labels])
