"""Document sources: stream records (one or more texts each) out of a data path, one pass at a time.

A source turns ``data_path`` into :class:`Part` s — files (a file, a directory, or a glob; text,
JSON lines, CSV, Parquet; text formats plain or compressed with gzip or zstd), or a Hugging Face
dataset (saved with ``save_to_disk``, or on the Hub as ``hf:NAME``) — and each part into
:class:`Chunk` s: whole lines (about 4 MB), a Parquet row group, a run of dataset rows. A chunk is
small, self-contained and picklable, so the corpus index can read and tokenize chunks in several
processes and still write them in order (declutr/data/index.py). Each :class:`Record` names its
part and its line (or row). Whitespace is collapsed (``" ".join(text.split())``, docs/data.md,
"Corpora"); nothing is lower-cased.

Bad input is handled by policy, never a crash:
- empty or whitespace-only documents (a null cell too), and lines that are not valid UTF-8, come
  out as records with ``status`` ``"empty"`` / ``"undecodable"`` (the reader skips and counts
  them), or, with the policy ``"error"``, raise :class:`~declutr.core.DeclutrError` naming
  ``file:line`` (``file row N`` for Parquet and datasets);
- records that cannot be parsed at all (bad JSON, a missing text field or column, a column that
  does not hold text), corrupt compressed data (file and byte offset) and a path that is not what
  it claims always raise ``DeclutrError``: they mean the wrong file or the wrong ``fields``, not a
  stray bad document.

``pyarrow`` (Parquet, datasets), ``datasets`` (Hugging Face datasets) and ``zstandard`` (zstd)
are optional: ``pip install 'declutr[data]'`` installs all three.
"""

from __future__ import annotations

import csv
import glob
import gzip
import importlib
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable

Policy = Literal["skip", "error"]
OK, EMPTY, UNDECODABLE = 0, 1, 2
STATUS_NAMES = {EMPTY: "empty", UNDECODABLE: "undecodable"}
_TEXT_SUFFIXES = (".txt", ".text", ".jsonl", ".json", ".ndjson", ".csv", ".tsv")
_DATA_SUFFIXES = (*_TEXT_SUFFIXES, ".parquet")
_COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")
_GZIP_MAGIC, _ZSTD_MAGIC, _PARQUET_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PAR1"
HUB_PREFIX = "hf:"
#: text per chunk: large enough that handing a chunk to a process costs little, small enough
#: that a few chunks in flight per process keep memory flat
CHUNK_BYTES = 4 << 20


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

    @classmethod
    def file(cls, path: Path) -> Part:
        stat = path.stat()
        rows = _base_name(path).endswith(".parquet")
        return cls(str(path), (str(path.resolve()), stat.st_size, stat.st_mtime_ns), stat.st_size, rows)

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


