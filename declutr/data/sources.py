"""Document sources: stream records (one or more texts each) out of a data path, one pass at a time.

A source turns ``data_path`` into :class:`Part` s — files (a file, a directory, or a glob; text,
JSON lines, CSV, Parquet; text formats plain or compressed with gzip or zstd,
declutr/data/compression.py), or a Hugging Face dataset (saved with ``save_to_disk``, or on the
Hub as ``hf:NAME``; declutr/data/columnar.py) — and each part into :class:`Chunk` s: whole lines
(about 4 MB), a Parquet row group, a run of dataset rows. A chunk is small, self-contained and
picklable, so the corpus index can read and tokenize chunks in several processes and still write
them in order (declutr/data/index.py). Each :class:`Record` names its part and its line (or
row). Whitespace is collapsed (``" ".join(text.split())``, docs/data.md, "Corpora"); nothing is
lower-cased.

Bad input is handled by policy, never a crash:
- empty or whitespace-only documents (a null cell too), and lines that are not valid UTF-8, come
  out as records with ``status`` ``"empty"`` / ``"undecodable"`` (the reader skips and counts
  them), or, with the policy ``"error"``, raise :class:`~declutr.core.DeclutrError` naming
  ``file:line`` (``file row N`` for Parquet and datasets);
- records that cannot be parsed at all (bad JSON, a missing text field or column, a column that
  does not hold text), corrupt compressed data (file and byte offset) and a path that is not what
  it claims always raise ``DeclutrError``: they mean the wrong file or the wrong ``fields``, not a
  stray bad document.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable
from declutr.data import compression
from declutr.data.compression import head, line_blocks, open_binary

Policy = Literal["skip", "error"]
OK, EMPTY, UNDECODABLE = 0, 1, 2
STATUS_NAMES = {EMPTY: "empty", UNDECODABLE: "undecodable"}
_TEXT_SUFFIXES = (".txt", ".text", ".jsonl", ".json", ".ndjson", ".csv", ".tsv")
_DATA_SUFFIXES = (*_TEXT_SUFFIXES, ".parquet")
_COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")
HUB_PREFIX = "hf:"
#: settings that only choose which dataset is read (the parts' identities hold their effect)
DATASET_SETTINGS = ("split", "subset", "revision", "streaming")


@dataclass(frozen=True)
class Record:
    """One unit of a corpus: ``texts`` (one per field) or ``None`` when skipped by ``status``."""

    file: int  # index into the list of parts of this pass
    line: int  # 1-based line (or row) number where the record starts
    texts: tuple[str, ...] | None
    status: int = OK


@dataclass(frozen=True)
class Part:
    """One file, or one dataset, of a data path.

    ``name`` is shown in messages and stored in the index; ``identity`` is what the index cache
    key holds for it (path, size and modification time of every file it reads, or a Hub
    dataset's name and commit); ``size`` is its size in bytes (0 when unknown: a streamed
    dataset); records of a part with ``rows`` are numbered by row (Parquet, datasets), others by
    line."""

    name: str
    identity: tuple
    size: int
    rows: bool = False
    kind: str = "file"  # "file" or "dataset"
    commit: str | None = None  # a Hub dataset's commit

    @classmethod
    def file(cls, path: Path) -> Part:
        identity = file_identity(path)
        name = _base_name(path)
        rows = name.endswith(".parquet") or (
            not name.endswith(_TEXT_SUFFIXES) and head(path, 4) == compression.PARQUET_MAGIC
        )
        return cls(str(path), identity, identity[1], rows)

    @property
    def path(self) -> Path:
        return Path(self.name)

    def location(self, number: int) -> str:
        """``file:line``, or ``file row N``, for messages."""
        return f"{self.name} row {number}" if self.rows else f"{self.name}:{number}"


@dataclass(frozen=True)
class Chunk:
    """A piece of one part that ``source.records(chunk)`` reads on its own, in any process:
    ``first`` is the line (row) number of its first record, ``payload`` what the source needs
    (whole lines as bytes, a row group, a row range, or records already parsed), ``size`` the
    bytes of the part it covers (for progress)."""

    source: DocumentSource
    part: Part
    number: int
    first: int
    payload: Any
    size: int


def collapse(text: str) -> str:
    """The reader's whitespace normalisation: runs of whitespace become one space, ends trimmed."""
    return " ".join(text.split())


def file_identity(path: Path) -> tuple[str, int, int]:
    """What the index key holds for a file: where it is, its size and modification time."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _base_name(path: Path) -> str:
    """The lower-cased file name without a compression suffix."""
    name = path.name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk``."""
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def is_saved_dataset_dict(path: Path) -> bool:
    """A folder written by ``datasets.DatasetDict.save_to_disk`` (one saved dataset per split)."""
    return (path / "dataset_dict.json").is_file()


