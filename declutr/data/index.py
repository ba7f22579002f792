"""The corpus index: every text tokenized once, its ids cached on disk and read back by offset.

One streaming pass over the data path's chunks (declutr/data/sources.py) tokenizes each text
with the fast tokenizer and appends its ids to ``tokens.bin``; small per-record arrays (status,
file, line, offsets) go to ``index.npz``. Later passes — every epoch, every rank, every worker —
read one text with one ``pread``, so memory stays flat however large the corpus is, any record
can be visited in any order (an exact per-epoch reshuffle), and the number of usable documents
(hence the number of batches) is known before training starts.

The pass runs in ``workers`` processes: the building process cuts the corpus into chunks (about
4 MB of lines, a Parquet row group, a run of dataset rows), the workers read and tokenize them,
and the builder writes their results in chunk order, with at most two chunks per worker in
flight. The chunks and their order do not depend on the number of workers, so the index is the
same, byte for byte, with one worker or many.

The cache lives in ``cache_directory`` (default ``$DECLUTR_CACHE`` or ``~/.cache/declutr``)
under a key made of the parts' identities (paths, sizes and modification times of the files; a
Hub dataset's commit), the source's settings, the tokenizer and the unit, so a changed file or
tokenizer builds a new index. An index is built in a staging folder next to its final place and
renamed into place complete (``meta.json`` last), so a half-built index is never used, on any
file system with an atomic rename (NFS and Lustre included). Building also holds a file lock, so
concurrent ranks on one machine (or on several, where the shared file system supports locks)
build it once; where locks do not work, each builder finishes its own copy and the first rename
wins. ``declutr index`` builds an index ahead of a multi-node launch.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from declutr.core.atomic import current_umask
from declutr.core.errors import DeclutrError
from declutr.data.sources import OK, Chunk, DocumentSource, Part
from declutr.data.tokenizer import TransformerTokenizer, plain_backend

logger = logging.getLogger(__name__)
Unit = Literal["subword", "whitespace"]
INDEX_VERSION = 1
#: with ``workers`` left to the default, a process per this many bytes of corpus (at most one per
#: core): starting a worker costs a second or two, worth it only for corpora of some size
BYTES_PER_WORKER = 16 << 20


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
        self.rows: list[bool] = meta.get("rows", [False] * len(self.files))  # numbered by row, not line
        self.commits: list[str | None] = meta.get("commits", [None] * len(self.files))  # of Hub datasets
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
        """``file:line`` (``file row N`` for Parquet and datasets) of a record, for messages."""
        file = int(self.file_index[record])
        separator = " row " if self.rows[file] else ":"
        return f"{self.files[file]}{separator}{int(self.line[record])}"

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


def cache_key(parts: list[Part], source: DocumentSource, tokenizer: TransformerTokenizer, unit: str) -> str:
    described = {
        "version": INDEX_VERSION,
        "files": [list(part.identity) for part in parts],
        "source": source.index_fingerprint(parts),
        "tokenizer": tokenizer.fingerprint(),
        "unit": unit,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def index_directory(
    parts: list[Part],
    source: DocumentSource,
    tokenizer: TransformerTokenizer,
    unit: str = "subword",
    cache_directory: str | os.PathLike | None = None,
) -> Path:
    """Where the index of ``parts`` read by ``source`` lives (complete when it has ``meta.json``)."""
    root = Path(cache_directory) if cache_directory else default_cache_directory()
    return root / "index" / cache_key(parts, source, tokenizer, unit)


def default_workers(total_bytes: int) -> int:
    """Processes for a build when none is asked for: one per ``BYTES_PER_WORKER`` of corpus, at
    most one per core available to this process (all of them when the size is unknown)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if total_bytes <= 0:  # unknown (a Hub dataset): assume it is large
        return cores
    return max(1, min(cores, math.ceil(total_bytes / BYTES_PER_WORKER)))


