"""The corpus index: every text tokenized once, its ids cached on disk and read back by offset.

One streaming pass over the files (gzip included) tokenizes each text with the fast tokenizer
and appends its ids to ``tokens.bin``; small per-record arrays (status, file, line, offsets)
go to ``index.npz``. Later passes — every epoch, every rank, every worker — read one text with
one ``pread``, so memory stays flat however large the corpus is, any record can be visited in
any order (an exact per-epoch reshuffle), and the number of usable documents (hence the number
of batches) is known before training starts.

The cache lives in ``cache_directory`` (default ``$DECLUTR_CACHE`` or ``~/.cache/declutr``)
under a key made of the files' paths, sizes and modification times, the source's settings, the
tokenizer and the unit, so a changed file or tokenizer builds a new index. Building holds a
file lock: concurrent ranks build it once. Files are written to temporary names, then renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np

from declutr.core.atomic import atomic_file
from declutr.data.sources import OK, DocumentSource, expand_paths
from declutr.data.tokenizer import TransformerTokenizer

logger = logging.getLogger(__name__)
Unit = Literal["subword", "whitespace"]
INDEX_VERSION = 1
_BATCH_TEXTS = 256
_BATCH_CHARS = 2 << 20


def default_cache_directory() -> Path:
    return Path(os.environ.get("DECLUTR_CACHE") or Path.home() / ".cache" / "declutr")


class CorpusIndex:
    """Read access to an indexed corpus.

    ``R`` records with ``F`` texts each; text ``slot = record * F + field``.
    ``lengths[slot]`` is its length in units (subword tokens, or whitespace words).
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
        self.files: list[str] = meta["files"]
        self.num_fields: int = meta["num_fields"]
        self.unit: str = meta["unit"]
        self.id_dtype = np.dtype(meta["id_dtype"])
        with np.load(self.directory / "index.npz") as arrays:
            self.status = arrays["status"]
            self.file_index = arrays["file_index"]
            self.line = arrays["line"]
            self.token_offsets = arrays["token_offsets"]
            self.word_offsets = arrays["word_offsets"] if "word_offsets" in arrays.files else None
        if self.word_offsets is None:
            self.lengths = np.diff(self.token_offsets)
        else:  # each text stores its word starts plus the token count
            self.lengths = np.maximum(np.diff(self.word_offsets) - 1, 0)
        self._fds: dict[str, int] = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.status)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = {}, -1
        return state

    def _read(self, name: str, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
        if self._pid != os.getpid():  # after a fork, each worker opens its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.directory / name, os.O_RDONLY)
        size = dtype.itemsize
        data = os.pread(fd, (stop - start) * size, start * size)
        return np.frombuffer(data, dtype=dtype)

    def tokens(self, slot: int) -> np.ndarray:
        """The token ids of one text (no special tokens)."""
        return self._read("tokens.bin", self.id_dtype, int(self.token_offsets[slot]), int(self.token_offsets[slot + 1]))

    def unit_starts(self, slot: int) -> np.ndarray | None:
        """For the whitespace unit: the token index where each word starts, then the token count."""
        if self.word_offsets is None:
            return None
        return self._read(
            "words.bin", np.dtype(np.uint32), int(self.word_offsets[slot]), int(self.word_offsets[slot + 1])
        )

    def location(self, record: int) -> str:
        """``file:line`` of a record, for messages."""
        return f"{self.files[int(self.file_index[record])]}:{int(self.line[record])}"

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __del__(self):
        try:
            self.close()
        except (OSError, AttributeError):
            pass


def cache_key(files: list[Path], source: DocumentSource, tokenizer: TransformerTokenizer, unit: str) -> str:
    described = {
        "version": INDEX_VERSION,
        "files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "source": source.fingerprint(),
        "tokenizer": tokenizer.fingerprint(),
        "unit": unit,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def load_or_build_index(
    data_path: str | os.PathLike,
    source: DocumentSource,
    tokenizer: TransformerTokenizer,
    unit: Unit = "subword",
    cache_directory: str | os.PathLike | None = None,
    progress: bool = True,
) -> CorpusIndex:
    """The cached index of ``data_path``, built first if needed (under a lock)."""
    files = expand_paths(data_path)
    root = Path(cache_directory) if cache_directory else default_cache_directory()
    directory = root / "index" / cache_key(files, source, tokenizer, unit)
    if (directory / "meta.json").is_file():
        return CorpusIndex(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(str(directory) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (directory / "meta.json").is_file():
                _build(files, source, tokenizer, unit, directory, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return CorpusIndex(directory)


def _word_starts(text: str, encoding) -> np.ndarray:
    """Token index where each whitespace word of (collapsed) ``text`` starts, then the token count."""
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    spaces = np.flatnonzero(chars == 32)
    token_starts = np.fromiter((o[0] for o in encoding.offsets), dtype=np.int64, count=len(encoding.offsets))
    word_of_token = np.searchsorted(spaces, token_starts, side="right")
    return np.searchsorted(word_of_token, np.arange(len(spaces) + 2), side="left").astype(np.uint32)


class _IndexWriter:
    """Appends records' token ids (and word starts) to the index files; ``finish`` writes the arrays.

    The files are ``atomic_file`` contexts on ``stack``: they appear under their final names when
    the stack closes without an error, and are removed otherwise.
    """

    def __init__(self, stack: contextlib.ExitStack, directory: Path, tokenizer, fields: int, words: bool):
        self.tokenizer, self.fields, self.directory = tokenizer, fields, directory
        self.tokens_out = stack.enter_context(atomic_file(directory / "tokens.bin", "wb"))
        self.words_out = stack.enter_context(atomic_file(directory / "words.bin", "wb")) if words else None
        self.index_out = stack.enter_context(atomic_file(directory / "index.npz", "wb"))
        self.status: list[int] = []
        self.file_index: list[int] = []
        self.line: list[int] = []
        self.token_offsets = [0]
        self.word_offsets = [0]
        self.pending: list[tuple[int, list[str]]] = []  # (record number, texts) awaiting tokenization
        self.pending_chars = 0

    def add(self, record) -> None:
        number = len(self.status)
        self.status.append(record.status)
        self.file_index.append(record.file)
        self.line.append(record.line)
        if record.status == OK:
            self.pending.append((number, list(record.texts)))
            self.pending_chars += sum(len(t) for t in record.texts)
        if len(self.pending) >= _BATCH_TEXTS or self.pending_chars >= _BATCH_CHARS:
            self.flush()

    def _pad_to(self, records: int) -> None:
        """Empty offsets for the records skipped before ``records``."""
        while len(self.token_offsets) - 1 < records * self.fields:
            self.token_offsets.append(self.token_offsets[-1])
            self.word_offsets.append(self.word_offsets[-1])

    def flush(self) -> None:
        texts = [t for _, record_texts in self.pending for t in record_texts]
        encodings = iter(self.tokenizer.encode_batch(texts) if texts else [])
        for number, record_texts in self.pending:
            self._pad_to(number)
            for text in record_texts:
                encoding = next(encodings)
                ids = np.asarray(encoding.ids, dtype=self.tokenizer.id_dtype)
                self.tokens_out.write(ids.tobytes())
                self.token_offsets.append(self.token_offsets[-1] + len(ids))
                if self.words_out is not None:
                    starts = _word_starts(text, encoding)
                    self.words_out.write(starts.tobytes())
                    self.word_offsets.append(self.word_offsets[-1] + len(starts))
                else:
                    self.word_offsets.append(self.word_offsets[-1])
        self.pending.clear()
        self.pending_chars = 0

    def finish(self) -> None:
        self.flush()
        self._pad_to(len(self.status))  # trailing skipped records
        arrays = {
            "status": np.asarray(self.status, dtype=np.int8),
            "file_index": np.asarray(self.file_index, dtype=np.int32),
            "line": np.asarray(self.line, dtype=np.int64),
            "token_offsets": np.asarray(self.token_offsets, dtype=np.int64),
        }
        if self.words_out is not None:
            arrays["word_offsets"] = np.asarray(self.word_offsets, dtype=np.int64)
        np.savez(self.index_out, **arrays)


def _build(files, source, tokenizer, unit, directory: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    total_bytes = sum(p.stat().st_size for p in files)
    bar = tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc=f"indexing {len(files)} file(s)", disable=not progress
    )
    with bar, contextlib.ExitStack() as stack:
        writer = _IndexWriter(stack, directory, tokenizer, source.num_fields, words=unit == "whitespace")
        last_file, done_bytes = -1, 0
        for record in source.read_files(files):
            if record.file != last_file:
                if last_file >= 0:
                    done_bytes += files[last_file].stat().st_size
                    bar.n = done_bytes
                    bar.set_postfix(records=len(writer.status))
                last_file = record.file
            writer.add(record)
        writer.finish()
        bar.n = total_bytes
    meta = {
        "files": [str(p) for p in files],
        "num_fields": source.num_fields,
        "unit": unit,
        "id_dtype": np.dtype(tokenizer.id_dtype).name,
        "records": len(writer.status),
        "tokens": int(writer.token_offsets[-1]),
        "tokenizer": tokenizer.model_name,
    }
    with atomic_file(directory / "meta.json") as file:  # written last: its presence marks a complete index
        json.dump(meta, file, indent=1)
    logger.info(
        "indexed %d records (%d tokens) of %s in %.1fs into %s",
        meta["records"],
        meta["tokens"],
        ", ".join(str(p) for p in files[:3]),
        time.perf_counter() - started,
        directory,
    )
