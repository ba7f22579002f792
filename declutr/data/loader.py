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

A mixture of data paths (a list of :class:`~declutr.data.mixture.MixtureComponent`) deals out
draw slots instead of records: an epoch of ``T`` slots (the usable records of its components in
all), the first ``n_0`` of them component 0's draws, the next ``n_1`` component 1's, and so on
(``declutr.data.mixture``: largest-remainder counts, each component's records drawn from
permutations seeded by ``(seed, epoch, component)``). The slots are permuted by ``(seed, epoch)``
as a single source's records are (or, without ``shuffle``, interleaved evenly) and dealt out by
the same plan; draw ``j`` of component ``c`` gets its spans and masks from
``default_rng((seed, epoch, c, j))``, so a record drawn twice in an epoch gets different spans.

With ``num_workers``, torch's loader draws its workers' base seed when an iteration starts; it
draws it from its own generator, seeded from ``(seed, epoch)``, never from the global one, so a
run resumed mid-epoch leaves the trainer's random stream (dropout) exactly where the
uninterrupted run had it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from declutr.core.construct import AtLeast
from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.core.registrable import Registrable
from declutr.data.index import CorpusIndex
from declutr.data.mixture import MixtureComponent, allocate, component_names, draw, interleave, mixture_problems
from declutr.data.readers import DatasetReader, Selection

logger = logging.getLogger(__name__)
_SHUFFLE = 0x5EED  # in the seed of an epoch's permutation