def optional_module(name: str, extra: str, purpose: str):
    """Import an optional dependency, or stop with one line naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.split(".")[0]
        raise DeclutrError(
            f"{purpose} needs the optional package {package}: pip install 'declutr[{extra}]' (or 'declutr[data]')"
        ) from None


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
    text = str(data_path)
    path = Path(text).expanduser()
    if text.startswith(HUB_PREFIX) or is_saved_dataset(path) or is_saved_dataset_dict(path):
        return
    expand_paths(data_path)


def _is_data_file(path: Path) -> bool:
    return not path.name.startswith(".") and _base_name(path).endswith(_DATA_SUFFIXES)


def compression(path: Path) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None``: by suffix, else by magic number."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    with open(path, "rb") as handle:
        head = handle.read(4)
    return "gzip" if head[:2] == _GZIP_MAGIC else "zstd" if head == _ZSTD_MAGIC else None


def open_binary(path: Path) -> io.BufferedIOBase:
    """``path`` opened for reading bytes, decompressing gzip or zstd (by suffix or magic number).
    Corrupt or truncated compressed data raises ``DeclutrError`` naming the file and byte offset."""
    kind = compression(path)
    raw = open(path, "rb")  # noqa: SIM115 (the caller closes the returned handle, which closes it)
    if kind is None:
        return raw
    stream = _ZstdStream(raw, path) if kind == "zstd" else _GzipStream(raw, path)
    return io.BufferedReader(stream, buffer_size=1 << 20)


class _GzipStream(io.RawIOBase):
    """gzip decompression whose errors name the file and the compressed byte reached."""

    def __init__(self, raw, path: Path):
        self.raw, self.path = raw, path
        self.inner = gzip.GzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self.inner.readinto(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise DeclutrError(
                f"{self.path}: corrupt gzip data near compressed byte {self.raw.tell():,}: {error}"
            ) from None

    def close(self) -> None:
        self.inner.close()
        self.raw.close()
        super().close()


class _ZstdStream(io.RawIOBase):
    """zstd decompression, frame after frame; a corrupt frame or a truncated last frame raises
    ``DeclutrError`` with the byte offset where that frame starts (zstd checks a frame's
    checksum when the compressor wrote one, as the ``zstd`` command does by default)."""

    def __init__(self, raw, path: Path):
        zstandard = optional_module("zstandard", "zstd", f"{path}: reading zstd-compressed data")
        self.raw, self.path = raw, path
        self._context = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._frame = self._context.decompressobj()
        self._frame_start = 0  # compressed offset of the frame being decoded
        self._frame_started = False
        self._consumed = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            data = self.raw.read(1 << 17)
            if not data:
                if self._frame_started:
                    raise DeclutrError(
                        f"{self.path}: truncated zstd frame starting at byte {self._frame_start:,} "
                        f"(the file ends at byte {self._consumed:,})"
                    )
                return 0
            self._decode(data)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _decode(self, data: bytes) -> None:
        self._consumed += len(data)
        while data:
            self._frame_started = True
            try:
                self._pending += self._frame.decompress(data)
            except self._error as error:
                raise DeclutrError(
                    f"{self.path}: corrupt zstd frame starting at byte {self._frame_start:,}: {error}"
                ) from None
            if not self._frame.eof:
                return
            unused = self._frame.unused_data
            self._frame_start = self._consumed - len(unused)
            self._frame = self._context.decompressobj()
            self._frame_started = False
            data = unused

    def close(self) -> None:
        self.raw.close()
        super().close()


def _line_blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(first line number, bytes of whole lines)`` of about ``CHUNK_BYTES`` each."""
    with open_binary(path) as handle:
        line, rest = 1, b""
        while True:
            block = handle.read(CHUNK_BYTES)
            if not block:
                if rest:
                    yield line, rest
                return
            block = rest + block if rest else block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block so far
                rest = block
                continue
            yield line, block[:cut]
            line += block.count(b"\n", 0, cut)
            rest = block[cut:]


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
        """The chunks of one part (default: the records of ``read_file``, grouped)."""
        records, chars = [], 0
        for record in self.read_file(part.path, number):
            records.append(record)
            chars += sum(len(t) for t in record.texts or ())
            if chars >= CHUNK_BYTES:
                yield Chunk(self, part, number, records[0].line, records, chars)
                records, chars = [], 0
        if records:
            yield Chunk(self, part, number, records[0].line, records, chars)

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


class _LineSource(DocumentSource):
    """A format with one record per line: chunks are whole lines, parsed where they are read."""

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        for first, block in _line_blocks(part.path):
            yield Chunk(self, part, number, first, block, len(block))

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
        self.fields = _field_list(fields, "key")

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


def _field_list(fields: str | list[str], what: str) -> list[str]:
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
        self.fields = _field_list(fields, "column")
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


