"""STS12-16 (cosine similarity against gold scores, per sub-dataset) and the relatedness tasks
STS-B and SICK-R (SentEval's regressor, and plain cosine similarity)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

import declutr.evaluation.classifiers as classifiers  # noqa: PLR0402 (the module, not via the package)
from declutr.core.errors import DeclutrError
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.tasks.base import (
    Embed,
    SentEvalTask,
    correlations,
    cosine_rows,
    embed_all,
    length_sorted,
    pair_features,
    parse_score,
    senteval_tokens,
    tab_fields,
)


class STSTask(SentEvalTask):
    """STS12-16: cosine similarity of the two embeddings against gold scores per sub-dataset
    (Pearson, Spearman), their mean and size-weighted mean ("all"); unscored pairs skipped."""

    datasets: ClassVar[tuple[str, ...]] = ()
    has_original = True

    @property
    def files(self):  # type: ignore[override]
        return tuple(f"{kind}.{d}.txt" for d in self.datasets for kind in ("STS.input", "STS.gs"))

    def load(self, dataset: str) -> tuple[list[str], list[str], list[float]]:
        input_file, gold_file = f"STS.input.{dataset}.txt", f"STS.gs.{dataset}.txt"
        inputs, gold = self.read_lines(input_file), self.read_lines(gold_file)
        if len(inputs) != len(gold):
            raise DeclutrError(f"{self.name} {dataset}: {len(inputs)} sentence pairs but {len(gold)} gold scores")
        first, second, scores = [], [], []
        for number, (line, score) in enumerate(zip(inputs, gold), 1):
            if score.strip() == "":  # not scored
                continue
            a, b = tab_fields(line, 2, f"{self.name}: {self.directory() / input_file}:{number}")[:2]
            first.append(senteval_tokens(a))
            second.append(senteval_tokens(b))
            scores.append(parse_score(score, f"{self.name}: {self.directory() / gold_file}:{number}"))
        return first, second, scores

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        results: dict = {}
        for dataset in self.datasets:
            first, second, scores = self.load(dataset)
            u, v = embed_all(embed, first, second)
            results[dataset] = {**correlations(cosine_rows(u, v), scores), "nsamples": len(scores)}
        weights = [results[d]["nsamples"] for d in self.datasets]
        results["all"] = {
            metric: {
                "mean": float(np.mean([results[d][metric] for d in self.datasets])),
                "wmean": float(np.average([results[d][metric] for d in self.datasets], weights=weights)),
            }
            for metric in ("pearson", "spearman")
        }
        return results


@SentEvalTask.register("STS12")
class STS12(STSTask):
    folder = "STS/STS12-en-test"
    datasets = ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")


@SentEvalTask.register("STS13")
class STS13(STSTask):
    """STS13 without SMT (its text is not redistributable), as in SentEval."""

    folder = "STS/STS13-en-test"
    datasets = ("FNWN", "headlines", "OnWN")


@SentEvalTask.register("STS14")
class STS14(STSTask):
    folder = "STS/STS14-en-test"
    datasets = ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")


@SentEvalTask.register("STS15")
class STS15(STSTask):
    folder = "STS/STS15-en-test"
    datasets = ("answers-forums", "answers-students", "belief", "headlines", "images")


@SentEvalTask.register("STS16")
class STS16(STSTask):
    folder = "STS/STS16-en-test"
    datasets = ("answer-answer", "headlines", "plagiarism", "postediting", "question-question")


class RelatednessTask(SentEvalTask):
    """STS-B / SICK-R: SentEval's regressor on ``[|u-v|, u*v]`` (trained on train, early-stopped
    on dev Pearson, scored on test) and, labelled ``cosine``, plain cosine similarity on test."""

    splits: ClassVar[dict[str, str]] = {}
    #: the columns of the two sentences and the score, the fields a line has at least, a header line
    columns: ClassVar[tuple[int, int, int]] = (0, 1, 2)
    min_fields: ClassVar[int] = 3
    header: ClassVar[bool] = False

    @property
    def files(self):  # type: ignore[override]
        return tuple(self.splits.values())

    def load(self, split: str) -> tuple[list[str], list[str], np.ndarray]:
        """One split's pairs and scores, sorted by length as SentEval does."""
        first, second, scores = self.read_pairs(
            self.splits[split], self.columns, self.min_fields, parse_score, header=self.header
        )
        (first, second), scores = length_sorted([first, second], scores)
        return first, second, np.asarray(scores)

    def cosine(self, embed: Embed, split: str = "test") -> dict:
        """Pearson/Spearman of plain cosine similarity on one split (no training)."""
        first, second, scores = self.load(split)
        return correlations(cosine_rows(*embed_all(embed, first, second)), scores)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        data = {split: self.load(split) for split in ("train", "dev", "test")}
        groups = [group for split in ("train", "dev", "test") for group in data[split][:2]]
        train_u, train_v, dev_u, dev_v, test_u, test_v = embed_all(embed, *groups)
        dev_pearson, predicted = classifiers.relatedness(
            pair_features(train_u, train_v),
            data["train"][2],
            pair_features(dev_u, dev_v),
            data["dev"][2],
            pair_features(test_u, test_v),
            settings,
            seed,
        )
        gold = data["test"][2]
        return {
            "devpearson": float(dev_pearson),
            **correlations(predicted, gold),
            "mse": float(np.mean((predicted - gold) ** 2)),
            "ndev": len(data["dev"][2]),
            "ntest": len(gold),
            "cosine": correlations(cosine_rows(test_u, test_v), gold),
            "protocol": "pearson/spearman/mse: SentEval regressor on [|u-v|, u*v] (train, dev-selected), test set; "
            "cosine: cosine similarity on the test set",
        }


@SentEvalTask.register("STSBenchmark")
class STSBenchmark(RelatednessTask):
    """STS Benchmark (genre, file, year, id, score, s1, s2 tab-separated; scores 0-5)."""

    folder = "STS/STSBenchmark"
    splits: ClassVar[dict[str, str]] = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
    has_original, columns, min_fields = True, (5, 6, 4), 7


@SentEvalTask.register("SICKRelatedness")
class SICKRelatedness(RelatednessTask):
    """SICK relatedness (header, then pair_ID, sentence_A, sentence_B, relatedness, entailment)."""

    folder = "SICK"
    splits: ClassVar[dict[str, str]] = {
        "train": "SICK_train.txt",
        "dev": "SICK_trial.txt",
        "test": "SICK_test_annotated.txt",
    }
    columns, min_fields, header = (1, 2, 3), 5, True
