"""Length-sorted sub-batches with bounded padding: compute on real tokens, results unchanged.

A text group padded to its longest member wastes compute on padding (DeCLUTR's spans of 32-512
tokens make about 38% of a padded batch padding, and attention grows with the square of the
padded length). ``SubBatches`` sorts the rows of a group by length, cuts the sorted rows into
runs whose padding stays under a bound, and trims each run to its own longest row. Each run goes
through the encoder on its own; ``rows``/``padded`` put the results back in the original order.
Padding never changes what a transformer computes for the real tokens (the attention mask hides
it), so losses and gradients equal those of the padded batch up to floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def extents(attention_mask: torch.Tensor) -> list[int]:
    """Per row, one past the last real position (the length for right padding; any side works)."""
    positions = torch.arange(1, attention_mask.size(1) + 1, device=attention_mask.device)
    return (attention_mask.bool() * positions).amax(dim=1).tolist()


def plan_sub_batches(lengths: Sequence[int], max_padding_fraction: float) -> list[list[int]]:
    """Row indices of each sub-batch: rows sorted longest first (stable), cut greedily so that no
    sub-batch is more than ``max_padding_fraction`` padding once trimmed to its longest row.

    Adding a shorter row never lowers a run's padding fraction, so the greedy cut is where the
    bound would first be broken. ``0`` gives one sub-batch per distinct length; ``1`` one sub-batch.
    """
    if not 0 <= max_padding_fraction <= 1:
        raise ValueError(f"max_padding_fraction must be between 0 and 1, got {max_padding_fraction}")
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    plan: list[list[int]] = []
    real = 0
    for row in order:
        if plan:
            run, width = plan[-1], max(lengths[plan[-1][0]], 1)
            if 1 - (real + lengths[row]) / ((len(run) + 1) * width) <= max_padding_fraction + 1e-9:
                run.append(row)
                real += lengths[row]
                continue
        plan.append([row])
        real = lengths[row]
    return plan


class SubBatches:
    """The sub-batches of one text group (``attention_mask [N, L]``), and how to undo them.

    ``split`` cuts ``[N, L, ...]`` tensors into the trimmed sub-batches; ``rows`` and ``padded``
    put per-sub-batch results (``[n_i, ...]`` or ``[n_i, L_i, ...]``) back into one tensor in the
    original row order. Both are differentiable, so gradients equal those of the padded batch.
    ``max_padding_fraction`` ``None`` is the padded group itself: one sub-batch, nothing trimmed
    (and no look at the mask, so no device synchronisation). ``max_rows`` cuts every sub-batch
    into pieces of at most that many rows (the cached contrastive step's chunks); without
    ``max_padding_fraction`` the pieces are consecutive rows, untrimmed. ``lengths``, the rows'
    real lengths known on the host (the loader's ``lengths``), plan the sub-batches without
    reading the mask back from the device; without them the mask is read (one synchronisation
    on CUDA).
    """

    def __init__(
        self,
        attention_mask: torch.Tensor,
        max_padding_fraction: float | None,
        max_rows: int | None = None,
        lengths: Sequence[int] | None = None,
    ):
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.length = attention_mask.size(1)
        self.index: list[torch.Tensor] = []
        self.widths = [self.length]
        self.inverse: torch.Tensor | None = None
        rows = attention_mask.size(0)
        if max_padding_fraction is None:
            if max_rows is None or rows <= max_rows:
                return
            plan = [list(range(start, min(start + max_rows, rows))) for start in range(0, rows, max_rows)]
            self.widths = [self.length] * len(plan)
        else:
            if lengths is None:
                lengths = extents(attention_mask)
            elif len(lengths) != rows:
                raise ValueError(f"{len(lengths)} row lengths for a group of {rows} rows")
            plan = plan_sub_batches(lengths, max_padding_fraction)
            if max_rows is not None:
                plan = [run[start : start + max_rows] for run in plan for start in range(0, len(run), max_rows)]
            self.widths = [max(1, lengths[rows[0]]) for rows in plan]
        if len(plan) > 1:
            device = attention_mask.device
            self.index = [torch.tensor(rows, dtype=torch.long, device=device) for rows in plan]
            if max_padding_fraction is not None:  # consecutive pieces need no reordering
                order = torch.cat(self.index)
                self.inverse = torch.empty_like(order)
                self.inverse[order] = torch.arange(order.numel(), device=device)

    def __len__(self) -> int:
        return len(self.widths)

    def row_index(self, piece: int) -> torch.Tensor | None:
        """The original rows of sub-batch ``piece`` (``None``: one sub-batch holding every row)."""
        return self.index[piece] if self.index else None

    def padded_tokens(self, rows: int) -> int:
        """Positions the sub-batches of a ``rows``-row group hold, real and padding (``N * L`` unsplit)."""
        if not self.index:
            return rows * self.widths[0]
        return sum(len(index) * width for index, width in zip(self.index, self.widths))

    def split(self, tensor: torch.Tensor | None) -> list[torch.Tensor | None]:
        """``tensor[rows_i, :L_i]`` per sub-batch (``None`` stays ``None``)."""
        if tensor is None:
            return [None] * len(self)
        if not self.index:
            return [tensor if self.widths[0] == self.length else tensor[:, : self.widths[0]]]
        return [tensor.index_select(0, index)[:, :width] for index, width in zip(self.index, self.widths)]

    def rows(self, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
        """One result row per input row (``[n_i, ...]`` each), back in the original order."""
        if self.inverse is None:
            return pieces[0] if len(pieces) == 1 else torch.cat(list(pieces))
        return torch.cat(list(pieces)).index_select(0, self.inverse)

    def padded(self, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-token results (``[n_i, L_i, ...]`` each) padded with zeros to ``[N, L, ...]``, in order."""
        full = []
        for piece in pieces:
            missing = self.length - piece.size(1)
            if missing:
                piece = torch.cat([piece, piece.new_zeros(piece.size(0), missing, *piece.shape[2:])], dim=1)
            full.append(piece)
        return self.rows(full)


def in_sub_batches(
    function: Callable[..., torch.Tensor],
    attention_mask: torch.Tensor,
    max_padding_fraction: float | None,
    *tensors: torch.Tensor | None,
    per_token: bool = False,
    max_rows: int | None = None,
    lengths: Sequence[int] | None = None,
) -> torch.Tensor:
    """``function(*tensors)`` computed per sub-batch of ``attention_mask``'s group and reassembled.

    ``tensors`` are ``[N, L, ...]`` (or ``None``), the attention mask among them where
    ``function`` needs it; the results are rows ``[N, ...]``, or ``[N, L, ...]`` with
    ``per_token``; ``max_rows`` and ``lengths`` (the rows' real lengths on the host, if known):
    see ``SubBatches``.
    """
    plan = SubBatches(attention_mask, max_padding_fraction, max_rows, lengths)
    pieces = [function(*chunk) for chunk in zip(*(plan.split(tensor) for tensor in tensors))]
    return plan.padded(pieces) if per_token else plan.rows(pieces)
