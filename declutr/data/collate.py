"""BERT masking of one input (docs/data.md, "Masking and batches") and dynamic padding of a text group."""

from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: np.ndarray,
    special_tokens_mask: np.ndarray,
    rng: np.random.Generator,
    mask_id: int,
    vocab_size: int,
    probability: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """``(masked_ids, labels)``: each non-special position is selected with ``probability``;
    a selected one becomes ``mask_id`` (80%), a random id in ``[0, vocab_size)`` (10%) or stays
    (10%); ``labels`` holds the original id there and ``-100`` everywhere else."""
    selected = (rng.random(len(input_ids)) < probability) & (special_tokens_mask == 0)
    labels = np.where(selected, input_ids, IGNORE_INDEX)
    masked = input_ids.copy()
    choice = rng.random(len(input_ids))
    to_mask = selected & (choice < 0.8)
    to_random = selected & (choice >= 0.8) & (choice < 0.9)
    masked[to_mask] = mask_id
    masked[to_random] = rng.integers(0, vocab_size, size=int(to_random.sum()))
    return masked, labels


def pad_group(inputs: list[tuple[np.ndarray, np.ndarray]], pad_id: int, labels: list[np.ndarray] | None = None) -> dict:
    """``input_ids``/``attention_mask``/``special_tokens_mask`` (and ``mlm_labels``) as
    ``LongTensor[N, L]``, ``L`` the longest input; padding is ``pad_id`` / 0 / 1 / -100 (padding
    counts as a special token, as in Hugging Face's ``tokenizer.pad``), and ``lengths``, each row's
    real length as a Python ``list[int]``: it stays on the host when the batch moves to the device,
    so the model plans its sub-batches without reading the mask back (no device synchronisation)."""
    count = len(inputs)
    width = max((len(ids) for ids, _ in inputs), default=0)
    input_ids = np.full((count, width), pad_id, dtype=np.int64)
    attention = np.zeros((count, width), dtype=np.int64)
    special = np.ones((count, width), dtype=np.int64)
    for row, (ids, specials) in enumerate(inputs):
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
        special[row, : len(ids)] = specials
    group = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "special_tokens_mask": torch.from_numpy(special),
        "lengths": [len(ids) for ids, _ in inputs],
    }
    if labels is not None:
        mlm = np.full((count, width), IGNORE_INDEX, dtype=np.int64)
        for row, values in enumerate(labels):
            mlm[row, : len(values)] = values
        group["mlm_labels"] = torch.from_numpy(mlm)
    return group
