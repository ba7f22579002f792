"""Helpers for the evaluation tests: fast classifier settings and a bag-of-words embedding."""

from __future__ import annotations

import zlib

import numpy as np

from declutr.evaluation import ClassifierSettings

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


class Recorder:
    """Records every text it embeds (to check parsing), embeds with a bag of words."""

    def __init__(self):
        self.texts: list[str] = []

    def __call__(self, texts):
        self.texts.extend(texts)
        return bag_of_words(texts)
