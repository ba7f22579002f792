"""Column formats: Parquet files and Hugging Face datasets (saved with ``save_to_disk``, or on
the Hub as ``hf:NAME``), read in row groups or runs of rows so that several processes can
index them. ``pyarrow`` and ``datasets`` are optional (``declutr[parquet]``, ``declutr[datasets]``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from declutr.core.errors import DeclutrError, first_line
from declutr.data import compression
from declutr.data.compression import optional_module
from declutr.data.sources import (
    DATASET_SETTINGS,
    HUB_PREFIX,
    Chunk,
    DocumentSource,
    Part,
    Policy,
    Record,
    field_list,
    file_identity,
    is_saved_dataset,
    is_saved_dataset_dict,
    parsed_chunks,
)

logger = logging.getLogger(__name__)
_COMMIT = re.compile(r"[0-9a-f]{40}")


class _ColumnSource(DocumentSource):
    """Formats with named, typed columns (Parquet, datasets): texts in the columns ``fields``;
    a null cell is an empty document; rows are numbered from 1."""

    def __init__(self, fields: str | list[str] = "text", empty: Policy = "skip", undecodable: Policy = "skip"):
        super().__init__(empty, undecodable)
        self.fields = field_list(fields, "column")

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
    row group by row group in record batches of 2,048 rows (``pyarrow``), never a whole file or
    row group at once. A row group of up to 16 MB is a chunk read by a worker; a larger one is
    read here, batch by batch, and its texts are tokenized by the workers in chunks of about 4 MB.

    # Parameters
    fields: the column(s) holding the text (``"text"``).
    empty: see ``DocumentSource`` (a null cell is an empty document).
    """

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        parquet = _parquet_file(part.path)
        schema = parquet.schema_arrow
        self._check_columns(part.name, {f.name: str(f.type) for f in schema})
        metadata, row = parquet.metadata, 1
        total = max(metadata.num_rows, 1)
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if metadata.row_group(group).total_byte_size <= 4 * compression.CHUNK_BYTES:
                yield Chunk(self, part, number, row, group, part.size * rows // total)
            else:
                records = self._group_records(parquet, group, part, number, row)
                yield from parsed_chunks(records, part, number, lambda n, _: part.size * n // total)
            row += rows

    def records(self, chunk: Chunk) -> Iterator[Record]:
        return self._group_records(_parquet_file(chunk.part.path), chunk.payload, chunk.part, chunk.number, chunk.first)

    def _group_records(self, parquet, group: int, part: Part, number: int, first: int) -> Iterator[Record]:
        batches = parquet.iter_batches(batch_size=2048, row_groups=[group], columns=self.fields, use_threads=False)
        row = first
        while True:
            try:
                batch = next(batches, None)
            except (OSError, ValueError) as error:  # a damaged page: ArrowIOError / ArrowInvalid
                raise DeclutrError(
                    f"{part.name}: corrupt Parquet data in row group {group} (rows from {first}): {first_line(error)}"
                ) from None
            if batch is None:
                return
            columns = [batch.column(f).to_pylist() for f in self.fields]
            yield from self._rows(columns, part, number, row)
            row += batch.num_rows


def _parquet_file(path: Path):
    parquet = optional_module("pyarrow.parquet", "parquet", f"{path}: reading Parquet")
    try:
        return parquet.ParquetFile(path)
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise DeclutrError(f"{path}: not a readable Parquet file ({first_line(error)})") from None


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
        identity = tuple(file_identity(p) for p in files)
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

    def fingerprint(self) -> dict:
        """Without the settings that choose the dataset (its parts' identities hold the split, the
        subset and the commit a revision names: a branch and its pinned commit, read offline, find
        the same index), nor ``streaming`` (the same records either way); named as ``auto`` reads
        datasets, so that either source finds the other's index."""
        described = super().fingerprint()
        for name in DATASET_SETTINGS:
            described.pop(name, None)
        return {**described, "type": "dataset"}

    def _hub_part(self, name: str) -> Part:
        settings = (self.subset, self.split)
        local = Path(name).expanduser()
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))
            identity = (name, *settings, *(file_identity(p) for p in files))
            return Part(HUB_PREFIX + name, identity, sum(p.stat().st_size for p in files), rows=True, kind="dataset")
        optional_module("datasets", "datasets", f"{HUB_PREFIX}{name}: reading a Hugging Face dataset")
        if self.revision is not None and _COMMIT.fullmatch(self.revision):
            return Part(HUB_PREFIX + name, (name, *settings, self.revision), 0, True, "dataset", self.revision)
        try:
            from huggingface_hub import HfApi

            commit = HfApi().dataset_info(name, revision=self.revision).sha
        except Exception as error:  # noqa: BLE001 (network, authentication, a wrong name: all one line)
            raise DeclutrError(
                f"{HUB_PREFIX}{name}: cannot look the dataset up on the Hugging Face Hub ({first_line(error)}); "
                "without the network, set document_source.revision to its commit (declutr index prints it)"
            ) from None
        logger.info("%s%s: revision %s is commit %s", HUB_PREFIX, name, self.revision or "(default)", commit)
        return Part(HUB_PREFIX + name, (name, *settings, commit), 0, True, "dataset", commit)

    def _load(self, part: Part):
        """The ``datasets`` object of a part (a ``Dataset``, or an ``IterableDataset`` when streaming)."""
        datasets = optional_module("datasets", "datasets", f"{part.name}: reading a Hugging Face dataset")
        try:
            if not part.name.startswith(HUB_PREFIX):
                return datasets.load_from_disk(part.name)
            name = part.name[len(HUB_PREFIX) :]
            revision = part.commit or self.revision  # the commit the index is keyed by
            return datasets.load_dataset(
                name, self.subset, split=self.split, revision=revision, streaming=self.streaming
            )
        except Exception as error:  # noqa: BLE001 (datasets raises many types for a wrong name, split or file)
            raise DeclutrError(
                f"{part.name}: cannot load the dataset ({type(error).__name__}: {first_line(error)})"
            ) from None

    def chunks(self, part: Part, number: int) -> Iterator[Chunk]:
        dataset = self._load(part)
        features = getattr(dataset, "features", None)
        if features is not None:
            self._check_columns(part.name, {k: getattr(v, "dtype", type(v).__name__) for k, v in features.items()})
        files = [f["filename"] for f in getattr(dataset, "cache_files", None) or []]
        whole = files and getattr(dataset, "_indices", None) is None
        if self.streaming or not whole or sum(_arrow_table(f).num_rows for f in files) != len(dataset):
            yield from self._streamed_chunks(dataset, part, number)  # streamed, or a slice / selection of its files
            return
        row = 1
        for file in files:
            rows, nbytes = _arrow_table(file).num_rows, os.path.getsize(file)
            step = max(1, rows * compression.CHUNK_BYTES // max(nbytes, 1))
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                yield Chunk(self, part, number, row + start, (file, start, stop), nbytes * (stop - start) // rows)
            row += rows

    def _streamed_chunks(self, dataset, part: Part, number: int) -> Iterator[Chunk]:
        """Records parsed here, in this process, as the dataset streams by."""
        return parsed_chunks(self._streamed_records(dataset, part, number), part, number)

    def _streamed_records(self, dataset, part: Part, number: int) -> Iterator[Record]:
        for row, example in enumerate(dataset, start=1):
            missing = [f for f in self.fields if f not in example]
            if missing:
                keys = ", ".join(example)
                raise DeclutrError(f"{part.location(row)}: no column {', '.join(missing)} (columns: {keys})")
            values = [example[f] for f in self.fields]
            bad = next((f for f, v in zip(self.fields, values) if v is not None and not isinstance(v, str)), None)
            if bad is not None:
                raise DeclutrError(f"{part.location(row)}: column {bad} holds {type(example[bad]).__name__}, not text")
            yield self._record([v or "" for v in values], part, number, row)

    def records(self, chunk: Chunk) -> Iterator[Record]:
        file, start, stop = chunk.payload
        table = _arrow_table(file).slice(start, stop - start).select(self.fields)
        columns = [table.column(f).to_pylist() for f in self.fields]
        return self._rows(columns, chunk.part, chunk.number, chunk.first)


_ARROW_TABLES: dict[str, Any] = {}


def _arrow_table(file: str):
    """A dataset's Arrow file as a table, memory-mapped (one per process and file)."""
    table = _ARROW_TABLES.get(file)
    if table is None:
        pyarrow = optional_module("pyarrow", "parquet", f"{file}: reading a dataset's Arrow file")
        with pyarrow.memory_map(file) as source:
            table = _ARROW_TABLES[file] = pyarrow.ipc.open_stream(source).read_all()
    return table
