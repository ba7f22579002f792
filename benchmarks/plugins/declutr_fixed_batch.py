"""Plugin of ``bin/gpu-check``: a data loader whose every epoch is epoch 0.

``--include-package declutr_fixed_batch`` (with this folder on ``PYTHONPATH``) registers
``data_loader: {type: "fixed_batch"}``: the default loader, except that each epoch hands out the
same records in the same order with the same spans and masks. With as many documents as
``batch_size`` every step trains on one fixed batch, so the loss must fall.
"""

from __future__ import annotations

import numpy as np

from declutr.data.loader import DataLoader, DocumentDataLoader


@DataLoader.register("fixed_batch")
class FixedBatchDataLoader(DocumentDataLoader):
    """``DocumentDataLoader`` with the plan and the spans of epoch 0 in every epoch."""

    def plan(self, epoch: int) -> list[np.ndarray]:
        return super().plan(0)

    def make_batch(self, records: np.ndarray, epoch: int) -> dict:
        return super().make_batch(records, 0)
