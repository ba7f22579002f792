"""SentEval's tasks, read from SentEval's ``data/downstream`` (and ``data/probing``) layout.

Each task is a ``SentEvalTask`` registered under SentEval's name (``STS12`` ... ``SICKEntailment``,
``SNLI``, ``ImageCaptionRetrieval``, the ten probing tasks ``Length`` ... ``CoordinationInversion``);
a plugin can register more. A task reads its files exactly as SentEval does (same encodings,
same whitespace tokenisation joined back with single spaces, same length sorting, which fixes
the order the seeded classifiers see), embeds every distinct sentence once through ``embed``,
and returns SentEval-named fields.

``embed`` is any ``Callable[[list[str]], np.ndarray]``, e.g. a :class:`declutr.Encoder`.
"""

from __future__ import annotations

import pickle
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


def length_sorted(texts: list[list[str]], labels: list) -> tuple[list[list[str]], list]:
    """Samples sorted as SentEval sorts them: by the word counts of ``texts`` (in the order
    given), then by label; returns the texts and labels in that order."""
    order = sorted(range(len(labels)), key=lambda i: (*(len(column[i].split()) for column in texts), labels[i]))
    return [[column[i] for i in order] for column in texts], [labels[i] for i in order]


def embed_all(embed: Embed, *groups: list[str]) -> list[np.ndarray]:
    """Embed each distinct sentence of ``groups`` once; one ``[len(group), D]`` array per group."""
    unique = list(dict.fromkeys(sentence for group in groups for sentence in group))
    vectors = np.asarray(embed(unique), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(unique):
        raise DeclutrError(f"the embedding function returned shape {vectors.shape} for {len(unique)} sentences")
    row = {sentence: i for i, sentence in enumerate(unique)}
    return [vectors[[row[sentence] for sentence in group]] for group in groups]


#: SentEval's split names as its SplitClassifier takes them
SPLITS = ("train", "valid", "test")

#: where SentEval's own download script (``data/downstream/get_transfer_data.bash``) puts a file
DOWNLOAD_SCRIPT = "SentEval's data/downstream/get_transfer_data.bash"


class SentEvalTask(Registrable):
    """A SentEval task: reads its files under ``data_dir`` and scores an embedding function.

    # Parameters
    data_dir : the SentEval ``data/downstream`` folder.
    untokenized : read the untokenised ``original/`` files of STS12-16 and STS-B instead of
        SentEval's tokenised, lower-cased ones (other tasks have one version).
    pair_features : ``senteval`` = ``[|u-v|, u*v]`` (the default: the features SentEval's code
        uses) or ``full`` = ``[u, v, |u-v|, u*v]`` for MRPC and SICK-E.
    probing_dir : SentEval's ``data/probing`` folder for the probing tasks (default: the
        ``probing`` folder beside ``data_dir``, as in SentEval's ``data/``).
    """

    kind_name = "senteval_task"
    #: the task's folder under ``data_dir`` and the files it reads there
    folder: ClassVar[str] = ""
    files: ClassVar[tuple[str, ...]] = ()
    #: whether an ``original/`` folder holds the untokenised files (``untokenized``)
    has_original: ClassVar[bool] = False
    #: what SentEval's download script calls the task's files (named when one is missing)
    source: ClassVar[str] = DOWNLOAD_SCRIPT

    def __init__(
        self, data_dir: str, untokenized: bool = False, pair_features: str = "senteval", probing_dir: str | None = None
    ):
        self.data_dir = Path(data_dir)
        self.untokenized = untokenized
        if pair_features not in PAIR_FEATURES:
            raise DeclutrError(f'unknown pair features "{pair_features}"; choose one of: {", ".join(PAIR_FEATURES)}')
        self.pair_features = pair_features
        self.probing_dir = Path(probing_dir) if probing_dir else self.data_dir.parent / "probing"

    @property
    def name(self) -> str:
        for name in self.list_available():
            if self.resolve(name)[0] is type(self):
                return name
        return type(self).__name__

    def directory(self) -> Path:
        base = self.data_dir / self.folder
        return base / "original" if self.untokenized and self.has_original else base

    def missing(self, path: Path) -> str:
        """``TASK: missing PATH (SentEval's download script: ...)`` for one absent file."""
        return f"{self.name}: missing {path} ({self.source}: {self.folder + '/' if self.folder else ''}{path.name})"

    def path(self, filename: str) -> Path:
        path = self.directory() / filename
        if not path.is_file():
            raise DeclutrError(self.missing(path))
        return path

    def missing_files(self) -> list[Path]:
        """The files this task needs that are absent (checked before any embedding)."""
        return [self.directory() / f for f in self.files if not (self.directory() / f).is_file()]

    def read_lines(self, filename: str, encoding: str = "utf-8") -> list[str]:
        return self.path(filename).read_text(encoding=encoding).splitlines()

    def lines(self, filename: str, encoding: str = "utf-8", header: bool = False):
        """``(where, line)`` for each non-empty line (``where`` = ``TASK: path:line``)."""
        path = self.path(filename)
        for number, line in enumerate(path.read_text(encoding=encoding).splitlines(), 1):
            if line.strip() and not (header and number == 1):
                yield f"{self.name}: {path}:{number}", line

    def rows(self, filename: str, min_fields: int, encoding: str = "utf-8", header: bool = False):
        """``(where, fields)`` for each non-empty line of a tab-separated file."""
        for where, line in self.lines(filename, encoding, header):
            yield where, _fields(line, min_fields, where)

    def read_pairs(
        self,
        filename: str,
        columns: tuple[int, int, int],
        min_fields: int,
        value: Callable,
        encoding: str = "utf-8",
        header: bool = False,
    ) -> tuple[list[str], list[str], list]:
        """The two sentences and ``value(field, where)`` of the columns ``columns`` of each row."""
        first, second, values = [], [], []
        for where, fields in self.rows(filename, min_fields, encoding, header):
            first.append(_tokens(fields[columns[0]]))
            second.append(_tokens(fields[columns[1]]))
            values.append(value(fields[columns[2]], where))
        return first, second, values

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        raise NotImplementedError


def _fields(line: str, count: int, where: str) -> list[str]:
    fields = line.strip().split("\t")
    if len(fields) < count:
        raise DeclutrError(f"{where}: expected at least {count} tab-separated fields, found {len(fields)}")
    return fields


def _score(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DeclutrError(f"{where}: score {value!r} is not a number") from None


def _label_of(classes: dict[str, int]) -> Callable[[str, str], int]:
    def label(value: str, where: str) -> int:
        if value not in classes:
            raise DeclutrError(f"{where}: unknown label {value!r}; expected one of: {', '.join(classes)}")
        return classes[value]

    return label


# ----------------------------------------------------------------------------- STS12-16


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
            a, b = _fields(line, 2, f"{self.name}: {self.directory() / input_file}:{number}")[:2]
            first.append(_tokens(a))
            second.append(_tokens(b))
            scores.append(_score(score, f"{self.name}: {self.directory() / gold_file}:{number}"))
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
            self.splits[split], self.columns, self.min_fields, _score, header=self.header
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


# ----------------------------------------------------------------------------- classification


def _sorted_by_length(texts: list[str], labels: list[int]) -> tuple[list[str], np.ndarray]:
    (texts,), labels = length_sorted([texts], labels)
    return texts, np.asarray(labels, dtype=np.int64)


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


def _split_result(devacc: float, acc: float, y: dict, **extra) -> dict:
    return {"devacc": devacc, "acc": acc, "ndev": len(y["valid"]), "ntest": len(y["test"]), **extra}


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
            texts[split], labels[split] = _sorted_by_length([t for t, _ in parsed], [y for _, y in parsed])
        x = dict(zip(SPLITS, embed_all(embed, *(texts[split] for split in SPLITS))))
        return _split_result(*classifiers.split(x, labels, self.n_classes, settings, seed), labels)

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
        for where, line in self.lines(filename, encoding="latin-1"):
            target, _, rest = line.strip().partition(":")
            if target not in self.classes or " " not in rest:
                raise DeclutrError(f"{where}: expected 'COARSE:fine question'")
            texts.append(_tokens(rest.split(" ", 1)[1]))
            labels.append(self.classes[target])
        return _sorted_by_length(texts, labels)

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        (train_texts, train_y), (test_texts, test_y) = self.load(self.files[0]), self.load(self.files[1])
        train_x, test_x = embed_all(embed, train_texts, test_texts)
        devacc, acc, _ = classifiers.kfold(train_x, train_y, test_x, test_y, len(self.classes), settings, seed)
        return {"devacc": devacc, "acc": acc, "ndev": len(train_texts), "ntest": len(test_texts)}


class PairClassificationTask(SentEvalTask):
    """Sentence pairs with a class label; ``columns`` of (sentence 1, sentence 2, label)."""

    columns: ClassVar[tuple[int, int, int]] = (0, 1, 2)
    min_fields: ClassVar[int] = 3
    encoding: ClassVar[str] = "utf-8"
    classes: ClassVar[dict[str, int]] = {}

    def sorted_pairs(self, filename: str):
        first, second, labels = self.read_pairs(
            filename, self.columns, self.min_fields, _label_of(self.classes), encoding=self.encoding, header=True
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
        return _split_result(devacc, acc, y, features=PAIR_FEATURES[self.pair_features])


# ----------------------------------------------------------------------------- SNLI


@SentEvalTask.register("SNLI")
class SNLI(SentEvalTask):
    """SNLI as SentEval's ``snli.py`` reads it: ``s1.SPLIT``, ``s2.SPLIT`` (one tokenised sentence
    a line, latin-1) and ``labels.SPLIT`` (entailment / neutral / contradiction) for train, dev and
    test; features ``[u, v, u*v, |u-v|]``; a logistic regression with SentEval's ``noreg`` (one L2
    value, 1e-9), at most 15 epochs of one pass each, early-stopped on dev accuracy."""

    folder = "SNLI"
    files = tuple(f"{kind}.{split}" for split in ("train", "dev", "test") for kind in ("s1", "s2", "labels"))
    classes: ClassVar[dict[str, int]] = {"entailment": 0, "neutral": 1, "contradiction": 2}

    def load(self, split: str) -> tuple[list[str], list[str], np.ndarray]:
        """One split, sorted as SentEval sorts it: by the length of s2, then s1, then the label text."""
        first, second = (
            [_tokens(line) for line in self.read_lines(f"{kind}.{split}", "latin-1")] for kind in ("s1", "s2")
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
        return _split_result(devacc, acc, y, features="[u, v, u*v, |u-v|]")


# ----------------------------------------------------------------------------- ImageCaptionRetrieval


class _COCOUnpickler(pickle.Unpickler):
    """Unpickles only what SentEval's COCO files hold: builtin containers, strings, numbers and
    numpy arrays. Any other global (a class, a function) is refused, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise DeclutrError(
                f"refusing to unpickle {module}.{name}: the COCO files hold only containers, "
                "strings, numbers and numpy arrays"
            )
        return allowed[(module, name)]


def _allowed_pickle_globals() -> dict:
    import builtins
    import codecs

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = {("builtins", name): getattr(builtins, name) for name in ("dict", "list", "tuple", "set", "frozenset")}
    for package in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(package, "_reconstruct")] = multiarray._reconstruct
        allowed[(package, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = codecs.encode  # bytes in protocol-2 pickles written by Python 3
    return allowed


def load_pickle(path: Path):
    """A COCO pickle, through :class:`_COCOUnpickler` (``encoding="latin1"`` as SentEval: Python 2 files)."""
    try:
        with open(path, "rb") as file:
            return _COCOUnpickler(file, encoding="latin1").load()
    except DeclutrError as error:
        raise DeclutrError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DeclutrError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None


@SentEvalTask.register("ImageCaptionRetrieval")
class ImageCaptionRetrieval(SentEvalTask):
    """COCO image-caption retrieval as SentEval's ``rank.py``: ``COCO/{train,valid,test}.pkl`` hold
    ResNet-101 image features (``features``), ``image_to_caption_ids`` and ``captions``
    (``cleaned_caption``); the first 5 captions of each image are used, each with " ." appended.
    A ranking model (two linear projections onto the unit sphere, margin 0.2, 30 contrastive
    samples) is trained on train, early-stopped on dev; recall@1/5/10 and median rank, image to
    text and text to image, averaged over 5 folds of 1000 test images."""

    folder, files = "COCO", ("train.pkl", "valid.pkl", "test.pkl")
    source = f"{DOWNLOAD_SCRIPT}, from https://dl.fbaipublicfiles.com/senteval/coco_r101_feat"

    def load(self, filename: str) -> tuple[list[str], np.ndarray]:
        """The captions (5 per image, image by image) and the image features ``[images, D]``."""
        path = self.path(filename)
        data = load_pickle(path)
        keys = ("features", "image_to_caption_ids", "captions")
        if not isinstance(data, dict) or any(key not in data for key in keys):
            raise DeclutrError(
                f"{self.name}: {path}: expected a dict with keys {', '.join(keys)} (SentEval's COCO format)"
            )
        try:
            features = np.asarray(data["features"], dtype=np.float32)
            captions = []
            for image in range(len(features)):
                ids = list(data["image_to_caption_ids"][image])
                if len(ids) < 5:
                    raise DeclutrError(f"{self.name}: {path}: image {image} has {len(ids)} captions; SentEval needs 5")
                captions.extend(_tokens(str(data["captions"][i]["cleaned_caption"]) + " .") for i in ids[:5])
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DeclutrError(f"{self.name}: {path}: malformed COCO data ({type(error).__name__}: {error})") from None
        if features.ndim != 2:
            raise DeclutrError(f"{self.name}: {path}: features have shape {features.shape}, expected [images, D]")
        return captions, features

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        (train_text, train_images), (dev_text, dev_images), (test_text, test_images) = (
            self.load(f) for f in self.files
        )
        for filename, images in (("valid.pkl", dev_images), ("test.pkl", test_images)):
            if len(images) < classifiers.RANKING_FOLDS * settings.ranking_fold_images:
                raise DeclutrError(
                    f"{self.name}: {self.directory() / filename} has {len(images)} images; SentEval's "
                    f"protocol ranks {classifiers.RANKING_FOLDS} folds of {settings.ranking_fold_images}"
                )
        train_x, dev_x, test_x = embed_all(embed, train_text, dev_text, test_text)
        devacc, image_to_text, text_to_image = classifiers.ranking(
            (train_images, train_x), (dev_images, dev_x), (test_images, test_x), settings, seed
        )
        return {
            "devacc": devacc,
            "acc": [image_to_text, text_to_image],
            "ndev": len(dev_text),
            "ntest": len(test_text),
            "protocol": "acc: [image to text, text to image] x (R@1, R@5, R@10, median rank), mean of "
            f"{classifiers.RANKING_FOLDS} folds of {settings.ranking_fold_images} test images; "
            "devacc: the same folds' six recalls summed, mean over dev folds",
        }


# ----------------------------------------------------------------------------- probing


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
            texts[split].append(_tokens(fields[-1]))
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
        return _split_result(*classifiers.split(x, y, len(names), settings, seed), y)


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
