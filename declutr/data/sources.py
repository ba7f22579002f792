"""Document sources: stream records (one or more texts each) out of files, one pass at a time.

A source turns ``data_path`` (a file, a directory, or a glob; any of them gzip-compressed when
the name ends in ``.gz``) into a stream of :class:`Record` s, each naming its file and line.
Whitespace is collapsed (``" ".join(text.split())``, docs/data.md, "Corpora"); nothing is lower-cased.

Bad input is handled by policy, never a crash:
- empty or whitespace-only documents, and lines that are not valid UTF-8, come out as records
  with ``status`` ``"empty"`` / ``"undecodable"`` (the reader skips and counts them), or, with
  the policy ``"error"``, raise :class:`~declutr.core.DeclutrError` naming ``file:line``;
- lines that cannot be parsed at all (bad JSON, a missing text field, a CSV row without the
  column) always raise ``DeclutrError`` naming ``file:line``: they mean the wrong file or the
  wrong ``fields``, not a stray bad document.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable

Policy = Literal["skip", "error"]
OK, EMPTY, UNDECODABLE = 0, 1, 2
STATUS_NAMES = {EMPTY: "empty", UNDECODABLE: "undecodable"}
_DATA_SUFFIXES = (".txt", ".text", ".jsonl", ".json", ".ndjson", ".csv", ".tsv")


@dataclass(frozen=True)
class Record:
    """One unit of a corpus: ``texts`` (one per field) or ``None`` when skipped by ``status``."""

    file: int  # index into the list of files of this pass
    line: int  # 1-based line number where the record starts
    texts: tuple[str, ...] | None
    status: int = OK


def collapse(text: str) -> str:
    """The reader's whitespace normalisation: runs of whitespace become one space, ends trimmed."""
    return " ".join(text.split())


def expand_paths(data_path: str | os.PathLike) -> list[Path]:
    """The files of ``data_path``, sorted: a file, a directory (its data files, recursively) or a glob."""
    text = str(data_path)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_data_file(p))
        if not files:
            raise DeclutrError(f"{path}: the directory has no data files ({', '.join(_DATA_SUFFIXES)}, optionally .gz)")
        return files
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
        if not files:
            raise DeclutrError(f"{text}: no file matches this pattern")
        return files
    raise DeclutrError(f"{text}: no such file or directory")


def _is_data_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return not path.name.startswith(".") and name.endswith(_DATA_SUFFIXES)


def open_binary(path: Path) -> io.BufferedIOBase:
    """``path`` opened for reading bytes, decompressing gzip (by suffix or magic number)."""
    handle = open(path, "rb")  # noqa: SIM115 (the caller closes it)
    if path.suffix == ".gz" or handle.peek(2)[:2] == b"\x1f\x8b":
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return handle