def expand_paths(data_path: str | os.PathLike) -> list[Path]:
    """The files of ``data_path``, sorted: a file, a directory (its data files, recursively) or a glob."""
    text = str(data_path)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        if is_saved_dataset(path) or is_saved_dataset_dict(path):
            raise DeclutrError(f"{path}: a saved Hugging Face dataset; read it with the auto or hf_dataset source")
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_data_file(p))
        if not files:
            suffixes = ", ".join(_DATA_SUFFIXES)
            raise DeclutrError(f"{path}: the directory has no data files ({suffixes}, optionally .gz or .zst)")
        return files
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
        if not files:
            raise DeclutrError(f"{text}: no file matches this pattern")
        return files
    raise DeclutrError(f"{text}: no such file or directory")


def check_data_path(data_path: str | os.PathLike) -> None:
    """Stop with one line when ``data_path`` names nothing readable (cheap: opens no dataset and
    asks no server; a Hub name ``hf:NAME`` is checked when it is read)."""
    if names_a_dataset(data_path):
        return
    expand_paths(data_path)


def names_a_dataset(data_path: str | os.PathLike) -> bool:
    """Whether ``data_path`` is a Hub dataset (``hf:NAME``) or a folder written by ``save_to_disk``."""
    path = Path(str(data_path)).expanduser()
    return str(data_path).startswith(HUB_PREFIX) or is_saved_dataset(path) or is_saved_dataset_dict(path)


def _is_data_file(path: Path) -> bool:
    return not path.name.startswith(".") and _base_name(path).endswith(_DATA_SUFFIXES)


