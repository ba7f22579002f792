"""Helpers for the data tests: corpora written to temporary files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

SMALL_SAMPLER = {"type": "declutr", "num_anchors": 2, "num_positives": 2, "min_span_len": 8, "max_span_len": 64}


def write_lines(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    return write_lines(path, [json.dumps({"id": f"doc-{i}", field: t}) for i, t in enumerate(texts)])
