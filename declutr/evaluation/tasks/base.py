"""The ``SentEvalTask`` base and what every task family shares: reading SentEval's files
(encodings, ``file:line`` errors, SentEval's whitespace tokenisation and length sorting),
embedding each distinct sentence once, cosine similarity, correlations and pair features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from declutr.core.errors import DeclutrError
from declutr.core.registrable import Registrable
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


def senteval_tokens(text: str) -> str:
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
            yield where, tab_fields(line, min_fields, where)

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
            first.append(senteval_tokens(fields[columns[0]]))
            second.append(senteval_tokens(fields[columns[1]]))
            values.append(value(fields[columns[2]], where))
        return first, second, values

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        raise NotImplementedError


def tab_fields(line: str, count: int, where: str) -> list[str]:
    """The tab-separated fields of ``line`` (stripped), at least ``count`` of them."""
    fields = line.strip().split("\t")
    if len(fields) < count:
        raise DeclutrError(f"{where}: expected at least {count} tab-separated fields, found {len(fields)}")
    return fields


def parse_score(value: str, where: str) -> float:
    """A gold score (``where`` names its ``file:line`` in the error)."""
    try:
        return float(value)
    except ValueError:
        raise DeclutrError(f"{where}: score {value.strip()!r} is not a number") from None


def split_result(devacc: float, acc: float, y: dict, **extra) -> dict:
    """The fields of a task scored by a classifier on SentEval's train/valid/test splits."""
    return {"devacc": devacc, "acc": acc, "ndev": len(y["valid"]), "ntest": len(y["test"]), **extra}
