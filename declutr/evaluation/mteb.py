"""MTEB's STS protocol on SentEval's files: every scored pair of a task in one list.

MTEB (the embedding leaderboard) scores STS12-16, STS-B and SICK-R differently from SentEval:
no per-subset mean and no regressor. All of a task's scored test pairs are pooled into one
list, embedded with the text as stored but stripped of leading and trailing whitespace (as
sentence-transformers up to v5.1, behind MTEB's published runs, strips every text before
tokenizing), and the Spearman (and Pearson) correlation of their
cosine similarities with the gold scores is taken over the whole list. Which pairs MTEB scores:

- STS12-16: every scored pair of SentEval's processed top-level ``STS.input.*.txt`` files;
- STSBenchmark: the untokenised canonical test file (``original/sts-test.csv``);
- SICKRelatedness: all 9,927 pairs of SICK (train + trial + test).

Cosine similarity does not depend on the vectors' lengths, so ``--normalize`` does not change
these figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from declutr.core.errors import DeclutrError
from declutr.evaluation.tasks.base import SentEvalTask, correlations, cosine_rows, embed_all, parse_score
from declutr.evaluation.tasks.names import parse_tasks, split_spec
from declutr.evaluation.tasks.sts import SICKRelatedness, STSBenchmark, STSTask

#: the tasks MTEB scores with its STS protocol, under SentEval's names
MTEB_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")

Pairs = tuple[list[str], list[str], list[float]]


def _not_mteb(name: str) -> DeclutrError:
    return DeclutrError(f'task "{name}" has no MTEB STS protocol; --protocol mteb scores: {", ".join(MTEB_TASKS)}')


def _split(line: str, count: int, where: str) -> list[str]:
    """Tab-separated fields, text kept as stored (only the line ending removed)."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < count:
        raise DeclutrError(f"{where}: expected at least {count} tab-separated fields, found {len(fields)}")
    return fields


def _sts_subsets(task: STSTask) -> dict[str, Pairs]:
    """STS12-16: each sub-dataset's scored pairs, text as stored in SentEval's top-level files."""
    subsets = {}
    for dataset in task.datasets:
        inputs = task.read_lines(f"STS.input.{dataset}.txt")
        gold = task.read_lines(f"STS.gs.{dataset}.txt")
        if len(inputs) != len(gold):
            raise DeclutrError(f"{task.name} {dataset}: {len(inputs)} sentence pairs but {len(gold)} gold scores")
        where = task.directory() / f"STS.input.{dataset}.txt"
        first, second, scores = [], [], []
        for number, (line, score) in enumerate(zip(inputs, gold), 1):
            if score.strip() == "":  # not scored
                continue
            a, b = _split(line, 2, f"{where}:{number}")[:2]
            first.append(a)
            second.append(b)
            scores.append(parse_score(score, f"{task.directory() / f'STS.gs.{dataset}.txt'}:{number}"))
        subsets[dataset] = (first, second, scores)
    return subsets


def _rows(task: SentEvalTask, filename: str, header: bool, columns: tuple[int, int, int], count: int) -> Pairs:
    """STS-B / SICK: ``(first, second, score)`` from the given columns of a tab-separated file."""
    where = task.directory() / filename
    first, second, scores = [], [], []
    for number, line in enumerate(task.read_lines(filename), 1):
        if (header and number == 1) or not line.strip():
            continue
        fields = _split(line, count, f"{where}:{number}")
        first.append(fields[columns[0]])
        second.append(fields[columns[1]])
        scores.append(parse_score(fields[columns[2]], f"{where}:{number}"))
    return first, second, scores


def mteb_task(name: str, data_dir: str | Path) -> SentEvalTask:
    """The SentEval task ``name`` set up to read the files MTEB's protocol reads."""
    if name not in MTEB_TASKS:
        raise _not_mteb(name)
    # STS-B: MTEB reads the untokenised canonical file; STS12-16: SentEval's processed files
    return SentEvalTask.by_name(name)(str(data_dir), untokenized=name == "STSBenchmark")


def mteb_files(task: SentEvalTask) -> list[str]:
    """The files (under ``task.directory()``) MTEB's protocol reads for ``task``."""
    if isinstance(task, SICKRelatedness):
        return list(task.splits.values())
    if isinstance(task, STSBenchmark):
        return [task.splits["test"]]
    return list(task.files)


