"""SentEval's downstream tasks, read from SentEval's ``data/downstream`` layout.

Each task is a ``SentEvalTask`` registered under SentEval's name (``STS12`` ... ``SICKEntailment``);
a plugin can register more. A task reads its files exactly as SentEval does (same encodings,
same whitespace tokenisation joined back with single spaces, same length sorting, which fixes
the order the seeded classifiers see), embeds every distinct sentence once through ``embed``,
and returns SentEval-named fields.

``embed`` is any ``Callable[[list[str]], np.ndarray]``, e.g. a :class:`declutr.Encoder`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable
from declutr.evaluation import classifiers
from declutr.evaluation.classifiers import ClassifierSettings

Embed = Callable[[list[str]], np.ndarray]

#: how pair tasks (MRPC, SICK-E) combine the two sentence embeddings u and v
#: (``senteval``, SentEval's code and every published SentEval number, is the default)
PAIR_FEATURES = {
    "senteval": "[|u-v|, u*v]",
    "full": "[u, v, |u-v|, u*v]",
}


def pair_features(u: np.ndarray, v: np.ndarray, kind: str = "senteval") -> np.ndarray:
    """``[u, v, |u-v|, u*v]`` (``full``) or SentEval's code's ``[|u-v|, u*v]`` (``senteval``)."""
    if kind == "full":
        return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
    if kind == "senteval":
        return np.concatenate([np.abs(u - v), u * v], axis=1)
    raise DeclutrError(f'unknown pair features "{kind}"; choose one of: {", ".join(PAIR_FEATURES)}')


def cosine_rows(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (0 where a vector is zero, as SentEval's ``nan_to_num``)."""
    u, v = np.nan_to_num(u.astype(np.float64)), np.nan_to_num(v.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = (u * v).sum(1) / np.sqrt((u * u).sum(1) * (v * v).sum(1))
    return np.nan_to_num(similarity)


def correlations(predicted, gold) -> dict:
    from scipy.stats import pearsonr, spearmanr

    predicted, gold = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(gold) < 2 or np.std(predicted) == 0 or np.std(gold) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearsonr(predicted, gold)[0]), "spearman": float(spearmanr(predicted, gold)[0])}


def _tokens(text: str) -> str:
    """SentEval's ``text.split()``, joined back as its batchers do; an empty text becomes "."."""
    return " ".join(text.split()) or "."


def embed_all(embed: Embed, *groups: list[str]) -> list[np.ndarray]:
    """Embed each distinct sentence of ``groups`` once; one ``[len(group), D]`` array per group."""
    unique = list(dict.fromkeys(sentence for group in groups for sentence in group))
    vectors = np.asarray(embed(unique), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(unique):
        raise DeclutrError(f"the embedding function returned shape {vectors.shape} for {len(unique)} sentences")
    row = {sentence: i for i, sentence in enumerate(unique)}
    return [vectors[[row[sentence] for sentence in group]] for group in groups]


class SentEvalTask(Registrable):
    """A SentEval task: reads its files under ``data_dir`` and scores an embedding function.

    # Parameters
    data_dir : the SentEval ``data/downstream`` folder.
    untokenized : read the untokenised ``original/`` files of STS12-16 and STS-B instead of
        SentEval's tokenised, lower-cased ones (other tasks have one version).
    pair_features : ``senteval`` = ``[|u-v|, u*v]`` (the default: the features SentEval's code
        uses) or ``full`` = ``[u, v, |u-v|, u*v]`` for MRPC and SICK-E.
    """

    kind_name = "senteval_task"
    #: the task's folder under ``data_dir`` and the files it reads there
    folder: ClassVar[str] = ""
    files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data_dir: str, untokenized: bool = False, pair_features: str = "senteval"):
        self.data_dir = Path(data_dir)
        self.untokenized = untokenized
        if pair_features not in PAIR_FEATURES:
            raise DeclutrError(f'unknown pair features "{pair_features}"; choose one of: {", ".join(PAIR_FEATURES)}')
        self.pair_features = pair_features

    @property
    def name(self) -> str:
        for name in self.list_available():
            if self.resolve(name)[0] is type(self):
                return name
        return type(self).__name__

    def directory(self) -> Path:
        return self.data_dir / self.folder

    def path(self, filename: str) -> Path:
        path = self.directory() / filename
        if not path.is_file():
            raise DeclutrError(f"{self.name}: missing data file {path} (expected SentEval's data/downstream layout)")
        return path

    def missing_files(self) -> list[Path]:
        """The files this task needs that are absent (checked before any embedding)."""
        return [self.directory() / f for f in self.files if not (self.directory() / f).is_file()]

    def read_lines(self, filename: str, encoding: str = "utf-8") -> list[str]:
        return self.path(filename).read_text(encoding=encoding).splitlines()

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        raise NotImplementedError


def _fields(line: str, count: int, where: str) -> list[str]:
    fields = line.strip().split("\t")
    if len(fields) < count:
        raise DeclutrError(f"{where}: expected at least {count} tab-separated fields, found {len(fields)}")
    return fields


