"""Weighted mixtures of corpora: one epoch drawn from several data paths in fixed proportions.

``train_data_path`` (or ``validation_data_path``) may list components instead of naming one path:

    train_data_path: [
      {path: "data/domain.jsonl", weight: 0.7, name: "domain"},
      {path: "data/general", weight: 0.3, document_source: {type: "jsonl", fields: "content"}},
    ]

An epoch has as many records as the components with a positive weight have usable records in
all (``T``). Component ``i`` gets ``n_i`` of them, the largest-remainder rounding of
``w_i / sum(w) * T`` (exact integers summing to ``T``; the weights are taken as the decimals
written, ties go to the earlier component), drawn without replacement from permutations of its
usable records seeded by ``(seed, epoch, i)``: a fresh permutation follows when ``n_i`` exceeds
the usable records (upsampling), the last one is cut short when it does not (subsampling). The
loader (``declutr.data.loader``) then shuffles the draws together, or interleaves them evenly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import PurePath
from typing import Annotated, Any

import numpy as np

from declutr.core.construct import AtLeast
from declutr.data.sources import DocumentSource

_NAME = re.compile(r"[\w.-]+")
#: suffixes left out of a derived name (compression, then format)
_DATA_SUFFIXES = (".gz", ".zst", ".txt", ".text", ".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow")
#: a tag in the seed of a component's draws, so that they never share a stream with the examples'
_DRAW = 0xD2A3


class MixtureComponent:
    """One corpus of a mixture of data paths.

    # Parameters
    path: a file, a folder of data files or a glob, as ``train_data_path`` takes one.
    weight: its share of each epoch, relative to the other components' weights [1.0]; 0 leaves
        it out (it is then not indexed).
    name: how the logs and the ``mixture_<name>`` metric call it (letters, digits, ``_ . -``);
        default: the file or folder name without its data suffixes, made unique.
    document_source: how its files are read, in place of the reader's ``document_source``
        (the same number of texts per record).
    """

    def __init__(
        self,
        path: str,
        weight: Annotated[float, AtLeast(0)] = 1.0,
        name: str | None = None,
        document_source: DocumentSource | None = None,
    ):
        problem = _weight_problem(weight)  # a name is checked with the others' (``mixture_problems``)
        if problem:
            raise ValueError(problem)
        self.path = str(path)
        self.weight = float(weight)
        self.name = name
        self.document_source = document_source

    def __repr__(self) -> str:
        return f"MixtureComponent({self.path!r}, weight={self.weight}, name={self.name!r})"


def _weight_problem(weight: Any) -> str | None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        return f"weight must be a finite number of at least 0, got {weight!r}"
    return None


def _name_problem(name: Any) -> str | None:
    if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
        return f"name must be letters, digits, _ . or - (it names the metric mixture_<name>), got {name!r}"
    return None


def _field(component: MixtureComponent | Mapping, key: str, default: Any = None) -> Any:
    """A component's setting, from the built object or from its config dict."""
    if isinstance(component, Mapping):
        return component.get(key, default)
    return getattr(component, key, default)


def derived_name(path: str) -> str:
    """``data/owt-*.txt.gz`` -> ``owt``: the last part of a path, without data suffixes or glob marks."""
    name = PurePath(str(path)).name
    while name.lower().endswith(_DATA_SUFFIXES):
        name = name[: name.rfind(".")]
    return re.sub(r"[^\w.-]+", "_", name).strip("_.-") or "source"


def component_names(components: Sequence[MixtureComponent | Mapping]) -> list[str]:
    """The components' names: as given, else derived from the path and made unique (``_2``, ``_3``)."""
    given = [_field(c, "name") for c in components]
    taken = {name for name in given if name is not None}
    names = []
    for component, name in zip(components, given):
        if name is None:
            base = derived_name(_field(component, "path", ""))
            name, number = base, 1
            while name in taken:
                number += 1
                name = f"{base}_{number}"
            taken.add(name)
        names.append(name)
    return names


def mixture_problems(components: Sequence[MixtureComponent | Mapping], key: str) -> list[str]:
    """What makes a list of components (built, or their schema-valid config dicts) no mixture,
    one line each with its key path: an empty list, weights summing to 0, a bad or repeated name."""
    if not components:
        return [f'{key}: an empty mixture; list at least one component ({{"path": ..., "weight": ...}})']
    problems, first = [], {}
    for number, component in enumerate(components):
        name = _field(component, "name")
        problem = _name_problem(name)
        if problem:
            problems.append(f"{key}[{number}]: {problem}")
        elif name is not None and name in first:
            problems.append(
                f'{key}[{number}].name: "{name}" is also the name of {key}[{first[name]}]; names must be unique'
            )
        elif name is not None:
            first[name] = number
    if sum(_field(c, "weight", 1.0) for c in components) <= 0:
        problems.append(f"{key}: the weights of the mixture sum to 0; give at least one component a positive weight")
    return problems


def allocate(weights: Sequence[float], total: int) -> list[int]:
    """``total`` split in proportion to ``weights`` by largest remainders: integers summing to
    ``total``; the weights count as the decimals they print as (0.7 is 7/10), ties go to the
    earlier weight."""
    exact = [Fraction(repr(float(w))) for w in weights]
    whole = sum(exact)
    if whole <= 0:
        raise ValueError("the weights sum to 0")
    quotas = [w / whole * total for w in exact]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def draw(records: np.ndarray, count: int, seed: int, epoch: int, component: int) -> np.ndarray:
    """``count`` of ``records``: permutations from one generator seeded by ``(seed, epoch,
    component)`` (and a tag of its own), one after the other (a record comes back only after every
    record was drawn), the last one cut short."""
    rng = np.random.default_rng((seed, epoch, _DRAW, component))
    passes = -(-count // len(records)) if count else 0
    drawn = [rng.permutation(records) for _ in range(passes)]
    return np.concatenate(drawn)[:count] if drawn else np.zeros(0, dtype=np.int64)


def interleave(counts: Sequence[int]) -> np.ndarray:
    """The draws of the components spread evenly (no shuffle): draw ``j`` of component ``i``
    (slot ``offsets[i] + j``) stands at ``(j + 0.5) / n_i`` of the epoch; ties in component order."""
    component = np.repeat(np.arange(len(counts)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    within = np.arange(int(offsets[-1])) - offsets[component]
    place = (2 * within + 1) / (2 * np.asarray(counts, dtype=np.float64)[component])
    return np.lexsort((component, place))
