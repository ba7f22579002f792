from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def bag_of_words(texts: list[str], dimension: int = 256) -> np.ndarray:
    """A deterministic hashing bag-of-words embedding (enough to learn the tiny tasks)."""
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            vectors[row, zlib.crc32(word.encode("utf-8")) % dimension] += 1.0
    return vectors


@pytest.fixture(scope="session")
def senteval_dir(tmp_path_factory) -> Path:
    from senteval_files import write_all

    return write_all(tmp_path_factory.mktemp("senteval"))