# ----------------------------------------------------------------------------- STS12-16


class STSTask(SentEvalTask):
    """STS12-16: cosine similarity of the two embeddings against gold scores per sub-dataset
    (Pearson, Spearman), their mean and size-weighted mean ("all"); unscored pairs skipped."""

    datasets: ClassVar[tuple[str, ...]] = ()

    @property
    def files(self):  # type: ignore[override]
        return tuple(f"{kind}.{d}.txt" for d in self.datasets for kind in ("STS.input", "STS.gs"))

    def directory(self) -> Path:
        base = self.data_dir / self.folder
        return base / "original" if self.untokenized else base

    def load(self, dataset: str) -> tuple[list[str], list[str], list[float]]:
        inputs = self.read_lines(f"STS.input.{dataset}.txt")
        gold = self.read_lines(f"STS.gs.{dataset}.txt")
        if len(inputs) != len(gold):
            raise DeclutrError(f"{self.name} {dataset}: {len(inputs)} sentence pairs but {len(gold)} gold scores")
        first, second, scores = [], [], []
        for number, (line, score) in enumerate(zip(inputs, gold), 1):
            if score.strip() == "":  # not scored
                continue
            a, b = _fields(line, 2, f"{self.name} STS.input.{dataset}.txt line {number}")[:2]
            first.append(_tokens(a))
            second.append(_tokens(b))
            scores.append(float(score))
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


# ----------------------------------------------------------------------------- relatedness


class RelatednessTask(SentEvalTask):
    """STS-B / SICK-R: SentEval's regressor on ``[|u-v|, u*v]`` (trained on train, early-stopped
    on dev Pearson, scored on test) and, labelled ``cosine``, plain cosine similarity on test."""

    splits: ClassVar[dict[str, str]] = {}

    @property
    def files(self):  # type: ignore[override]
        return tuple(self.splits.values())

    def parse(self, lines: list[str], filename: str) -> tuple[list[str], list[str], list[float]]:
        raise NotImplementedError

    def load(self, split: str) -> tuple[list[str], list[str], np.ndarray]:
        """One split's pairs and scores, sorted by length as SentEval does."""
        filename = self.splits[split]
        first, second, scores = self.parse(self.read_lines(filename), filename)
        order = sorted(range(len(scores)), key=lambda i: (len(first[i].split()), len(second[i].split()), scores[i]))
        return [first[i] for i in order], [second[i] for i in order], np.asarray([scores[i] for i in order])

    def cosine(self, embed: Embed, split: str = "test") -> dict:
        """Pearson/Spearman of plain cosine similarity on one split (no training)."""
        first, second, scores = self.load(split)
        return correlations(cosine_rows(*embed_all(embed, first, second)), scores)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        data = {split: self.load(split) for split in ("train", "dev", "test")}
        groups = [group for split in ("train", "dev", "test") for group in data[split][:2]]
        train_u, train_v, dev_u, dev_v, test_u, test_v = embed_all(embed, *groups)

        def features(u, v):
            return np.concatenate([np.abs(u - v), u * v], axis=1)

        dev_pearson, predicted = classifiers.relatedness(
            features(train_u, train_v),
            data["train"][2],
            features(dev_u, dev_v),
            data["dev"][2],
            features(test_u, test_v),
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

    def directory(self) -> Path:
        base = self.data_dir / self.folder
        return base / "original" if self.untokenized else base

    def parse(self, lines, filename):
        first, second, scores = [], [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = _fields(line, 7, f"{self.name} {filename} line {number}")
            first.append(_tokens(fields[5]))
            second.append(_tokens(fields[6]))
            scores.append(float(fields[4]))
        return first, second, scores


@SentEvalTask.register("SICKRelatedness")
class SICKRelatedness(RelatednessTask):
    """SICK relatedness (header, then pair_ID, sentence_A, sentence_B, relatedness, entailment)."""

    folder = "SICK"
    splits: ClassVar[dict[str, str]] = {
        "train": "SICK_train.txt",
        "dev": "SICK_trial.txt",
        "test": "SICK_test_annotated.txt",
    }

    def parse(self, lines, filename):
        first, second, scores = [], [], []
        for number, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            fields = _fields(line, 5, f"{self.name} {filename} line {number}")
            first.append(_tokens(fields[1]))
            second.append(_tokens(fields[2]))
            scores.append(float(fields[3]))
        return first, second, scores


# ----------------------------------------------------------------------------- classification


def _sorted_by_length(texts: list[str], labels: list[int]) -> tuple[list[str], np.ndarray]:
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i].split()), labels[i]))
    return [texts[i] for i in order], np.asarray([labels[i] for i in order], dtype=np.int64)


