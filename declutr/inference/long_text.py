"""Texts longer than the model's limit, embedded whole: ``Encoder(long_text="chunk")``.

A text is split into windows of at most ``max_length`` tokens (the tokenizer's overflow windows,
special tokens added to each, consecutive windows sharing ``stride`` tokens). Every window is
pooled over the tokens it contributes (a token two windows share counts once, in the window
where it has more context), and the windows of a text are combined as whole-text pooling would
combine its tokens: mean (and cnn) pooling by the mean of the window vectors weighted by the
tokens each averaged, max pooling by the element-wise maximum. The projection head and a
``Normalize`` module then apply to the combined vector (docs/evaluation.md, "Long texts").

The Encoder runs the transformer; this module holds what is particular to windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from declutr.core.errors import DeclutrError


def windows(
    tokenizer, texts: Sequence[str], max_length: int, stride: int = 0
) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """Every text as windows of at most ``max_length`` tokens, special tokens added to each,
    consecutive windows of a text sharing ``stride`` tokens: ``(input_ids, special_tokens_mask,
    owners)``, one entry per window, ``owners`` the text each belongs to (ascending)."""
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=False,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    owners = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
    return encoded["input_ids"], encoded["special_tokens_mask"], owners


def count_long(owners: np.ndarray) -> int:
    """How many texts took more than one window (were longer than ``max_length``)."""
    return int(np.count_nonzero(np.bincount(owners) > 1))


def first_windows(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], list[list[int]], int]:
    """Every text truncated to ``max_length`` tokens (its first window): ``(input_ids,
    special_tokens_mask, how many texts were longer)``."""
    ids, special, owners = windows(tokenizer, texts, max_length)
    first = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    return [ids[i] for i in first], [special[i] for i in first], count_long(owners)


def check_chunking(head, tokenizer, max_length: int, stride: int, source: str) -> None:
    """``long_text="chunk"`` needs a pooler whose windows combine exactly, and room in a window
    for more than ``stride`` text tokens."""
    from declutr.io.export import registered_name
    from declutr.modules.poolers import CnnPooler, MaxPooler, MeanPooler, Pooler

    pooler = head.pooler
    if type(pooler) not in (MeanPooler, MaxPooler, CnnPooler):
        try:
            name = registered_name(pooler, Pooler)
        except ValueError:
            name = type(pooler).__name__
        raise DeclutrError(
            f'long_text="chunk" needs mean, max or cnn pooling; {source} pools with {name}, which reads '
            'one token that only the first window has (use long_text="truncate", or pooler="mean")'
        )
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if not 0 <= stride < room:
        raise DeclutrError(
            f"stride {stride} must be at least 0 and less than the {room} text tokens of a window "
            f"(max_length {max_length} minus {max_length - room} special tokens)"
        )


def pooling_masks(special: list[list[int]], owners: np.ndarray, stride: int) -> list[list[int]]:
    """Per window, 1 for the tokens it pools: its special tokens and the text tokens it holds,
    less its share of an overlap (the earlier window keeps the first half, rounded up)."""
    later, earlier = stride - stride // 2, stride // 2  # dropped at a window's start / end
    masks = []
    for window, flags in enumerate(special):
        mask = [1] * len(flags)
        text_positions = [i for i, flag in enumerate(flags) if not flag]
        drop = []
        if window > 0 and owners[window - 1] == owners[window]:
            drop += text_positions[:later]
        if window + 1 < len(owners) and owners[window + 1] == owners[window] and earlier:
            drop += text_positions[-earlier:]
        for i in drop:
            mask[i] = 0
        masks.append(mask)
    return masks


class WindowCombiner:
    """Pools batches of windows and combines them per text: ``add`` each batch of windows, then
    ``vectors`` gives one vector per text.

    # Parameters
    head : the Encoder's ``EmbeddingHead`` (its pooler pools the windows; its projection and
        normalisation apply to the combined vectors).
    owners : the text each window belongs to (from :func:`windows`).
    count : the number of texts.
    """

    def __init__(self, head, owners: np.ndarray, count: int):
        from declutr.modules.poolers import MaxPooler

        self.head, self.owners = head, owners
        self.use_max = type(head.pooler) is MaxPooler
        self.combined: np.ndarray | None = None
        self.totals = np.zeros(count, dtype=np.float64)
        self.count = count

    def add(self, index: np.ndarray, hidden, attention, special_mask, pool_mask) -> None:
        """The windows ``index`` (positions in the window list): their last hidden states and masks."""
        vectors, weights = self.pool_window(hidden, attention, special_mask, pool_mask)
        if self.combined is None:
            fill = -np.inf if self.use_max else 0.0
            self.combined = np.full((self.count, vectors.shape[1]), fill, dtype=np.float64)
        owners = self.owners[index]
        if self.use_max:
            np.maximum.at(self.combined, owners, vectors)
        else:
            np.add.at(self.combined, owners, vectors * weights[:, None])
            np.add.at(self.totals, owners, weights)

    def pool_window(self, hidden, attention, special_mask, pool_mask) -> tuple[np.ndarray, np.ndarray]:
        """A window's pooled vector over ``pool_mask`` and its weight: the number of tokens the
        pooling averaged (mean: its non-padding tokens, less special ones when it excludes them;
        cnn: its local features over every token, averaged over ``pool_mask``; max: 1)."""
        from declutr.modules.poolers import CnnPooler, MeanPooler, masked_mean

        pooler = self.head.pooler
        if type(pooler) is CnnPooler:  # the convolutions see the whole window; the average its share
            vectors, counted = masked_mean(pooler.local_features(hidden, attention), pool_mask), pool_mask
        else:
            vectors = pooler(hidden, pool_mask, special_mask)
            counted = pool_mask
            if type(pooler) is MeanPooler and pooler.exclude_special_tokens:
                counted = pool_mask * (1 - special_mask)
        weights = counted.sum(dim=1).double().cpu().numpy()
        return vectors.double().cpu().numpy(), weights

    def vectors(self, device) -> np.ndarray:
        """``[count, D]`` float32: the combined vectors, through the head's projection and ``Normalize``."""
        combined = self.combined
        if not self.use_max:
            combined = combined / np.maximum(self.totals, 1e-9)[:, None]
        return finish_pooled(self.head, combined.astype(np.float32), device)


def finish_pooled(head, pooled: np.ndarray, device) -> np.ndarray:
    """The head's steps after pooling, on combined vectors: the projection head, ``Normalize``."""
    import torch

    if head.feedforward is None and not head.normalize:
        return pooled
    with torch.inference_mode():
        vectors = torch.from_numpy(pooled).to(device)
        if head.feedforward is not None:
            vectors = head.feedforward(vectors)
        if head.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
    return vectors.float().cpu().numpy()
