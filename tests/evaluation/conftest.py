from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from declutr.evaluation import ClassifierSettings, evaluate

#: SentEval's protocol with fewer folds and epochs, and ranking folds of 4 images (tiny files)
FAST = ClassifierSettings.prototyping().but(
    kfold=3,
    max_epoch=30,
    regressor_epochs_per_check=20,
    regressor_max_epoch=100,
    ranking_fold_images=4,
    ranking_projdim=16,
    ranking_batch_size=32,
    ranking_contrast=5,
    ranking_max_epoch=4,
)


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

    """SentEval's ``data/downstream`` folder (``data/probing`` beside it) with tiny files."""
    return write_all(tmp_path_factory.mktemp("senteval") / "downstream")


@pytest.fixture(scope="session")
def all_results(senteval_dir):
    """Every task of ``--tasks all`` on the tiny files, with a bag-of-words embedding."""
    return evaluate(bag_of_words, "all", senteval_dir, settings=FAST)
