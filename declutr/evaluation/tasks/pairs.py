"""Sentence-pair classification: MRPC and SICK entailment (pair features ``[|u-v|, u*v]`` or
``[u, v, |u-v|, u*v]``) and SNLI (``[u, v, u*v, |u-v|]``, SentEval's ``snli.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

import declutr.evaluation.classifiers as classifiers  # noqa: PLR0402 (the module, not via the package)
from declutr.core.errors import DeclutrError
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.tasks.base import (
    PAIR_FEATURES,
    SPLITS,
    Embed,
    SentEvalTask,
    embed_all,
    length_sorted,
    pair_features,
    senteval_tokens,
    split_result,
)


def label_parser(classes: dict[str, int]) -> Callable[[str, str], int]:
    """``label(value, where)``: the class id of a label field (``where`` names its ``file:line``)."""

    def label(value: str, where: str) -> int:
        if value not in classes:
            raise DeclutrError(f"{where}: unknown label {value!r}; expected one of: {', '.join(classes)}")
        return classes[value]

    return label


class PairClassificationTask(SentEvalTask):
    """Sentence pairs with a class label; ``columns`` of (sentence 1, sentence 2, label)."""

    columns: ClassVar[tuple[int, int, int]] = (0, 1, 2)
    min_fields: ClassVar[int] = 3
    encoding: ClassVar[str] = "utf-8"
    classes: ClassVar[dict[str, int]] = {}

    def sorted_pairs(self, filename: str):
        first, second, labels = self.read_pairs(
            filename, self.columns, self.min_fields, label_parser(self.classes), encoding=self.encoding, header=True
        )
        (first, second), labels = length_sorted([first, second], labels)
        return first, second, np.asarray(labels)


@SentEvalTask.register("MRPC")
class MRPC(PairClassificationTask):
    """MRPC (header, then Quality, #1 ID, #2 ID, #1 String, #2 String; UTF-8 with BOM, CRLF);
    L2 by k-fold on train; accuracy and F1 on test."""

    folder, files = "MRPC", ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt")
    columns, min_fields, encoding = (3, 4, 0), 5, "utf-8-sig"
    classes: ClassVar[dict[str, int]] = {"0": 0, "1": 1}

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        train_a, train_b, train_y = self.sorted_pairs(self.files[0])
        test_a, test_b, test_y = self.sorted_pairs(self.files[1])
        train_u, train_v, test_u, test_v = embed_all(embed, train_a, train_b, test_a, test_b)
        devacc, acc, predictions = classifiers.kfold(
            pair_features(train_u, train_v, self.pair_features),
            train_y,
            pair_features(test_u, test_v, self.pair_features),
            test_y,
            2,
            settings,
            seed,
        )
        return {
            "devacc": devacc,
            "acc": acc,
            "f1": round(100 * classifiers.f1_binary(test_y, predictions), 2),
            "ndev": len(train_y),
            "ntest": len(test_y),
            "features": PAIR_FEATURES[self.pair_features],
        }


@SentEvalTask.register("SICKEntailment")
class SICKEntailment(PairClassificationTask):
    """SICK entailment (CONTRADICTION / NEUTRAL / ENTAILMENT); L2 chosen on the trial (dev) set."""

    folder = "SICK"
    files = ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt")
    columns, min_fields = (1, 2, 4), 5
    classes: ClassVar[dict[str, int]] = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        data = [self.sorted_pairs(filename) for filename in self.files]
        vectors = embed_all(embed, *(group for a, b, _ in data for group in (a, b)))
        x = {
            split: pair_features(vectors[2 * i], vectors[2 * i + 1], self.pair_features)
            for i, split in enumerate(SPLITS)
        }
        y = {split: data[i][2] for i, split in enumerate(SPLITS)}
        devacc, acc = classifiers.split(x, y, len(self.classes), settings, seed)
        return split_result(devacc, acc, y, features=PAIR_FEATURES[self.pair_features])


@SentEvalTask.register("SNLI")
class SNLI(SentEvalTask):
    """SNLI as SentEval's ``snli.py`` reads it: ``s1.SPLIT``, ``s2.SPLIT`` (one tokenised sentence
    a line, latin-1) and ``labels.SPLIT`` (entailment / neutral / contradiction) for train, dev and
    test; features ``[u, v, u*v, |u-v|]``; a logistic regression with SentEval's ``noreg`` (one L2
    value, 1e-9), SentEval's ``max_epoch`` 15 with one pass an epoch, early-stopped on dev accuracy.
    SentEval's loop runs while ``nepoch <= max_epoch``, so that is up to 16 passes, here too."""

    folder = "SNLI"
    files = tuple(f"{kind}.{split}" for split in ("train", "dev", "test") for kind in ("s1", "s2", "labels"))
    classes: ClassVar[dict[str, int]] = {"entailment": 0, "neutral": 1, "contradiction": 2}

    def load(self, split: str) -> tuple[list[str], list[str], np.ndarray]:
        """One split, sorted as SentEval sorts it: by the length of s2, then s1, then the label text."""
        first, second = (
            [senteval_tokens(line) for line in self.read_lines(f"{kind}.{split}", "latin-1")] for kind in ("s1", "s2")
        )
        path = self.path(f"labels.{split}")
        labels = path.read_text(encoding="utf-8").splitlines()
        if not len(first) == len(second) == len(labels):
            raise DeclutrError(
                f"{self.name}: s1.{split}, s2.{split} and labels.{split} under {self.directory()} have "
                f"{len(first)}, {len(second)} and {len(labels)} lines; they must be line-aligned"
            )
        for number, label in enumerate(labels, 1):
            if label not in self.classes:
                raise DeclutrError(
                    f"{self.name}: {path}:{number}: unknown label {label!r}; expected one of: {', '.join(self.classes)}"
                )
        (second, first), labels = length_sorted([second, first], labels)
        return first, second, np.asarray([self.classes[label] for label in labels], dtype=np.int64)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        data = dict(zip(SPLITS, (self.load(split) for split in ("train", "dev", "test"))))
        vectors = embed_all(embed, *(group for split in SPLITS for group in data[split][:2]))
        x = {
            split: np.concatenate([u, v, u * v, np.abs(u - v)], axis=1)
            for split, u, v in zip(SPLITS, vectors[0::2], vectors[1::2])
        }
        y = {split: data[split][2] for split in SPLITS}
        snli_settings = settings.but(max_epoch=15, epoch_size=1)  # SentEval's snli.py fixes both
        devacc, acc = classifiers.split(x, y, len(self.classes), snli_settings, seed, l2=(1e-9,))
        return split_result(devacc, acc, y, features="[u, v, u*v, |u-v|]")
