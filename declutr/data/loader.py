"""Batches from a reader and a data path: sharded, reshuffled per epoch, resumable.

The plan of an epoch is a pure function of ``(seed, epoch)``: the usable records are permuted
(with ``shuffle``), then dealt out step by step — global step ``s`` takes the next
``batch_size * world_size`` records and rank ``r`` the ``r``-th run of ``batch_size`` of them —
so ranks see disjoint records and the same number of batches. Without ``drop_last`` the last,
shorter step is split evenly over the ranks (padded by wrapping around, as torch's
``DistributedSampler`` does, when it does not divide). Workers take every ``num_workers``-th
batch of their rank, and torch hands their batches back in order.

The spans and masks of a record are drawn from ``numpy.random.default_rng((seed, epoch,
record))``: the same whichever worker builds the batch, and the same after a resume.
``state_dict()`` records the epoch and the number of batches handed out; after
``load_state_dict`` the next iteration continues with the next unseen batch.

With ``num_workers``, torch's loader draws its workers' base seed when an iteration starts; it
draws it from its own generator, seeded from ``(seed, epoch)``, never from the global one, so a
run resumed mid-epoch leaves the trainer's random stream (dropout) exactly where the
uninterrupted run had it.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated

import numpy as np
import torch

from declutr.core.construct import AtLeast
from declutr.core.registrable import Registrable
from declutr.data.readers import DatasetReader

logger = logging.getLogger(__name__)


class DataLoader(Registrable):
    """Iterates over batches of one rank for one epoch; ``len()`` is that number of batches."""

    default_implementation = "sharded"
    kind_name = "data_loader"
    runtime_args = ("reader", "data_path", "seed", "rank", "world_size")


@DataLoader.register("sharded")
@DataLoader.register("default")  # the name it had first
class DocumentDataLoader(DataLoader):
    """Batches of ``batch_size`` records (documents, sentences or triplets) for this rank.

    # Parameters
    batch_size: records per batch and rank (DeCLUTR: documents, each giving
        ``num_anchors`` anchors and ``num_anchors * num_positives`` positives) [4].
    shuffle: reshuffle the records every epoch (deterministically from the seed and epoch).
    drop_last: drop the last, incomplete step (needed for equal batch shapes across ranks).
    num_workers: torch DataLoader worker processes (0: build batches in this process).
    prefetch_factor: batches each worker prepares ahead.
    progress: show a progress bar while a corpus is indexed for the first time (rank 0).
    reader, data_path, seed, rank, world_size: given at run time by the trainer.
    """

    def __init__(
        self,
        reader: DatasetReader,
        data_path: str,
        seed: int = 13,
        rank: int = 0,
        world_size: int = 1,
        batch_size: Annotated[int, AtLeast(1)] = 4,
        shuffle: bool = True,
        drop_last: bool = False,
        num_workers: Annotated[int, AtLeast(0)] = 0,
        prefetch_factor: Annotated[int, AtLeast(1)] = 2,
        progress: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers cannot be negative, got {num_workers}")
        if prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {prefetch_factor}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.reader, self.data_path = reader, str(data_path)
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.index = reader.index(self.data_path, progress=progress and rank == 0)
        self.selection = reader.select(self.index)
        self.pin_memory = False  # page-locked batches: set by a trainer that trains on CUDA
        self.epoch = 0
        self._position = 0  # batches handed out in this epoch
        self._resume_at = 0
        skipped = {k: v for k, v in self.selection.skipped.items() if v}
        if skipped and rank == 0:
            logger.warning(
                "%s: %d of %d records used; skipped %s",
                self.data_path,
                len(self.selection.records),
                len(self.index),
                skipped_summary(self.selection.skipped, len(self.index)),
            )

    # -- the plan ---------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int, int]:
        """(full steps, records per rank in the last partial step (0: none), batches per rank)."""
        usable = len(self.selection.records)
        per_step = self.batch_size * self.world_size
        full, remainder = divmod(usable, per_step)
        last = 0 if (self.drop_last or remainder == 0) else math.ceil(remainder / self.world_size)
        return full, last, full + (1 if last else 0)

    def __len__(self) -> int:
        return self._layout()[2]

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The records of each of this rank's batches in ``epoch``, in order."""
        records = self.selection.records
        if self.shuffle:
            records = np.random.default_rng((self.seed, epoch, 0x5EED)).permutation(records)
        full, last, _ = self._layout()
        per_step, b = self.batch_size * self.world_size, self.batch_size
        batches = [records[s * per_step + self.rank * b : s * per_step + (self.rank + 1) * b] for s in range(full)]
        if last:
            rest = records[full * per_step :]
            rest = np.resize(rest, last * self.world_size)  # wraps around when the ranks do not divide it
            batches.append(rest[self.rank * last : (self.rank + 1) * last])
        return batches

    def make_batch(self, records: np.ndarray, epoch: int) -> dict:
        """One batch; each record's spans and masks from its own ``(seed, epoch, record)`` generator."""
        examples = [
            self.reader.example(self.index, int(r), np.random.default_rng((self.seed, epoch, int(r)))) for r in records
        ]
        return self.reader.collate(examples)

    # -- iteration --------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (its own shuffle) from its first batch."""
        self.epoch = int(epoch)
        self._position = self._resume_at = 0

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        self._position = start
        batches = self.plan(self.epoch)
        if self.num_workers == 0:
            stream = (self.make_batch(batches[i], self.epoch) for i in range(start, len(batches)))
        else:
            seed = int(np.random.SeedSequence((self.seed, self.epoch)).generate_state(1)[0])
            stream = torch.utils.data.DataLoader(
                _Batches(self, batches, start, self.epoch),
                batch_size=None,
                num_workers=self.num_workers,
                prefetch_factor=self.prefetch_factor,
                persistent_workers=False,
                pin_memory=self.pin_memory,  # the trainer's host-to-device copies overlap compute
                generator=torch.Generator().manual_seed(seed),  # not the global one: see the module's notes
            )
        for batch in stream:
            self._position += 1
            yield batch
        if self._position >= len(batches) and self.rank == 0:
            self._report()

    def _report(self) -> None:
        skipped = {k: v for k, v in self.stats().items() if k.startswith("documents_skipped") and v}
        if skipped:
            logger.info(
                "epoch %d of %s done: %d batches; skipped %s",
                self.epoch,
                self.data_path,
                self._position,
                ", ".join(f"{k.removeprefix('documents_skipped_')} {v}" for k, v in skipped.items()),
            )

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self._position, "seed": self.seed, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        """Continue at the next unseen batch of the saved epoch on the next iteration."""
        if int(state.get("batches", len(self))) != len(self):
            logger.warning(
                "the data now gives %d batches per epoch, the checkpoint was made with %d", len(self), state["batches"]
            )
        self.epoch = int(state["epoch"])
        self._position = self._resume_at = min(int(state["position"]), len(self))

    def stats(self) -> dict[str, int]:
        """Counters of the current epoch: records in the corpus, used, skipped by reason, batches."""
        full, last, batches = self._layout()
        used = len(self.selection.records)
        covered = full * self.batch_size * self.world_size + min(
            used - full * self.batch_size * self.world_size, last * self.world_size
        )
        return {
            "documents": len(self.index),
            "documents_used": used,
            **self.selection.skipped,
            "documents_dropped_last": used - covered,
            "batches": batches,
            "batches_done": self._position,
        }


def skipped_summary(counts: dict[str, int], total: int) -> str:
    """``"12 of 230 (5.2%): short 11, empty 1"`` from ``documents_skipped_<reason>`` counters."""
    skipped = {
        k.removeprefix("documents_skipped_"): v for k, v in counts.items() if k.startswith("documents_skipped_") and v
    }
    count = sum(skipped.values())
    share = 100.0 * count / total if total else 0.0
    return f"{count} of {total} ({share:.1f}%): " + ", ".join(f"{reason} {n}" for reason, n in skipped.items())


class _Batches(torch.utils.data.IterableDataset):
    """The batches ``start, start + k, ...`` of a plan for worker ``k`` (torch interleaves them back in order)."""

    def __init__(self, loader: DocumentDataLoader, batches: list[np.ndarray], start: int, epoch: int):
        self.loader, self.batches, self.start, self.epoch = loader, batches, start, epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(self.start + worker, len(self.batches), workers):
            yield self.loader.make_batch(self.batches[i], self.epoch)
