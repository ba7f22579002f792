"""Plugin of ``bin/gpu-check``: a data loader that repeats one epoch's batches.

``--include-package declutr_fixed_batch`` (with this folder on ``PYTHONPATH``) registers
``data_loader: {type: "fixed_batch", repeat: N}``: the default loader, except that an epoch is
epoch 0's batches (records, spans and masks) ``repeat`` times over, and every epoch is the same.
With as many documents as ``batch_size``, ``repeat: N`` and one epoch, N steps train on one fixed
batch, so the loss must fall, and only the epoch's end writes a checkpoint.
"""

from __future__ import annotations

import numpy as np

from declutr.data.loader import DataLoader, DocumentDataLoader


@DataLoader.register("fixed_batch")
class FixedBatchDataLoader(DocumentDataLoader):
    """``DocumentDataLoader`` with epoch 0's plan and spans, ``repeat`` times, in every epoch."""

    def __init__(self, repeat: int = 1, **kwargs):
        super().__init__(**kwargs)
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {repeat}")
        self.repeat = repeat

    def __len__(self) -> int:
        return super().__len__() * self.repeat

    def plan(self, epoch: int) -> list[np.ndarray]:
        return super().plan(0) * self.repeat

    def make_batch(self, records: np.ndarray, epoch: int) -> dict:
        return super().make_batch(records, 0)

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "batches": len(self)}