class DocumentSource(Registrable):
    """Reads records from the files of a ``data_path``; ``num_fields`` texts per record.

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
        """What, besides the files, determines the records (part of the index cache key)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def read(self, data_path: str | os.PathLike) -> Iterator[Record]:
        """Every record of every file of ``data_path``, in file order then line order."""
        return self.read_files(expand_paths(data_path))

    def read_files(self, files: list[Path]) -> Iterator[Record]:
        for number, path in enumerate(files):
            yield from self.read_file(path, number)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------------
    def _read_lines(self, path: Path, number: int, parse: Callable[[str, int], Record]) -> Iterator[Record]:
        """A record per line of a line-based file: ``parse(text, line)``, or an undecodable record
        (or an error, by the ``undecodable`` policy) for a line that is not UTF-8."""
        with open_binary(path) as handle:
            for line, raw in enumerate(handle, start=1):
                text = self._decode(raw, path, line)
                yield Record(number, line, None, UNDECODABLE) if text is None else parse(text, line)

    def _decode(self, raw: bytes, path: Path, line: int) -> str | None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            if self.undecodable == "error":
                raise DeclutrError(f"{path}:{line}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            return None

    def _record(self, texts: list[str], path: Path, number: int, line: int) -> Record:
        texts = [collapse(t) for t in texts]
        if not all(texts):
            if self.empty == "error":
                raise DeclutrError(f"{path}:{line}: empty document")
            return Record(number, line, None, EMPTY)
        return Record(number, line, tuple(texts))


@DocumentSource.register("text")
class TextLines(DocumentSource):
    """Plain text, one document per line (``\\n``-separated; the paper's corpus format)."""

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        yield from self._read_lines(path, number, lambda text, line: self._record([text], path, number, line))


@DocumentSource.register("jsonl")
class JsonLines(DocumentSource):
    """JSON lines, one object per line; the text is ``fields`` (one name, or several per record).

    # Parameters
    fields: the key holding the text (``"text"``), or a list of keys for multi-text records
        (e.g. ``["sent0", "sent1", "hard_neg"]`` for NLI triplets).
    empty, undecodable: see ``DocumentSource``. Blank lines are empty documents.
    """

    def __init__(self, fields: str | list[str] = "text", empty: Policy = "skip", undecodable: Policy = "skip"):
        super().__init__(empty, undecodable)
        self.fields = [fields] if isinstance(fields, str) else list(fields)
        if not self.fields:
            raise ValueError("fields must name at least one key")

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        yield from self._read_lines(path, number, lambda text, line: self._parse(text, path, number, line))

    def _parse(self, text: str, path: Path, number: int, line: int) -> Record:
        if not text.strip():
            return self._record([""], path, number, line)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as error:
            raise DeclutrError(f"{path}:{line}: not a JSON object ({error.msg} at column {error.colno})") from None
        if not isinstance(obj, dict):
            raise DeclutrError(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}")
        texts = []
        for field in self.fields:
            value = obj.get(field)
            if not isinstance(value, str):
                problem = "has no" if value is None else "has a non-string"
                keys = ", ".join(list(obj)[:8])
                raise DeclutrError(f'{path}:{line}: the object {problem} text field "{field}" (keys: {keys})')
            texts.append(value)
        return self._record(texts, path, number, line)


@DocumentSource.register("csv")
class CsvRows(DocumentSource):
    """CSV (or TSV) with a header row; the text is in the columns ``fields``.

    SimCSE's ``nli_for_simcse.csv`` has ``sent0,sent1,hard_neg`` (premise, entailment,
    contradiction). Quoted fields may span lines; ``line`` is where the row starts.

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
        self.fields = [fields] if isinstance(fields, str) else list(fields)
        if not self.fields:
            raise ValueError("fields must name at least one column")
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.delimiter = delimiter

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        delimiter = self.delimiter or ("\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ",")
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
                    yield self._record([""], path, number, line)
                    continue
                if len(row) <= max(columns):
                    raise DeclutrError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
                texts = [row[c] for c in columns]
                if any(_has_surrogates(t) for t in texts):
                    if self.undecodable == "error":
                        raise DeclutrError(f"{path}:{line}: not valid UTF-8")
                    yield Record(number, line, None, UNDECODABLE)
                    continue
                yield self._record(texts, path, number, line)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


@DocumentSource.register("auto")
class AutoFormat(DocumentSource):
    """Picks the format per file by its name: ``.jsonl``/``.json``/``.ndjson`` -> ``jsonl``,
    ``.csv``/``.tsv`` -> ``csv``, anything else -> ``text`` (``.gz`` is looked through).

    # Parameters
    fields: the text field(s) of JSON lines and CSV files (``"text"``).
    empty, undecodable: see ``DocumentSource``.
    """

    def __init__(self, fields: str | list[str] = "text", empty: Policy = "skip", undecodable: Policy = "skip"):
        super().__init__(empty, undecodable)
        self.fields = [fields] if isinstance(fields, str) else list(fields)
        self._jsonl = JsonLines(self.fields, empty, undecodable)
        self._csv = CsvRows(self.fields, None, empty, undecodable)
        self._text = TextLines(empty, undecodable)

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def read_file(self, path: Path, number: int) -> Iterator[Record]:
        name = path.name.lower().removesuffix(".gz")
        if name.endswith((".jsonl", ".json", ".ndjson")):
            return self._jsonl.read_file(path, number)
        if name.endswith((".csv", ".tsv")):
            return self._csv.read_file(path, number)
        if self.num_fields != 1:
            raise DeclutrError(
                f"{path}: a plain text file has one document per line, but {len(self.fields)} fields are configured"
            )
        return self._text.read_file(path, number)