def mteb_subsets(task: SentEvalTask) -> dict[str, Pairs]:
    """The task's scored pairs as MTEB pools them, by source (sub-dataset or file), in file order."""
    if isinstance(task, SICKRelatedness):
        return {filename: _rows(task, filename, True, (1, 2, 3), 5) for filename in task.splits.values()}
    if isinstance(task, STSBenchmark):
        return {"test": _rows(task, task.splits["test"], False, (5, 6, 4), 7)}
    if isinstance(task, STSTask):
        return _sts_subsets(task)
    raise _not_mteb(task.name)


def pooled_scores(similarities: dict[str, np.ndarray], gold: dict[str, list[float]]) -> dict:
    """MTEB's figure: one Pearson/Spearman over every subset's pairs pooled into one list."""
    predicted = np.concatenate([np.asarray(similarities[name], dtype=np.float64) for name in gold])
    scores = np.concatenate([np.asarray(gold[name], dtype=np.float64) for name in gold])
    return {**correlations(predicted, scores), "nsamples": len(scores)}


def run_mteb_task(task: SentEvalTask, embed) -> dict:
    """Score ``embed`` on ``task`` with MTEB's protocol.

    Returns ``pearson`` and ``spearman`` (fractions, over the pooled list), ``nsamples`` (pooled
    pairs), ``subsets`` (pairs per sub-dataset or file) and ``files`` (relative to the data dir)."""
    subsets = mteb_subsets(task)
    groups = [strip_texts(group) for first, second, _ in subsets.values() for group in (first, second)]
    vectors = embed_all(embed, *groups)
    similarities = {name: cosine_rows(vectors[2 * i], vectors[2 * i + 1]) for i, name in enumerate(subsets)}
    result = pooled_scores(similarities, {name: scores for name, (_, _, scores) in subsets.items()})
    root = task.data_dir
    return {
        **result,
        "subsets": {name: len(scores) for name, (_, _, scores) in subsets.items()},
        "files": [str((task.directory() / f).relative_to(root)) for f in mteb_files(task)],
        "protocol": "mteb: cosine similarity, Spearman/Pearson over all scored pairs pooled, text as stored "
        "and stripped",
    }


def strip_texts(texts: list[str]) -> list[str]:
    """``str(text).strip()`` for each text, as sentence-transformers' ``Transformer.tokenize``
    (up to v5.1) does before tokenizing: whitespace at either end changes a BPE (RoBERTa)
    tokenisation, though not a WordPiece one (12 STS-B test and 105 SICK sentences have some)."""
    return [str(text).strip() for text in texts]


def mteb_task_names(spec: str | list[str]) -> list[str]:
    """Task names for ``--protocol mteb``: ``all`` (or ``downstream``, ``sts``) = the seven MTEB STS tasks."""
    result = []
    for name in split_spec(spec):
        expanded = list(MTEB_TASKS) if name.lower() in ("all", "downstream", "sts") else parse_tasks([name])
        for task in expanded:
            if task not in MTEB_TASKS:
                raise _not_mteb(task)
        result.extend(expanded)
    if not result:
        raise DeclutrError(f"no tasks given; e.g. --protocol mteb --tasks {','.join(MTEB_TASKS)}")
    return list(dict.fromkeys(result))


def mteb_missing_files(task: SentEvalTask) -> list[Path]:
    return [task.directory() / f for f in mteb_files(task) if not (task.directory() / f).is_file()]


def aggregate_mteb(results: dict[str, dict]) -> dict:
    """Each task's pooled cosine Spearman x 100 and their mean, ``average``, naming how many of
    the seven MTEB STS tasks it covers (``average_tasks``: a partial mean must not look complete)."""
    scores: dict = {task: round(100 * result["spearman"], 2) for task, result in results.items()}
    if scores:
        scores["average"] = round(sum(scores.values()) / len(scores), 2)
        scores["average_tasks"] = f"{len(results)} of {len(MTEB_TASKS)}"
    return scores


MTEB_PROTOCOL = {
    "name": "mteb",
    "sts": "cosine similarity of the two embeddings; Spearman and Pearson over all of a task's scored test "
    "pairs pooled into one list (no per-subset mean, no regressor)",
    "sts_text": "as stored, stripped of whitespace at either end (as sentence-transformers up to v5.1): "
    "STS12-16 SentEval's processed top-level files; STS-B the untokenised original/sts-test.csv; "
    "SICK-R all pairs of SICK_train, SICK_trial and SICK_test_annotated",
    "aggregate": "task score = pooled cosine spearman*100; average = mean over the tasks run",
}