class _ColumnSource(DocumentSource):
    """Formats with named, typed columns (Parquet, datasets): texts in the columns ``fields``;
    a null cell is an empty document; rows are numbered from 1."""

    def __init__(self, fields: str | list[str] = "text", empty: Policy = "skip", undecodable: Policy = "skip"):
        super().__init__(empty, undecodable)
        self.fields = _field_list(fields, "column")

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def _check_columns(self, where: str, columns: dict[str, Any]) -> None:
        """``columns``: name -> type (a string). Every field must be there and hold text."""
        missing = [f for f in self.fields if f not in columns]
        if missing:
            raise DeclutrError(f"{where}: no column {', '.join(missing)} (columns: {', '.join(columns)})")
        for field in self.fields:
            if columns[field] not in ("string", "large_string", "string_view"):
                raise DeclutrError(f"{where}: column {field} holds {columns[field]}, not text")

    def _rows(self, columns: list[list], part: Part, number: int, first: int) -> Iterator[Record]:
        for row, values in enumerate(zip(*columns), start=first):
            yield self._record([v if v is not None else "" for v in values], part, number, row)


@DocumentSource.register("parquet")
class ParquetRows(_ColumnSource):
    """Parquet files (one, a directory or a glob); the text is in the columns ``fields``. Read
    row group by row group in record batches (``pyarrow``), never a whole file at once; each row
    group is a chunk, so a corpus of several row groups or files is indexed in parallel.

    # Parameters
    fields: the column(s) holding the text (``"text"``).
    empty: see ``DocumentSource`` (a null cell is an empty document).
    """

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        parquet = _parquet_file(part.path)
        schema = parquet.schema_arrow
        self._check_columns(part.name, {f.name: str(f.type) for f in schema})
        metadata, row = parquet.metadata, 1
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            yield Chunk(self, part, number, row, group, part.size * rows // max(metadata.num_rows, 1))
            row += rows

    def records(self, chunk: Chunk) -> Iterator[Record]:
        parquet = _parquet_file(chunk.part.path)
        row = chunk.first
        batches = parquet.iter_batches(
            batch_size=2048, row_groups=[chunk.payload], columns=self.fields, use_threads=False
        )
        for batch in batches:
            columns = [batch.column(f).to_pylist() for f in self.fields]
            yield from self._rows(columns, chunk.part, chunk.number, row)
            row += batch.num_rows


def _parquet_file(path: Path):
    parquet = optional_module("pyarrow.parquet", "parquet", f"{path}: reading Parquet")
    try:
        return parquet.ParquetFile(path)
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DeclutrError(f"{path}: not a readable Parquet file ({message})") from None


@DocumentSource.register("hf_dataset")
class HuggingFaceDataset(_ColumnSource):
    """A Hugging Face dataset: a folder written by ``save_to_disk`` (a ``Dataset``, or a
    ``DatasetDict``, whose ``split`` is read), or a dataset on the Hub named ``hf:NAME`` (``NAME``
    may also be a local folder of data files, as ``datasets.load_dataset`` takes it).

    A saved or downloaded dataset is read from its Arrow files, memory-mapped, in runs of rows
    (in parallel when indexing); with ``streaming`` a Hub dataset is streamed once, without
    downloading it first. The index of a Hub dataset is keyed by its commit on the Hub (or its
    files, for a local folder).

    # Parameters
    fields: the column(s) holding the text (``"text"``).
    split: the split to read (``"train"``).
    subset: the dataset's configuration (``name`` in ``load_dataset``), if it has several.
    revision: a Hub branch, tag or commit (null: the default branch).
    streaming: stream a Hub dataset instead of downloading and preparing it.
    empty: see ``DocumentSource``.
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
        super().__init__(fields, empty, undecodable)
        self.split, self.subset, self.revision, self.streaming = split, subset, revision, streaming

    def parts(self, data_path: str | os.PathLike) -> list[Part]:
        text = str(data_path)
        if text.startswith(HUB_PREFIX):
            return [self._hub_part(text[len(HUB_PREFIX) :])]
        path = self._saved_path(Path(text).expanduser())
        files = sorted(p for p in path.rglob("*") if p.is_file())
        identity = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        size = sum(p.stat().st_size for p in files if p.suffix == ".arrow")
        return [Part(str(path), identity, size, rows=True, kind="dataset")]

    def _saved_path(self, path: Path) -> Path:
        if is_saved_dataset_dict(path):
            splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
            if self.split not in splits:
                raise DeclutrError(
                    f"{path}: a saved DatasetDict without a split {self.split!r} (splits: {', '.join(splits)})"
                )
            path = path / self.split
        if not is_saved_dataset(path):
            what = "no such directory" if not path.exists() else "no state.json and dataset_info.json"
            raise DeclutrError(
                f"{path}: not a saved Hugging Face dataset ({what}; write one with Dataset.save_to_disk, "
                f"or name a Hub dataset as {HUB_PREFIX}NAME)"
            )
        return path

    def _hub_part(self, name: str) -> Part:
        settings = (self.subset, self.split, self.revision)
        local = Path(name).expanduser()
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))
            identity = (name, *settings, *((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
            return Part(HUB_PREFIX + name, identity, sum(p.stat().st_size for p in files), rows=True, kind="dataset")
        optional_module("datasets", "datasets", f"{HUB_PREFIX}{name}: reading a Hugging Face dataset")
        try:
            from huggingface_hub import HfApi

            commit = HfApi().dataset_info(name, revision=self.revision).sha
        except Exception as error:  # noqa: BLE001 (network, authentication, a wrong name: all one line)
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DeclutrError(
                f"{HUB_PREFIX}{name}: cannot look the dataset up on the Hugging Face Hub ({message})"
            ) from None
        return Part(HUB_PREFIX + name, (name, *settings, commit), 0, rows=True, kind="dataset")

    def _load(self, part: Part):
        """The ``datasets`` object of a part (a ``Dataset``, or an ``IterableDataset`` when streaming)."""
        datasets = optional_module("datasets", "datasets", f"{part.name}: reading a Hugging Face dataset")
        try:
            if not part.name.startswith(HUB_PREFIX):
                return datasets.load_from_disk(part.name)
            name = part.name[len(HUB_PREFIX) :]
            return datasets.load_dataset(
                name, self.subset, split=self.split, revision=self.revision, streaming=self.streaming
            )
        except Exception as error:  # noqa: BLE001 (datasets raises many types for a wrong name, split or file)
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DeclutrError(f"{part.name}: cannot load the dataset ({type(error).__name__}: {message})") from None

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        dataset = self._load(part)
        features = getattr(dataset, "features", None)
        if features is not None:
            self._check_columns(part.name, {k: getattr(v, "dtype", type(v).__name__) for k, v in features.items()})
        files = [f["filename"] for f in getattr(dataset, "cache_files", None) or []]
        if self.streaming or not files or getattr(dataset, "_indices", None) is not None:
            yield from self._streamed_chunks(dataset, part, number)
            return
        row = 1
        for file in files:
            rows, nbytes = _arrow_table(file).num_rows, os.path.getsize(file)
            step = max(1, rows * CHUNK_BYTES // max(nbytes, 1))
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                yield Chunk(self, part, number, row + start, (file, start, stop), nbytes * (stop - start) // rows)
            row += rows

    def _streamed_chunks(self, dataset, part: Part, number: int) -> Iterator[Chunk]:
        """Records parsed here, in this process, as the dataset streams by."""
        records, chars = [], 0
        for row, example in enumerate(dataset, start=1):
            missing = [f for f in self.fields if f not in example]
            if missing:
                keys = ", ".join(example)
                raise DeclutrError(f"{part.location(row)}: no column {', '.join(missing)} (columns: {keys})")
            values = [example[f] for f in self.fields]
            bad = next((f for f, v in zip(self.fields, values) if v is not None and not isinstance(v, str)), None)
            if bad is not None:
                raise DeclutrError(f"{part.location(row)}: column {bad} holds {type(example[bad]).__name__}, not text")
            record = self._record([v or "" for v in values], part, number, row)
            records.append(record)
            chars += sum(len(t) for t in record.texts or ())
            if chars >= CHUNK_BYTES:
                yield Chunk(_Parsed(), part, number, records[0].line, records, chars)
                records, chars = [], 0
        if records:
            yield Chunk(_Parsed(), part, number, records[0].line, records, chars)

    def records(self, chunk: Chunk) -> Iterator[Record]:
        file, start, stop = chunk.payload
        table = _arrow_table(file).slice(start, stop - start).select(self.fields)
        columns = [table.column(f).to_pylist() for f in self.fields]
        return self._rows(columns, chunk.part, chunk.number, chunk.first)


class _Parsed(DocumentSource):
    """Reads chunks whose payload is records already parsed (a streamed dataset's)."""


_ARROW_TABLES: dict[str, Any] = {}


def _arrow_table(file: str):
    """A dataset's Arrow file as a table, memory-mapped (one per process and file)."""
    table = _ARROW_TABLES.get(file)
    if table is None:
        pyarrow = optional_module("pyarrow", "parquet", f"{file}: reading a dataset's Arrow file")
        with pyarrow.memory_map(file) as source:
            table = _ARROW_TABLES[file] = pyarrow.ipc.open_stream(source).read_all()
    return table


@DocumentSource.register("auto")
class AutoFormat(DocumentSource):
    """Picks the format of each file: by name (``.jsonl``/``.json``/``.ndjson`` -> ``jsonl``,
    ``.csv``/``.tsv`` -> ``csv``, ``.parquet`` -> ``parquet``, ``.txt``/``.text`` -> ``text``;
    ``.gz``/``.zst`` looked through), else by content (Parquet's magic number; a first line that
    starts with ``{`` -> ``jsonl``; anything else -> ``text``). A folder written by
    ``save_to_disk`` and a Hub name ``hf:NAME`` are read as ``hf_dataset``.

    # Parameters
    fields: the text field(s) of JSON lines, CSV, Parquet and datasets (``"text"``).
    split: the split of a saved ``DatasetDict`` or a Hub dataset (``"train"``).
    streaming: stream a Hub dataset (see ``hf_dataset``).
    empty, undecodable: see ``DocumentSource``.
    """

    def __init__(
        self,
        fields: str | list[str] = "text",
        split: str = "train",
        streaming: bool = False,
        empty: Policy = "skip",
        undecodable: Policy = "skip",
    ):
        super().__init__(empty, undecodable)
        self.fields = _field_list(fields, "field")
        self.split, self.streaming = split, streaming
        self._jsonl = JsonLines(self.fields, empty, undecodable)
        self._csv = CsvRows(self.fields, None, empty, undecodable)
        self._parquet = ParquetRows(self.fields, empty, undecodable)
        self._dataset = HuggingFaceDataset(self.fields, split, None, None, streaming, empty, undecodable)
        self._text = TextLines(empty, undecodable)

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def parts(self, data_path: str | os.PathLike) -> list[Part]:
        path = Path(str(data_path)).expanduser()
        if str(data_path).startswith(HUB_PREFIX) or is_saved_dataset(path) or is_saved_dataset_dict(path):
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
        name = _base_name(part.path)
        if name.endswith((".jsonl", ".json", ".ndjson")):
            return self._jsonl
        if name.endswith((".csv", ".tsv")):
            return self._csv
        if name.endswith(".parquet"):
            return self._parquet
        if not name.endswith((".txt", ".text")):
            with open(part.path, "rb") as raw:
                if raw.read(4) == _PARQUET_MAGIC:
                    return self._parquet
            with open_binary(part.path) as handle:
                if handle.read(4096).lstrip()[:1] == b"{":
                    return self._jsonl
        if self.num_fields != 1:
            raise DeclutrError(
                f"{part.name}: a plain text file has one document per line, but {len(self.fields)} fields are configured"
            )
        return self._text
