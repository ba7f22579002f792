"""Single-sentence classification: MR, CR, SUBJ, MPQA (k-fold), SST-2 and SST-5 (train/dev/test
splits) and TREC (k-fold on train, then test)."""

from __future__ import annotations

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


def sorted_by_length(texts: list[str], labels: list[int]) -> tuple[list[str], np.ndarray]:
    """``texts`` and their labels in SentEval's order (by word count, then label)."""
    (texts,), labels = length_sorted([texts], labels)
    return texts, np.asarray(labels, dtype=np.int64)


class BinaryTask(SentEvalTask):
    """MR, CR, SUBJ, MPQA: one sentence a line (latin-1) in a positive and a negative file;
    logistic regression with k-fold cross-validation and an inner k-fold for L2."""

    files: ClassVar[tuple[str, str]] = ("", "")  # (label 1, label 0)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        positive, negative = (
            [senteval_tokens(line) for line in self.read_lines(filename, encoding="latin-1")] for filename in self.files
        )
        texts, labels = sorted_by_length(positive + negative, [1] * len(positive) + [0] * len(negative))
        (x,) = embed_all(embed, texts)
        devacc, acc = classifiers.inner_kfold(x, labels, 2, settings, seed)
        return {"devacc": devacc, "acc": acc, "ndev": len(texts), "ntest": len(texts)}


@SentEvalTask.register("MR")
class MR(BinaryTask):
    folder, files = "MR", ("rt-polarity.pos", "rt-polarity.neg")


@SentEvalTask.register("CR")
class CR(BinaryTask):
    folder, files = "CR", ("custrev.pos", "custrev.neg")


@SentEvalTask.register("SUBJ")
class SUBJ(BinaryTask):
    folder, files = "SUBJ", ("subj.objective", "subj.subjective")


@SentEvalTask.register("MPQA")
class MPQA(BinaryTask):
    folder, files = "MPQA", ("mpqa.pos", "mpqa.neg")


class SSTTask(SentEvalTask):
    """SST: train/dev/test files; L2 chosen on dev."""

    n_classes: ClassVar[int] = 2
    files = ("sentiment-train", "sentiment-dev", "sentiment-test")

    def parse(self, line: str, where: str) -> tuple[str, int]:
        raise NotImplementedError

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        texts, labels = {}, {}
        for split, filename in zip(SPLITS, self.files):
            parsed = [self.parse(line, where) for where, line in self.lines(filename)]
            texts[split], labels[split] = sorted_by_length([t for t, _ in parsed], [y for _, y in parsed])
        x = dict(zip(SPLITS, embed_all(embed, *(texts[split] for split in SPLITS))))
        return split_result(*classifiers.split(x, labels, self.n_classes, settings, seed), labels)

    def _label(self, value: str, where: str) -> int:
        try:
            label = int(value)
        except ValueError:
            raise DeclutrError(f"{where}: label {value!r} is not an integer") from None
        if not 0 <= label < self.n_classes:
            raise DeclutrError(f"{where}: label {label} outside 0..{self.n_classes - 1}")
        return label


@SentEvalTask.register("SST2")
class SST2(SSTTask):
    """SST-2: ``sentence<TAB>label`` lines."""

    folder, n_classes = "SST/binary", 2

    def parse(self, line, where):
        text, _, label = line.strip().rpartition("\t")
        return senteval_tokens(text), self._label(label, where)


@SentEvalTask.register("SST5")
class SST5(SSTTask):
    """SST-5: ``label sentence`` lines (label 0-4)."""

    folder, n_classes = "SST/fine", 5

    def parse(self, line, where):
        label, _, text = line.strip().partition(" ")
        return senteval_tokens(text), self._label(label, where)


@SentEvalTask.register("TREC")
class TREC(SentEvalTask):
    """TREC question types (``COARSE:fine question``, latin-1); L2 by k-fold on train."""

    folder, files = "TREC", ("train_5500.label", "TREC_10.label")
    classes: ClassVar[dict[str, int]] = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}

    def load(self, filename: str) -> tuple[list[str], np.ndarray]:
        texts, labels = [], []
        for where, line in self.lines(filename, encoding="latin-1"):
            target, _, rest = line.strip().partition(":")
            if target not in self.classes or " " not in rest:
                raise DeclutrError(f"{where}: expected 'COARSE:fine question'")
            texts.append(senteval_tokens(rest.split(" ", 1)[1]))
            labels.append(self.classes[target])
        return sorted_by_length(texts, labels)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        (train_texts, train_y), (test_texts, test_y) = self.load(self.files[0]), self.load(self.files[1])
        train_x, test_x = embed_all(embed, train_texts, test_texts)
        devacc, acc, _ = classifiers.kfold(train_x, train_y, test_x, test_y, len(self.classes), settings, seed)
        return {"devacc": devacc, "acc": acc, "ndev": len(train_texts), "ntest": len(test_texts)}