def load_or_build_index(
    data_path: str | os.PathLike,
    source: DocumentSource,
    tokenizer: TransformerTokenizer,
    unit: Unit = "subword",
    cache_directory: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> CorpusIndex:
    """The cached index of ``data_path``, built first if needed (under a lock) by ``workers``
    processes (null: see :func:`default_workers`)."""
    parts = source.parts(data_path)
    directory = index_directory(parts, source, tokenizer, unit, cache_directory)
    if (directory / "meta.json").is_file():
        return CorpusIndex(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(str(directory) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD_LOCKS.add(lock.fileno())  # closed in forked workers: the lock dies with this process
        try:
            if not (directory / "meta.json").is_file():
                for stale in directory.parent.glob(f".{directory.name}.{socket.gethostname()}.*"):
                    shutil.rmtree(stale, ignore_errors=True)  # a build on this machine that was killed
                build_index(parts, source, tokenizer, unit, directory, progress, workers)
        finally:
            _HELD_LOCKS.discard(lock.fileno())
            fcntl.flock(lock, fcntl.LOCK_UN)
    return CorpusIndex(directory)


#: descriptors of the index locks this process holds (a forked worker closes its copies)
_HELD_LOCKS: set[int] = set()


class _Tokenize:
    """Reads one chunk and tokenizes its texts: the work of a worker (or of the builder itself).

    Returns arrays for the builder to append: per record its status and line; per text (``fields``
    per record, zero-length for skipped records) its number of ids (and, for the whitespace unit,
    of word starts); the ids and word starts themselves as bytes."""

    def __init__(self, backend_json: str, id_dtype: str, fields: int, words: bool):
        self.backend_json, self.id_dtype, self.fields, self.words = backend_json, id_dtype, fields, words
        self._backend = None

    def __getstate__(self):
        return {**self.__dict__, "_backend": None}

    @property
    def backend(self):
        if self._backend is None:
            self._backend = plain_backend(self.backend_json)
        return self._backend

    def __call__(self, chunk: Chunk) -> tuple[np.ndarray, ...]:
        records = list(chunk.source.records(chunk))
        status = np.fromiter((r.status for r in records), dtype=np.int8, count=len(records))
        lines = np.fromiter((r.line for r in records), dtype=np.int64, count=len(records))
        ok = [r for r in records if r.status == OK]
        texts = [t for r in ok for t in r.texts]
        encode = self.backend.encode  # one thread: the workers are the parallelism (not rayon's threads)
        ids, word_starts = [], []
        for text in texts:  # only the ids (and word starts) are kept, not the Encoding objects
            encoding = encode(text, add_special_tokens=False)
            ids.append(np.asarray(encoding.ids, dtype=self.id_dtype))
            if self.words:
                word_starts.append(_word_starts(text, encoding))
        slots = (np.flatnonzero(status == OK)[:, None] * self.fields + np.arange(self.fields)).ravel()
        token_lengths = np.zeros(len(records) * self.fields, dtype=np.int64)
        token_lengths[slots] = [len(i) for i in ids]
        word_lengths = np.zeros_like(token_lengths)
        word_lengths[slots] = [len(w) for w in word_starts] if self.words else 0
        ids = np.concatenate(ids) if ids else np.zeros(0, dtype=self.id_dtype)
        starts = b"".join(w.tobytes() for w in word_starts)
        return status, lines, token_lengths, ids.tobytes(), word_lengths, starts


def _word_starts(text: str, encoding) -> np.ndarray:
    """Token index where each whitespace word of (collapsed) ``text`` starts, then the token count."""
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    spaces = np.flatnonzero(chars == 32)
    token_starts = np.fromiter((o[0] for o in encoding.offsets), dtype=np.int64, count=len(encoding.offsets))
    word_of_token = np.searchsorted(spaces, token_starts, side="right")
    return np.searchsorted(word_of_token, np.arange(len(spaces) + 2), side="left").astype(np.uint32)


_WORKER_TASK: _Tokenize | None = None


def _start_worker(task: _Tokenize, plugins: list[str]) -> None:
    """A worker process: tied to the builder's life, without the builder's lock, the parent's
    plugin modules imported (a plugin source's chunks unpickle; already there after a fork), the
    task kept for its chunks."""
    global _WORKER_TASK
    from declutr.core.plugins import import_plugins

    _die_with_parent()
    for descriptor in list(_HELD_LOCKS):  # a fork's copies: the lock must not outlive the builder
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD_LOCKS.clear()
    import_plugins(plugins)
    _WORKER_TASK = task


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the builder dies (SIGTERM, SIGKILL, OOM), so no
    orphan keeps the build's pipes or files."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the builder died before the call
        os._exit(1)


def _run_in_worker(chunk: Chunk):
    return _WORKER_TASK(chunk)


def _tokenized_chunks(chunks: Iterator[Chunk], task: _Tokenize, workers: int):
    """``(chunk, result)`` in chunk order, computed here (one worker) or by ``workers`` spawned
    processes with at most two chunks each in flight (memory stays flat in corpus size)."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, task(chunk)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from declutr.core.plugins import imported_plugins

    # fork where there is one (as torch's DataLoader workers): a spawned worker would re-run the
    # caller's script when it lacks an ``if __name__ == "__main__"`` guard, and import torch again
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(task, imported_plugins())
    )
    pending: collections.deque = collections.deque()
    chunk = None
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(_run_in_worker, chunk)))
            while len(pending) >= 2 * workers:
                chunk, future = pending.popleft()
                yield chunk, future.result()
        while pending:
            chunk, future = pending.popleft()
            yield chunk, future.result()
    except BrokenProcessPool:
        where = f" (the chunks from {chunk.part.location(chunk.first)} on)" if chunk is not None else ""
        raise DeclutrError(
            f"indexing failed: a worker process died (killed, or out of memory) while reading the corpus{where}; "
            "nothing was kept (rerun; fewer workers need less memory)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps, so the same arrays give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def build_index(
    parts: list[Part],
    source: DocumentSource,
    tokenizer: TransformerTokenizer,
    unit: str,
    directory: Path,
    progress: bool = True,
    workers: int | None = None,
) -> None:
    """Build the index of ``parts`` into ``directory``, which appears complete or not at all."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    total_bytes = sum(part.size for part in parts)
    workers = default_workers(total_bytes) if workers is None else int(workers)
    if workers < 1:
        raise DeclutrError(f"workers must be at least 1, got {workers}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.{socket.gethostname()}."))
    words = unit == "whitespace"
    task = _Tokenize(tokenizer.backend_json, np.dtype(tokenizer.id_dtype).name, source.num_fields, words)
    chunks = (chunk for number, part in enumerate(parts) for chunk in source.chunks(part, number))
    bar = tqdm(
        total=total_bytes or None,
        unit="B",
        unit_scale=True,
        desc=f"indexing {len(parts)} part(s), {workers} worker(s)",
        disable=not progress,
    )
    status, file_index, lines, token_lengths, word_lengths = [], [], [], [], []
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it 0700
        with bar, open(staging / "tokens.bin", "wb") as tokens_out, open(staging / "words.bin", "wb") as words_out:
            for chunk, (s, line, tl, ids, wl, starts) in _tokenized_chunks(chunks, task, workers):
                status.append(s)
                file_index.append(np.full(len(s), chunk.number, dtype=np.int32))
                lines.append(line)
                token_lengths.append(tl)
                word_lengths.append(wl)
                tokens_out.write(ids)
                words_out.write(starts)
                bar.update(chunk.size)
                bar.set_postfix(records=sum(len(x) for x in status), refresh=False)
        if not words:
            (staging / "words.bin").unlink()
        arrays = {
            "status": _joined(status, np.int8),
            "file_index": _joined(file_index, np.int32),
            "line": _joined(lines, np.int64),
            "token_offsets": _offsets(token_lengths),
        }
        if words:
            arrays["word_offsets"] = _offsets(word_lengths)
        _save_npz(staging / "index.npz", arrays)
        meta = {
            "files": [part.name for part in parts],
            "rows": [part.rows for part in parts],
            "commits": [part.commit for part in parts],  # of Hub datasets
            "num_fields": source.num_fields,
            "unit": unit,
            "id_dtype": np.dtype(tokenizer.id_dtype).name,
            "records": len(arrays["status"]),
            "tokens": int(arrays["token_offsets"][-1]),
            "tokenizer": str(tokenizer.model_name),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks it complete
        _move_into_place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    logger.info(
        "indexed %d records (%d tokens, %.1f MB) of %s in %.1fs with %d worker(s) (%.1f MB/s) into %s",
        meta["records"],
        meta["tokens"],
        total_bytes / 1e6,
        ", ".join(part.name for part in parts[:3]) + (", ..." if len(parts) > 3 else ""),
        seconds,
        workers,
        total_bytes / 1e6 / max(seconds, 1e-9),
        directory,
    )


def _joined(pieces: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype=dtype)


def _offsets(lengths: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(_joined(lengths, np.int64))]).astype(np.int64)


def _move_into_place(staging: Path, directory: Path) -> None:
    """Rename the complete ``staging`` folder to ``directory``. When another builder got there
    first with a complete index, keep theirs; a folder without ``meta.json`` (left by a build
    that died, in an earlier release) is set aside and removed."""
    for _ in range(3):
        try:
            os.rename(staging, directory)
            return
        except OSError:
            if (directory / "meta.json").is_file():
                return  # the same index, built by another process
            aside = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.stale."))
            try:
                os.rename(directory, aside / "index")
            except FileNotFoundError:
                pass
            shutil.rmtree(aside, ignore_errors=True)
    os.rename(staging, directory)
