"""Compressed corpus files: gzip and zstd, by suffix or magic number, read as plain bytes.

A corrupt or truncated stream raises ``DeclutrError`` naming the file and the byte offset (for
zstd, where the damaged frame starts). ``zstandard`` is optional (``declutr[zstd]``).
"""

from __future__ import annotations

import gzip
import importlib
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

from declutr.core.errors import DeclutrError

GZIP_MAGIC, ZSTD_MAGIC, PARQUET_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PAR1"
#: text per chunk: large enough that handing a chunk to a process costs little, small enough
#: that a few chunks in flight per process keep memory flat
CHUNK_BYTES = 4 << 20


def optional_module(name: str, extra: str, purpose: str):
    """Import an optional dependency, or stop with one line naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.split(".")[0]
        raise DeclutrError(
            f"{purpose} needs the optional package {package}: pip install 'declutr[{extra}]' (or 'declutr[data]')"
        ) from None


def head(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def compression_of(path: Path) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None``: by suffix, else by magic number."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    first = head(path, 4)
    return "gzip" if first[:2] == GZIP_MAGIC else "zstd" if first == ZSTD_MAGIC else None


def open_binary(path: Path) -> io.BufferedIOBase:
    """``path`` opened for reading bytes, decompressing gzip or zstd (by suffix or magic number).
    Corrupt or truncated compressed data raises ``DeclutrError`` naming the file and byte offset."""
    kind = compression_of(path)
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
        self._pending = bytearray()  # decompressed, not yet read: [self._offset:]
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._offset >= len(self._pending):
            self._pending.clear()
            self._offset = 0
            data = self.raw.read(1 << 13)  # small inputs bound the output of one call
            if not data:
                if self._frame_started:
                    raise DeclutrError(
                        f"{self.path}: truncated zstd frame starting at byte {self._frame_start:,} "
                        f"(the file ends at byte {self._consumed:,})"
                    )
                return 0
            self._decode(data)
        count = min(len(buffer), len(self._pending) - self._offset)
        buffer[:count] = memoryview(self._pending)[self._offset : self._offset + count]
        self._offset += count
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


def line_blocks(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """``(first line number, bytes of whole lines, bytes of the file read so far)``, blocks of
    about ``CHUNK_BYTES`` (a longer line is one block); the last figure counts compressed bytes
    for a compressed file (progress is measured against the file's size)."""
    with open_binary(path) as handle:
        raw = getattr(getattr(handle, "raw", None), "raw", handle)  # the file under a decompressor
        line, pieces = 1, []
        while True:
            block = handle.read(CHUNK_BYTES)
            if not block:
                if pieces:
                    yield line, b"".join(pieces), raw.tell()
                return
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # within a line longer than a block: keep the pieces, join them once
                pieces.append(block)
                continue
            whole = b"".join([*pieces, block[:cut]]) if pieces else block[:cut]
            yield line, whole, raw.tell()
            line += whole.count(b"\n")
            pieces = [block[cut:]] if cut < len(block) else []