class BinaryTask(SentEvalTask):
    """MR, CR, SUBJ, MPQA: one sentence a line (latin-1) in a positive and a negative file;
    logistic regression with k-fold cross-validation and an inner k-fold for L2."""

    files: ClassVar[tuple[str, str]] = ("", "")  # (label 1, label 0)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        positive, negative = (
            [_tokens(line) for line in self.read_lines(filename, encoding="latin-1")] for filename in self.files
        )
        texts, labels = _sorted_by_length(positive + negative, [1] * len(positive) + [0] * len(negative))
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
        for split, filename in zip(("train", "valid", "test"), self.files):
            parsed = [
                self.parse(line, f"{self.name} {filename} line {n}")
                for n, line in enumerate(self.read_lines(filename), 1)
                if line.strip()
            ]
            texts[split], labels[split] = _sorted_by_length([t for t, _ in parsed], [y for _, y in parsed])
        embedded = embed_all(embed, texts["train"], texts["valid"], texts["test"])
        x = dict(zip(("train", "valid", "test"), embedded))
        devacc, acc = classifiers.split(x, labels, self.n_classes, settings, seed)
        return {"devacc": devacc, "acc": acc, "ndev": len(texts["valid"]), "ntest": len(texts["test"])}

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
        return _tokens(text), self._label(label, where)


@SentEvalTask.register("SST5")
class SST5(SSTTask):
    """SST-5: ``label sentence`` lines (label 0-4)."""

    folder, n_classes = "SST/fine", 5

    def parse(self, line, where):
        label, _, text = line.strip().partition(" ")
        return _tokens(text), self._label(label, where)


@SentEvalTask.register("TREC")
class TREC(SentEvalTask):
    """TREC question types (``COARSE:fine question``, latin-1); L2 by k-fold on train."""

    folder, files = "TREC", ("train_5500.label", "TREC_10.label")
    classes: ClassVar[dict[str, int]] = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}

    def load(self, filename: str) -> tuple[list[str], np.ndarray]:
        texts, labels = [], []
        for number, line in enumerate(self.read_lines(filename, encoding="latin-1"), 1):
            if not line.strip():
                continue
            target, _, rest = line.strip().partition(":")
            if target not in self.classes or " " not in rest:
                raise DeclutrError(f"{self.name} {filename} line {number}: expected 'COARSE:fine question'")
            texts.append(_tokens(rest.split(" ", 1)[1]))
            labels.append(self.classes[target])
        return _sorted_by_length(texts, labels)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        (train_texts, train_y), (test_texts, test_y) = self.load(self.files[0]), self.load(self.files[1])
        train_x, test_x = embed_all(embed, train_texts, test_texts)
        devacc, acc, _ = classifiers.kfold(train_x, train_y, test_x, test_y, len(self.classes), settings, seed)
        return {"devacc": devacc, "acc": acc, "ndev": len(train_texts), "ntest": len(test_texts)}


class PairClassificationTask(SentEvalTask):
    def pairs(self, filename: str) -> tuple[list[str], list[str], list[int]]:
        raise NotImplementedError

    def sorted_pairs(self, filename: str):
        first, second, labels = self.pairs(filename)
        order = sorted(range(len(labels)), key=lambda i: (len(first[i].split()), len(second[i].split()), labels[i]))
        return [first[i] for i in order], [second[i] for i in order], np.asarray([labels[i] for i in order])


@SentEvalTask.register("MRPC")
class MRPC(PairClassificationTask):
    """MRPC (header, then Quality, #1 ID, #2 ID, #1 String, #2 String; UTF-8 with BOM, CRLF);
    L2 by k-fold on train; accuracy and F1 on test."""

    folder, files = "MRPC", ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt")

    def pairs(self, filename):
        first, second, labels = [], [], []
        for number, line in enumerate(self.read_lines(filename, encoding="utf-8-sig")[1:], 2):
            if not line.strip():
                continue
            fields = _fields(line, 5, f"{self.name} {filename} line {number}")
            first.append(_tokens(fields[3]))
            second.append(_tokens(fields[4]))
            labels.append(int(fields[0]))
        return first, second, labels

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
    classes: ClassVar[dict[str, int]] = {"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2}

    def pairs(self, filename):
        first, second, labels = [], [], []
        for number, line in enumerate(self.read_lines(filename)[1:], 2):
            if not line.strip():
                continue
            fields = _fields(line, 5, f"{self.name} {filename} line {number}")
            if fields[4] not in self.classes:
                raise DeclutrError(f"{self.name} {filename} line {number}: unknown entailment label {fields[4]!r}")
            first.append(_tokens(fields[1]))
            second.append(_tokens(fields[2]))
            labels.append(self.classes[fields[4]])
        return first, second, labels

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        data = [self.sorted_pairs(filename) for filename in self.files]
        vectors = embed_all(embed, *(group for a, b, _ in data for group in (a, b)))
        x = {
            split: pair_features(vectors[2 * i], vectors[2 * i + 1], self.pair_features)
            for i, split in enumerate(("train", "valid", "test"))
        }
        y = {split: data[i][2] for i, split in enumerate(("train", "valid", "test"))}
        devacc, acc = classifiers.split(x, y, len(self.classes), settings, seed)
        return {
            "devacc": devacc,
            "acc": acc,
            "ndev": len(y["valid"]),
            "ntest": len(y["test"]),
            "features": PAIR_FEATURES[self.pair_features],
        }
