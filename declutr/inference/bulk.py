"""Bulk embedding: a text or JSON-lines file of any size to a ``.npy``, streamed.

Texts are read in chunks (``chunk_size`` at a time), embedded (length-sorted batches inside each
chunk) and written into a memory-mapped ``.npy`` whose shape is fixed after a cheap first pass
that counts the lines. Memory use is one chunk, whatever the input size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from declutr.core.errors import DeclutrError


def _is_jsonl(path: Path, input_format: str) -> bool:
    if input_format != "auto":
        return input_format == "jsonl"
    return path.suffix.lower() in (".jsonl", ".ndjson")


def count_texts(path: Path, jsonl: bool) -> int:
    """Texts in ``path``: its lines (JSON lines: its non-blank lines)."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            if jsonl:
                continue
            count += block.count(b"\n")
            last = block[-1:]
    if jsonl:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    return count + (last != b"\n")


def iter_texts(path: Path, jsonl: bool, field: str = "text") -> Iterator[str]:
    """One text per line, or the ``field`` of each JSON line (blank lines skipped)."""
    with path.open("rb") as handle:  # lines end at b"\n" only, as count_texts counts them
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError:
                raise DeclutrError(f"{path}:{number}: not valid UTF-8") from None
            if not jsonl:
                yield line
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DeclutrError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if isinstance(record, str):
                yield record
            elif isinstance(record, dict) and isinstance(record.get(field), str):
                yield record[field]
            else:
                raise DeclutrError(
                    f'{path}:{number}: expected a JSON string or an object with a string "{field}" field'
                )


def embed_file(
    encoder,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    normalize: bool = False,
    batch_size: int | None = None,
    input_format: str = "auto",
    field: str = "text",
    chunk_size: int = 16384,
    show_progress: bool = True,
) -> tuple[int, int]:
    """Embed every text of ``input_path`` into the ``[N, D]`` float32 ``output_path`` (.npy), in order.

    ``input_format``: ``text`` (one text per line), ``jsonl`` (a JSON string or an object with
    ``field`` per line) or ``auto`` (``jsonl`` for .jsonl/.ndjson files). Returns ``(N, D)``."""
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise DeclutrError(f"input file {input_path} does not exist")
    if input_format not in ("auto", "text", "jsonl"):
        raise DeclutrError(f'unknown input format "{input_format}"; use auto, text or jsonl')
    jsonl = _is_jsonl(input_path, input_format)
    total = count_texts(input_path, jsonl)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial.npy")
    array = open_memmap(partial, mode="w+", dtype=np.float32, shape=(total, encoder.dimension))
    written = 0
    bar = tqdm(total=total, disable=not show_progress, unit="text", desc="embedding")
    try:
        chunk: list[str] = []
        texts = iter_texts(input_path, jsonl, field)
        while True:
            chunk.clear()
            for text in texts:
                chunk.append(text)
                if len(chunk) == chunk_size:
                    break
            if not chunk:
                break
            if written + len(chunk) > total:
                raise DeclutrError(f"{input_path} changed while it was being read")
            vectors = encoder.embed(chunk, batch_size=batch_size, show_progress=False)
            if normalize:
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            array[written : written + len(chunk)] = vectors
            written += len(chunk)
            bar.update(len(chunk))
        if written != total:
            raise DeclutrError(f"{input_path}: counted {total} texts but read {written}")
        array.flush()
        del array
        os.replace(partial, output_path)
    finally:
        bar.close()
        if partial.exists():
            partial.unlink()
    return total, encoder.dimension
