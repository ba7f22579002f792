"""SentEval's ten probing tasks (``senteval/probing.py``), one registered class per file of
``data/probing``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

import declutr.evaluation.classifiers as classifiers  # noqa: PLR0402 (the module, not via the package)
from declutr.core.errors import DeclutrError
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.tasks.base import (
    SPLITS,
    Embed,
    SentEvalTask,
    embed_all,
    length_sorted,
    senteval_tokens,
    split_result,
)


class ProbingTask(SentEvalTask):
    """One of SentEval's probing tasks (``senteval/probing.py``): one file in ``data/probing``, a
    line per instance ``tr|va|te<TAB>label<TAB>...<TAB>sentence``; labels numbered in sorted
    order of the train labels; each split sorted by length then label; a logistic regression with
    L2 chosen on the dev split (``SplitClassifier``)."""

    filename: ClassVar[str] = ""
    source = "SentEval's data/probing (in the SentEval repository)"
    #: the first field of a line and the split it puts the instance in
    partitions: ClassVar[dict[str, str]] = {"tr": "train", "va": "valid", "te": "test"}

    @property
    def files(self):  # type: ignore[override]
        return (self.filename,)

    def directory(self) -> Path:
        return self.probing_dir

    def missing(self, path: Path) -> str:
        return f"{self.name}: missing {path} ({self.source}: data/probing/{path.name})"

    def load(self) -> tuple[dict[str, list[str]], dict[str, np.ndarray], list[str]]:
        """Texts and label ids per split (sorted as SentEval), and the labels in id order."""
        texts: dict[str, list[str]] = {split: [] for split in SPLITS}
        labels: dict[str, list[str]] = {split: [] for split in SPLITS}
        places: dict[str, list[str]] = {split: [] for split in SPLITS}
        for where, fields in self.rows(self.filename, 3):
            split = self.partitions.get(fields[0])
            if split is None:
                raise DeclutrError(f"{where}: first field {fields[0]!r} is not one of tr, va, te")
            texts[split].append(senteval_tokens(fields[-1]))
            labels[split].append(fields[1])
            places[split].append(where)
        if not all(labels.values()):
            empty = [name for name, split in self.partitions.items() if not labels[split]]
            raise DeclutrError(f"{self.name}: {self.path(self.filename)} has no {', '.join(empty)} instances")
        names = sorted(set(labels["train"]))
        ids = {label: i for i, label in enumerate(names)}
        y = {}
        for split in SPLITS:
            for label, where in zip(labels[split], places[split]):
                if label not in ids:
                    raise DeclutrError(f"{where}: label {label!r} does not occur in the train split")
            (texts[split],), y[split] = length_sorted([texts[split]], [ids[label] for label in labels[split]])
            y[split] = np.asarray(y[split], dtype=np.int64)
        return texts, y, names

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        texts, y, names = self.load()
        x = dict(zip(SPLITS, embed_all(embed, *(texts[split] for split in SPLITS))))
        return split_result(*classifiers.split(x, y, len(names), settings, seed), y)


#: SentEval's probing tasks and their files, in the paper's order
PROBING_FILES = {
    "Length": "sentence_length.txt",
    "WordContent": "word_content.txt",
    "Depth": "tree_depth.txt",
    "TopConstituents": "top_constituents.txt",
    "BigramShift": "bigram_shift.txt",
    "Tense": "past_present.txt",
    "SubjNumber": "subj_number.txt",
    "ObjNumber": "obj_number.txt",
    "OddManOut": "odd_man_out.txt",
    "CoordinationInversion": "coordination_inversion.txt",
}
for _name, _filename in PROBING_FILES.items():
    SentEvalTask.register(_name)(
        type(
            _name, (ProbingTask,), {"filename": _filename, "__doc__": f"SentEval's {_name} probing task ({_filename})."}
        )
    )