class DocumentSource(Registrable):
    """Reads records from the parts of a ``data_path``; ``num_fields`` texts per record.

    A new format overrides ``read_file(path, number)`` (records of one file, read in one
    process), or ``chunks`` and ``records`` to be read in parallel.

    # Parameters
    empty: ``skip`` (count) or ``error`` for empty and whitespace-only documents.
    undecodable: ``skip`` (count) or ``error`` for lines that are not valid UTF-8.
    """

    default_implementation = "auto"
    kind_name = "document_source"

    def __init__(self, empty: Policy = "skip", undecodable: Policy = "skip"):
        for name, value in (("empty", empty), ("undecodable", undecodable)):
            if value not in ("skip", "error"):
                raise ValueError(f'{name} must be "skip" or "error", got {value!r}')
        self.empty = empty
        self.undecodable = undecodable

    @property
    def num_fields(self) -> int:
        return 1

    def fingerprint(self) -> dict:
        """What, besides the parts, determines the records (part of the index cache key)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def index_fingerprint(self, parts: list[Part]) -> dict:
        """What, besides ``parts``' identities, determines the records read from them (part of the
        index cache key; default: ``fingerprint``)."""
        return self.fingerprint()

    def parts(self, data_path: str | os.PathLike) -> list[Part]:
        """The parts of ``data_path`` in reading order (default: its files, sorted)."""
        return [Part.file(path) for path in expand_paths(data_path)]

    def read(self, data_path: str | os.PathLike) -> Iterator[Record]:
        """Every record of every part of ``data_path``, in part order then line (row) order."""
        return self.read_parts(self.parts(data_path))

    def read_parts(self, parts: list[Part]) -> Iterator[Record]:
        for number, part in enumerate(parts):
            for chunk in self.chunks(part, number):
                yield from chunk.source.records(chunk)

    def read_files(self, files: list[Path]) -> Iterator[Record]:
        return self.read_parts([Part.file(path) for path in files])

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        """The chunks of one part (default: the records of ``read_file``, parsed here, grouped)."""
        return parsed_chunks(self.read_file(part.path, number), part, number)

    def records(self, chunk: Chunk) -> Iterator[Record]:
        """The records of one chunk (default: the records ``chunks`` grouped)."""
        return iter(chunk.payload)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        """The records of one file (file-based formats)."""
        part = Part.file(path)
        for chunk in self.chunks(part, number):
            yield from chunk.source.records(chunk)

    # -- helpers for subclasses ------------------------------------------------------------------
    def _decode(self, raw: bytes, where: Callable[[], str]) -> str | None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            if self.undecodable == "error":
                raise DeclutrError(f"{where()}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            return None

    def _record(self, texts: list[str], part: Part, number: int, line: int) -> Record:
        texts = [collapse(t) for t in texts]
        if not all(texts):
            if self.empty == "error":
                raise DeclutrError(f"{part.location(line)}: empty document")
            return Record(number, line, None, EMPTY)
        return Record(number, line, tuple(texts))


class _Parsed(DocumentSource):
    """Reads chunks whose payload is records already parsed (by the builder)."""


_PARSED = _Parsed()
#: a cap on the records of a chunk of parsed records, beside ``CHUNK_BYTES`` of text
RECORDS_PER_CHUNK = 1 << 16


def parsed_chunks(
    records: Iterable[Record], part: Part, number: int, size: Callable[[int, int], int] | None = None
) -> Iterator[Chunk]:
    """``records``, parsed in this process, as chunks of about ``CHUNK_BYTES`` of text (at most
    ``RECORDS_PER_CHUNK`` records): only their tokenization is spread over the workers.
    ``size(records, chars)``: the bytes of the part a chunk covers (default: its characters)."""
    batch, chars = [], 0

    def chunk() -> Chunk:
        covered = size(len(batch), chars) if size else chars
        return Chunk(_PARSED, part, number, batch[0].line, batch, covered)

    for record in records:
        batch.append(record)
        chars += sum(len(t) for t in record.texts or ())
        if chars >= compression.CHUNK_BYTES or len(batch) >= RECORDS_PER_CHUNK:
            yield chunk()
            batch, chars = [], 0
    if batch:
        yield chunk()


class _LineSource(DocumentSource):
    """A format with one record per line: chunks are whole lines, parsed where they are read."""

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        done = 0
        for first, block, read in line_blocks(part.path):
            yield Chunk(self, part, number, first, block, read - done)
            done = read

    def records(self, chunk: Chunk) -> Iterator[Record]:
        lines = chunk.payload.split(b"\n")
        if chunk.payload.endswith(b"\n"):
            lines.pop()
        part, number = chunk.part, chunk.number
        for line, raw in enumerate(lines, start=chunk.first):
            text = self._decode(raw, lambda line=line: part.location(line))
            yield Record(number, line, None, UNDECODABLE) if text is None else self._parse(text, part, number, line)

    def _parse(self, text: str, part: Part, number: int, line: int) -> Record:
        raise NotImplementedError


@DocumentSource.register("text")
class TextLines(_LineSource):
    """Plain text, one document per line (``\\n``-separated; the paper's corpus format)."""

    def _parse(self, text: str, part: Part, number: int, line: int) -> Record:
        return self._record([text], part, number, line)


@DocumentSource.register("jsonl")
class JsonLines(_LineSource):
    """JSON lines, one object per line; the text is ``fields`` (one name, or several per record).

    # Parameters
    fields: the key holding the text (``"text"``), or a list of keys for multi-text records
        (e.g. ``["sent0", "sent1", "hard_neg"]`` for NLI triplets).
    empty, undecodable: see ``DocumentSource``. Blank lines are empty documents.
    """

    def __init__(self, fields: str | list[str] = "text", empty: Policy = "skip", undecodable: Policy = "skip"):
        super().__init__(empty, undecodable)
        self.fields = field_list(fields, "key")

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def _parse(self, text: str, part: Part, number: int, line: int) -> Record:
        if not text.strip():
            return self._record([""], part, number, line)
        where = part.location(line)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as error:
            raise DeclutrError(f"{where}: not a JSON object ({error.msg} at column {error.colno})") from None
        if not isinstance(obj, dict):
            raise DeclutrError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        texts = []
        for field in self.fields:
            value = obj.get(field)
            if not isinstance(value, str):
                problem = "has no" if value is None else "has a non-string"
                keys = ", ".join(list(obj)[:8])
                raise DeclutrError(f'{where}: the object {problem} text field "{field}" (keys: {keys})')
            texts.append(value)
        return self._record(texts, part, number, line)


def field_list(fields: str | list[str], what: str) -> list[str]:
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names:
        raise ValueError(f"fields must name at least one {what}")
    return names


@DocumentSource.register("csv")
class CsvRows(DocumentSource):
    """CSV (or TSV) with a header row; the text is in the columns ``fields``.

    SimCSE's ``nli_for_simcse.csv`` has ``sent0,sent1,hard_neg`` (premise, entailment,
    contradiction). Quoted fields may span lines; ``line`` is where the row starts. (A CSV file is
    parsed in one process; its texts are still tokenized in parallel.)

    # Parameters
    fields: the column(s) holding the text.
    delimiter: ``","``; a file ending in ``.tsv`` (or ``.tsv.gz``) uses a tab unless set.
    """

    def __init__(
        self,
        fields: str | list[str] = "text",
        delimiter: str | None = None,
        empty: Policy = "skip",
        undecodable: Policy = "skip",
    ):
        super().__init__(empty, undecodable)
        self.fields = field_list(fields, "column")
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        part = Part(str(path), (), 0)
        delimiter = self.delimiter or ("\t" if _base_name(path).endswith(".tsv") else ",")
        with open_binary(path) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
            rows = csv.reader(handle, delimiter=delimiter)
            header = next(rows, None)
            if header is None:
                return
            missing = [f for f in self.fields if f not in header]
            if missing:
                raise DeclutrError(f"{path}:1: no column {', '.join(missing)} in the header ({', '.join(header)})")
            columns = [header.index(f) for f in self.fields]
            start = rows.line_num + 1
            for row in rows:
                line, start = start, rows.line_num + 1
                if not row:
                    yield self._record([""], part, number, line)
                    continue
                if len(row) <= max(columns):
                    raise DeclutrError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
                texts = [row[c] for c in columns]
                if any(_has_surrogates(t) for t in texts):
                    if self.undecodable == "error":
                        raise DeclutrError(f"{path}:{line}: not valid UTF-8")
                    yield Record(number, line, None, UNDECODABLE)
                    continue
                yield self._record(texts, part, number, line)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


@DocumentSource.register("auto")
class AutoFormat(DocumentSource):
    """Picks the format of each file: by name (``.jsonl``/``.json``/``.ndjson`` -> ``jsonl``,
    ``.csv``/``.tsv`` -> ``csv``, ``.parquet`` -> ``parquet``, ``.txt``/``.text`` -> ``text``;
    ``.gz``/``.zst`` looked through), else by content (Parquet's magic number; a first line that
    is a JSON object -> ``jsonl``; anything else -> ``text``). A folder written by
    ``save_to_disk`` and a Hub name ``hf:NAME`` are read as ``hf_dataset``.

    # Parameters
    fields: the text field(s) of JSON lines, CSV, Parquet and datasets (``"text"``).
    split: the split of a saved ``DatasetDict`` or a Hub dataset (``"train"``).
    subset, revision, streaming: of a Hub dataset (see ``hf_dataset``).
    empty, undecodable: see ``DocumentSource``.
    """

    def __init__(
        self,
        fields: str | list[str] = "text",
        split: str = "train",
        subset: str | None = None,
        revision: str | None = None,
        streaming: bool = False,
        empty: Policy = "skip",
        undecodable: Policy = "skip",
    ):
        super().__init__(empty, undecodable)
        self.fields = field_list(fields, "field")
        self.split, self.subset, self.revision, self.streaming = split, subset, revision, streaming
        self._jsonl = JsonLines(self.fields, empty, undecodable)
        self._csv = CsvRows(self.fields, None, empty, undecodable)
        # the column formats (declutr/data/columnar.py) build on this module: found by their names
        self._parquet = DocumentSource.by_name("parquet")(self.fields, empty, undecodable)
        self._dataset = DocumentSource.by_name("hf_dataset")(
            self.fields, split, subset, revision, streaming, empty, undecodable
        )
        self._text = TextLines(empty, undecodable)

    def fingerprint(self) -> dict:
        described = super().fingerprint()
        for name in DATASET_SETTINGS:
            described.pop(name, None)
        return described

    def index_fingerprint(self, parts: list[Part]) -> dict:
        """A dataset's, as ``hf_dataset`` reads it: ``auto`` and ``hf_dataset`` share its index."""
        if parts and all(part.kind == "dataset" for part in parts):
            return self._dataset.index_fingerprint(parts)
        return self.fingerprint()

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def parts(self, data_path: str | os.PathLike) -> list[Part]:
        if names_a_dataset(data_path):
            return self._dataset.parts(data_path)
        return super().parts(data_path)

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        return self.format_of(part).chunks(part, number)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        return self.format_of(Part.file(path)).read_file(path, number)

    def format_of(self, part: Part) -> DocumentSource:
        """The source that reads ``part``."""
        if part.kind == "dataset":
            return self._dataset
        if part.rows:  # Parquet, by suffix or magic number (``Part.file``)
            return self._parquet
        name = _base_name(part.path)
        if name.endswith((".jsonl", ".json", ".ndjson")):
            return self._jsonl
        if name.endswith((".csv", ".tsv")):
            return self._csv
        if not name.endswith((".txt", ".text")):
            with open_binary(part.path) as handle:
                first = handle.readline(8 << 20)
            try:
                if isinstance(json.loads(first), dict):
                    return self._jsonl
            except (ValueError, UnicodeDecodeError):
                pass
        if self.num_fields != 1:
            raise DeclutrError(
                f"{part.name}: a plain text file has one document per line, but {len(self.fields)} fields are configured"
            )
        return self._text