@dataclass
class Corpus:
    """One data path a loader reads (one of a mixture's): its index, the records the reader uses,
    its share of an epoch."""

    name: str
    path: str
    number: int  # its place in the mixture (in the seed of its draws and examples); 0 for a single path
    weight: float
    index: CorpusIndex
    selection: Selection
    count: int  # records it gives each epoch

    @property
    def usable(self) -> int:
        return len(self.selection.records)


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
    index_workers: processes that build a corpus index the first time (null: by the corpus
        size, at most one per CPU core); the index, hence every batch, is the same whatever their
        number.
    reader, data_path, seed, rank, world_size: given at run time by the trainer; ``data_path``
        is one path or a mixture (a list of ``MixtureComponent`` s or their config dicts).
    """

    def __init__(
        self,
        reader: DatasetReader,
        data_path: str | os.PathLike | Sequence[MixtureComponent | Mapping],
        seed: int = 13,
        rank: int = 0,
        world_size: int = 1,
        batch_size: Annotated[int, AtLeast(1)] = 4,
        shuffle: bool = True,
        drop_last: bool = False,
        num_workers: Annotated[int, AtLeast(0)] = 0,
        prefetch_factor: Annotated[int, AtLeast(1)] = 2,
        progress: bool = True,
        index_workers: Annotated[int, AtLeast(1)] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers cannot be negative, got {num_workers}")
        if prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {prefetch_factor}")
        if index_workers is not None and index_workers < 1:
            raise ValueError(f"index_workers must be at least 1 or null, got {index_workers}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.reader = reader
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.pin_memory = False  # page-locked batches: set by a trainer that trains on CUDA
        self.epoch = 0
        self._position = 0  # batches handed out in this epoch
        self._resume_at = 0
        progress = progress and rank == 0
        self.mixture = not isinstance(data_path, (str, os.PathLike))
        if self.mixture:
            self.data_path = as_components(data_path)
            self.corpora, self.left_out = self._mixture_corpora(self.data_path, progress, index_workers)
            self.description = f"the mixture of {len(self.corpora)} sources"
        else:
            self.data_path = self.description = str(data_path)
            index = reader.index(self.data_path, progress=progress, workers=index_workers)
            selection = reader.select(index)
            self.corpora = [Corpus(self.data_path, self.data_path, 0, 1.0, index, selection, len(selection.records))]
            self.left_out = []
        self._size = sum(corpus.count for corpus in self.corpora)  # records (a mixture's draws) per epoch
        self._offsets = np.cumsum([0] + [corpus.count for corpus in self.corpora])  # a mixture's first slots
        self._cache: dict[str, tuple[int, object]] = {}  # per-epoch arrays of a mixture, by name
        if rank == 0:
            for corpus in self.corpora:
                if any(corpus.selection.skipped.values()):
                    logger.warning(
                        "%s: %d of %d records used; skipped %s",
                        corpus.path,
                        corpus.usable,
                        len(corpus.index),
                        skipped_summary(corpus.selection.skipped, len(corpus.index)),
                    )
            if self.mixture:
                logger.info("%s", self.mixture_summary())

    def _mixture_corpora(
        self, components: list[MixtureComponent], progress: bool, workers: int | None
    ) -> tuple[list[Corpus], list[str]]:
        """The corpora of the components with a positive weight (indexed, selected, their draws
        per epoch counted) and the names of those left out (weight 0)."""
        names = component_names(components)
        corpora, left_out = [], []
        for number, (component, name) in enumerate(zip(components, names)):
            if component.weight == 0:
                left_out.append(name)
                continue
            where = f'mixture component "{name}" ({component.path})'
            own = component.document_source
            if own is not None and own.num_fields != self.reader.source.num_fields:
                raise DeclutrError(
                    f"{where}: its document_source gives {own.num_fields} text(s) per record, "
                    f"the reader needs {self.reader.source.num_fields}"
                )
            index = self.reader.index(component.path, progress=progress, workers=workers, source=own)
            selection = self.reader.select(index)
            if not len(selection.records):
                skipped = skipped_summary(selection.skipped, len(index)) if len(index) else "the corpus has no records"
                raise DeclutrError(f"{where}: no usable records ({skipped}); remove it or set its weight to 0")
            corpora.append(Corpus(name, component.path, number, component.weight, index, selection, 0))
        counts = allocate([c.weight for c in corpora], sum(c.usable for c in corpora))
        for corpus, count in zip(corpora, counts):
            corpus.count = count
        return corpora, left_out

    @property
    def index(self) -> CorpusIndex:
        """The corpus index of a single data path (a mixture has one per corpus: ``corpora``)."""
        if self.mixture:
            raise AttributeError("a mixture has one index per corpus: loader.corpora[i].index")
        return self.corpora[0].index

    @property
    def selection(self) -> Selection:
        """The records used of a single data path (a mixture has one per corpus)."""
        if self.mixture:
            raise AttributeError("a mixture has one selection per corpus: loader.corpora[i].selection")
        return self.corpora[0].selection

    def mixture_summary(self) -> str:
        """``mixture of 2 sources, 12,345 records per epoch: domain 70.0% (8,641 drawn from 2,000
        usable, 4.32 passes), ...``: the epoch's draws of each source."""
        parts = [
            f"{s.name} {100.0 * s.count / self._size:.1f}% ({s.count:,} drawn from {s.usable:,} usable, "
            f"{s.count / s.usable:.2f} passes)"
            for s in self.corpora
        ]
        parts += [f"{name} left out (weight 0)" for name in self.left_out]
        return f"mixture of {len(self.corpora)} sources, {self._size:,} records per epoch: " + ", ".join(parts)

    # -- the plan ---------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int, int]:
        """(full steps, records per rank in the last partial step (0: none), batches per rank)."""
        per_step = self.batch_size * self.world_size
        full, remainder = divmod(self._size, per_step)
        last = 0 if (self.drop_last or remainder == 0) else math.ceil(remainder / self.world_size)
        return full, last, full + (1 if last else 0)

    def __len__(self) -> int:
        return self._layout()[2]

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's records (a mixture's draw slots) in the order they are dealt out."""
        if not self.mixture:
            records = self.selection.records
            if self.shuffle:
                records = np.random.default_rng((self.seed, epoch, _SHUFFLE)).permutation(records)
            return records
        if self.shuffle:
            return np.random.default_rng((self.seed, epoch, _SHUFFLE)).permutation(self._size)
        return self._cached("interleaved", 0, lambda: interleave([s.count for s in self.corpora]))

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The records (a mixture's draw slots) of each of this rank's batches in ``epoch``, in order."""
        records = self.order(epoch)
        full, last, _ = self._layout()
        per_step, b = self.batch_size * self.world_size, self.batch_size
        batches = [records[s * per_step + self.rank * b : s * per_step + (self.rank + 1) * b] for s in range(full)]
        if last:
            rest = records[full * per_step :]
            rest = np.resize(rest, last * self.world_size)  # wraps around when the ranks do not divide it
            batches.append(rest[self.rank * last : (self.rank + 1) * last])
        return batches

    def draws(self, epoch: int) -> list[np.ndarray]:
        """A mixture's records of each corpus in ``epoch``, by draw (slot ``offsets[c] + j`` is ``draws[c][j]``)."""
        return self._cached(
            "draws",
            epoch,
            lambda: [draw(s.selection.records, s.count, self.seed, epoch, s.number) for s in self.corpora],
        )

    def _cached(self, name: str, epoch: int, compute):
        """``compute()``, kept until another epoch asks for ``name``."""
        if name not in self._cache or self._cache[name][0] != epoch:
            self._cache[name] = (epoch, compute())
        return self._cache[name][1]

    def make_batch(self, records: np.ndarray, epoch: int) -> dict:
        """One batch; each record's spans and masks from its own ``(seed, epoch, record)`` generator
        (a mixture's draw ``j`` of component ``c``: ``(seed, epoch, c, j)``)."""
        if not self.mixture:
            examples = [
                self.reader.example(self.index, int(r), np.random.default_rng((self.seed, epoch, int(r))))
                for r in records
            ]
            return self.reader.collate(examples)
        draws, examples = self.draws(epoch), []
        for slot, part in zip(records, self.corpus_of(records)):
            corpus, j = self.corpora[part], int(slot - self._offsets[part])
            rng = np.random.default_rng((self.seed, epoch, corpus.number, j))
            examples.append(self.reader.example(corpus.index, int(draws[part][j]), rng))
        return self.reader.collate(examples)

    def corpus_of(self, slots: np.ndarray) -> np.ndarray:
        """Which corpus (its place in ``corpora``) each of a mixture's draw slots belongs to."""
        return np.searchsorted(self._offsets, slots, side="right") - 1

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
            if self._position == len(batches) and self.rank == 0:
                self._report()  # now: a trainer that stops after this batch does not come back for more
            yield batch

    def _report(self) -> None:
        """The end of an epoch: a mixture's realised proportions and the records skipped, if any."""
        notes = (
            [", ".join(f"{name} {100.0 * share:.1f}%" for name, share in self.shares().items())] if self.mixture else []
        )
        skipped = {k: v for k, v in self.stats().items() if k.startswith("documents_skipped") and v}
        if skipped:
            notes.append(
                "skipped " + ", ".join(f"{k.removeprefix('documents_skipped_')} {v}" for k, v in skipped.items())
            )
        if notes:
            logger.info(
                "epoch %d of %s done: %d batches; %s", self.epoch, self.description, self._position, "; ".join(notes)
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

    def shares(self) -> dict[str, float]:
        """A mixture's realised proportions: the fraction of the records handed out so far this
        epoch, over all ranks, that came from each corpus (from the plan: the same on every rank;
        0 before the first batch)."""
        full, _, _ = self._layout()
        per_step = self.batch_size * self.world_size
        steps = math.ceil(self._size / per_step)
        done = steps if self._position > full else self._position  # global steps handed out

        def cumulative_counts() -> np.ndarray:  # row k: each corpus's records in the first k steps
            parts = self.corpus_of(self.order(self.epoch))
            step = np.arange(self._size) // per_step
            counts = np.zeros((steps + 1, len(self.corpora)), dtype=np.int64)
            for part in range(len(self.corpora)):
                counts[1:, part] = np.cumsum(np.bincount(step[parts == part], minlength=steps))
            return counts

        counts = self._cached("handed", self.epoch, cumulative_counts)[done]
        total = int(counts.sum())
        return {corpus.name: int(n) / total if total else 0.0 for corpus, n in zip(self.corpora, counts)}

    def stats(self) -> dict[str, float]:
        """Counters of the current epoch: records in the corpus, used, skipped by reason (summed
        over a mixture's corpora), batches; a mixture's realised proportions ``mixture_<name>``."""
        full, last, batches = self._layout()
        used = self._size
        covered = full * self.batch_size * self.world_size + min(
            used - full * self.batch_size * self.world_size, last * self.world_size
        )
        skipped: dict[str, int] = {}
        for corpus in self.corpora:
            for key, value in corpus.selection.skipped.items():
                skipped[key] = skipped.get(key, 0) + value
        stats = {
            "documents": sum(len(corpus.index) for corpus in self.corpora),
            "documents_used": sum(corpus.usable for corpus in self.corpora),
            **skipped,
            "documents_dropped_last": used - covered,
            "batches": batches,
            "batches_done": self._position,
        }
        if self.mixture:
            stats.update({f"mixture_{name}": share for name, share in self.shares().items()})
        return stats


def as_components(data_path: Sequence[MixtureComponent | Mapping]) -> list[MixtureComponent]:
    """A mixture's components (config dicts built, with their key paths), checked together."""
    from declutr.core.construct import build

    components = [
        c if isinstance(c, MixtureComponent) else build(MixtureComponent, dict(c), path=f"data_path[{i}]")
        for i, c in enumerate(data_path)
    ]
    problems = mixture_problems(components, "data_path")
    if problems:
        raise ConfigurationError(problems)
    return components


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
