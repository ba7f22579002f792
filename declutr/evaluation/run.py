"""Run SentEval tasks on an embedding function; DeCLUTR's aggregation; the results table."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from declutr.core.errors import DeclutrError
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.mteb import (
    MTEB_PROTOCOL,
    aggregate_mteb,
    mteb_missing_files,
    mteb_task,
    mteb_task_names,
    run_mteb_task,
)
from declutr.evaluation.tasks.base import PAIR_FEATURES, Embed, SentEvalTask
from declutr.evaluation.tasks.names import DOWNSTREAM_TASKS, PROBING_TASKS, parse_tasks

logger = logging.getLogger(__name__)

#: the averages DeCLUTR's run_senteval.py reports; "downstream (-SNLI)" is the paper's headline column
GROUPS = {
    "downstream": DOWNSTREAM_TASKS,
    "downstream (-SNLI)": tuple(task for task in DOWNSTREAM_TASKS if task != "SNLI"),
    "probing": PROBING_TASKS,
}
#: how ``evaluate`` scores: SentEval's protocol (the default) or MTEB's STS protocol (STS tasks only)
PROTOCOLS = ("senteval", "mteb")


def build_tasks(
    names: list[str],
    data_dir: str | Path,
    untokenized: bool = False,
    pair_features: str = "senteval",
    protocol: str = "senteval",
    probing_dir: str | Path | None = None,
) -> list[SentEvalTask]:
    """The tasks, after checking that ``data_dir`` (and ``probing_dir``) hold every file they need
    (one error listing all)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DeclutrError(f"data directory {data_dir} does not exist (expected SentEval's data/downstream layout)")
    if pair_features not in PAIR_FEATURES:
        raise DeclutrError(f'unknown pair features "{pair_features}"; choose one of: {", ".join(PAIR_FEATURES)}')
    if protocol not in PROTOCOLS:
        raise DeclutrError(f'unknown protocol "{protocol}"; choose one of: {", ".join(PROTOCOLS)}')
    if protocol == "mteb":
        if untokenized:
            raise DeclutrError(
                "--untokenized does not apply to --protocol mteb (MTEB reads STS12-16's processed files "
                "and STS-B's untokenised one)"
            )
        tasks = [mteb_task(name, data_dir) for name in names]
        missing = [f"{task.name}: {path}" for task in tasks for path in mteb_missing_files(task)]
    else:
        tasks = [
            SentEvalTask.by_name(name)(
                str(data_dir),
                untokenized=untokenized,
                pair_features=pair_features,
                probing_dir=None if probing_dir is None else str(probing_dir),
            )
            for name in names
        ]
        missing = [task.missing(path) for task in tasks for path in task.missing_files()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DeclutrError(f"missing SentEval data files: {'; '.join(missing[:3])}{more}")
    return tasks


def task_score(task: str, result: dict) -> tuple[float, float] | None:
    """DeCLUTR's ``(test, dev)`` score of one task's result (``run_senteval.py``), or None for a
    result of another shape: STS12-16 ``all.spearman.mean * 100`` (both); STS-B and SICK-R the
    regressor's test Spearman and dev Pearson x 100; ImageCaptionRetrieval the mean of the six
    recalls (``acc[0][:-1] + acc[-1][:-1]``) and ``devacc / 6``; MRPC the mean of accuracy and
    F1 (dev: devacc); the other tasks test accuracy and devacc."""
    if "all" in result:
        score = 100 * result["all"]["spearman"]["mean"]
        return score, score
    if "spearman" in result and "devpearson" in result:
        return 100 * result["spearman"], 100 * result["devpearson"]
    if task == "ImageCaptionRetrieval":
        recalls = list(result["acc"][0][:-1]) + list(result["acc"][-1][:-1])
        return sum(recalls) / len(recalls), result["devacc"] / 6
    if "acc" in result and "devacc" in result:
        return ((result["acc"] + result["f1"]) / 2 if "f1" in result else result["acc"]), result["devacc"]
    return None


def aggregate(results: dict[str, dict]) -> dict[str, float]:
    """DeCLUTR's aggregation of test scores: one score per task (:func:`task_score`) and the mean
    of each group of :data:`GROUPS` of which at least one task ran (see :func:`groups`). As in
    DeCLUTR's script, a group's mean is taken over the unrounded task scores; every figure is
    rounded to 2 decimals only when reported."""
    return _aggregate(results, 0)


def aggregate_dev(results: dict[str, dict]) -> dict[str, float]:
    """The dev counterparts of :func:`aggregate` (DeCLUTR's dev aggregate)."""
    return _aggregate(results, 1)


def _aggregate(results: dict[str, dict], which: int) -> dict[str, float]:
    unrounded = {
        task: score[which] for task, result in results.items() if (score := task_score(task, result)) is not None
    }
    scores = {task: round(value, 2) for task, value in unrounded.items()}
    for group, members in GROUPS.items():
        ran = [unrounded[task] for task in members if task in unrounded]
        if ran:
            scores[group] = round(sum(ran) / len(ran), 2)
    return scores


def groups(results: dict[str, dict]) -> dict[str, dict]:
    """Per group of :data:`GROUPS` with at least one task run: its test and dev means, how many
    of its tasks ran (``"coverage": "2 of 17 tasks"``) and which are missing: a partial average
    is labelled as one."""
    test, dev = aggregate(results), aggregate_dev(results)
    summary = {}
    for group, members in GROUPS.items():
        if group not in test:
            continue
        ran = [task for task in members if task in test]
        summary[group] = {
            "test": test[group],
            "dev": dev[group],
            "tasks_run": len(ran),
            "tasks_total": len(members),
            "coverage": f"{len(ran)} of {len(members)} tasks",
            "missing": [task for task in members if task not in ran],
        }
    return summary


def select_tasks(
    spec: str | Sequence[str],
    data_dir: str | Path,
    untokenized: bool = False,
    pair_features: str = "senteval",
    protocol: str = "senteval",
    probing_dir: str | Path | None = None,
) -> list[SentEvalTask]:
    """The tasks ``spec`` names (``"STS12,MR"``, a group such as ``downstream``, or a list), built
    for ``protocol`` and checked for their data files (:func:`build_tasks`): what :func:`evaluate`
    runs, and what a caller can check before loading a model."""
    names = mteb_task_names(spec) if protocol == "mteb" else parse_tasks(spec)
    return build_tasks(
        names,
        data_dir,
        untokenized=untokenized,
        pair_features=pair_features,
        protocol=protocol,
        probing_dir=probing_dir,
    )


def evaluate(
    embed: Embed,
    tasks: str | Sequence[str] | Sequence[SentEvalTask],
    data_dir: str | Path | None = None,
    seed: int = 1111,
    prototyping: bool = False,
    settings: ClassifierSettings | None = None,
    untokenized: bool = False,
    pair_features: str = "senteval",
    on_task: Callable[[str, dict, float], None] | None = None,
    probing_dir: str | Path | None = None,
    protocol: str = "senteval",
    device: str | None = None,
) -> dict:
    """Score ``embed`` on SentEval ``tasks`` read from ``data_dir``.

    ``tasks`` are names (``"STS12,MR"``, a group, or a list; built from ``data_dir``,
    ``untokenized``, ``pair_features`` and ``probing_dir`` by :func:`select_tasks`) or tasks
    :func:`select_tasks` already built for the same ``protocol`` (their own files and settings
    are used, and those four arguments are not needed).

    Returns ``{"tasks": {TASK: SentEval-named fields}, "aggregate": {...}, "aggregate_dev": {...},
    "groups": {...}, "protocol": {...}}``;
    deterministic given ``seed`` (and the embeddings). ``settings`` overrides the classifier
    settings (default: the paper's, or SentEval's prototyping ones with ``prototyping``); the
    result's ``protocol.senteval`` names the settings that ran (``paper``, ``prototyping`` or
    ``custom``, with ``changed_from_paper``). ``device`` is where ImageCaptionRetrieval's ranking
    model runs (``settings.ranking_device``; default: CUDA when available, as SentEval).
    ``protocol="mteb"`` scores STS12-16, STS-B and SICK-R as MTEB does (``declutr.evaluation.mteb``).
    ``protocol`` in the result also records how ``embed`` pools and normalises when it can say
    (an :class:`~declutr.Encoder` can; ``None`` for a plain function)."""
    if tasks and not isinstance(tasks, str) and all(isinstance(task, SentEvalTask) for task in tasks):
        built = list(tasks)
    elif data_dir is None:
        raise DeclutrError("evaluate needs data_dir (SentEval's data/downstream folder) to build tasks given by name")
    else:
        built = select_tasks(tasks, data_dir, untokenized, pair_features, protocol, probing_dir)
    if protocol != "mteb":  # one result records one protocol
        untokenized, pair_features = (_shared_setting(built, name) for name in ("untokenized", "pair_features"))
    settings = settings or (ClassifierSettings.prototyping() if prototyping else ClassifierSettings.paper())
    if device is not None:
        settings = settings.but(ranking_device=device)
    results: dict[str, dict] = {}
    for task in built:
        started = time.perf_counter()
        results[task.name] = run_mteb_task(task, embed) if protocol == "mteb" else task.run(embed, settings, seed)
        elapsed = time.perf_counter() - started
        logger.info("%s done in %.1fs", task.name, elapsed)
        if on_task is not None:
            on_task(task.name, results[task.name], elapsed)
    if protocol == "mteb":
        return {
            "tasks": results,
            "aggregate": aggregate_mteb(results),
            "protocol": {**MTEB_PROTOCOL, **embedding_protocol(embed)},
        }
    return {
        "tasks": results,
        "aggregate": aggregate(results),
        "aggregate_dev": aggregate_dev(results),
        "groups": groups(results),
        "protocol": {
            "name": "senteval",
            "senteval": settings.preset(),
            **settings.describe(),
            "seed": seed,
            "sts_text": "untokenised original/ files" if untokenized else "SentEval tokenised files",
            "pair_features": PAIR_FEATURES[pair_features],
            "relatedness_features": "[|u-v|, u*v]",
            "aggregate": "STS12-16 all.spearman.mean*100; STS-B/SICK-R test spearman*100 (regressor; dev: "
            "devpearson*100); classification test acc (dev: devacc); MRPC (acc+f1)/2; "
            "ImageCaptionRetrieval mean of R@1/5/10 both directions (dev: devacc/6); groups "
            "downstream (18 tasks), downstream (-SNLI) (17), probing (10) = means of the tasks run",
            **embedding_protocol(embed),
        },
    }


def _shared_setting(tasks: list[SentEvalTask], setting: str):
    """The value of ``setting`` (``untokenized``, ``pair_features``) that all ``tasks`` share."""
    values = {getattr(task, setting) for task in tasks}
    if len(values) != 1:
        raise DeclutrError(f"the tasks differ in {setting} ({sorted(map(str, values))}); evaluate them separately")
    return values.pop()


def embedding_protocol(embed: Embed) -> dict:
    """How ``embed`` pools and whether its vectors are L2-normalised (``Encoder.describe()``);
    ``None`` values when ``embed`` cannot say (a plain function)."""
    describe = getattr(embed, "describe", None) or getattr(getattr(embed, "__self__", None), "describe", None)
    if describe is None:
        return {"pooling": None, "normalized": None}
    return describe()


def protocol_header(protocol: dict) -> str:
    """The table's first line: the protocol, the pooling and whether vectors were normalised."""
    if protocol.get("name") == "mteb":
        text = "protocol: MTEB STS (cosine, all scored pairs pooled)"
    else:
        text = (
            f"protocol: SentEval ({protocol.get('senteval', 'paper')}, pair features {protocol.get('pair_features')})"
        )
    pooling = protocol.get("pooling")
    if pooling is None:
        return f"{text}; pooling and normalisation: unknown (a plain embedding function)"
    name = pooling["type"] + ("" if not pooling.get("exclude_special_tokens") else ", special tokens excluded")
    projection = " + projection head" if protocol.get("projection") else ""
    normalized = "yes" if protocol.get("normalized") else "no, raw vectors"
    reason = {"on": "--normalize", "off": "--no-normalize"}.get(protocol.get("normalize"), protocol.get("normalize"))
    precision = f"; precision: {protocol['precision']}" if protocol.get("precision") else ""
    return f"{text}; pooling: {name}{projection}; normalised: {normalized} ({reason}){precision}"


def headline(result: dict) -> str:
    """The one-line summary of a task's result for the table."""
    if "subsets" in result:  # MTEB's protocol
        return (
            f"cosine spearman {100 * result['spearman']:.2f} pearson {100 * result['pearson']:.2f} "
            f"over {result['nsamples']} pooled pairs"
        )
    if "all" in result:
        s, p = result["all"]["spearman"], result["all"]["pearson"]
        return f"spearman mean {100 * s['mean']:.2f} (wmean {100 * s['wmean']:.2f}); pearson mean {100 * p['mean']:.2f}"
    if "spearman" in result:
        cos = result.get("cosine", {})
        text = f"regressor spearman {100 * result['spearman']:.2f} pearson {100 * result['pearson']:.2f}"
        if cos:
            text += f"; cosine spearman {100 * cos['spearman']:.2f} pearson {100 * cos['pearson']:.2f}"
        return text
    if isinstance(result.get("acc"), list):  # ImageCaptionRetrieval
        return "; ".join(
            f"{direction} R@1/5/10 {r1:.1f}/{r5:.1f}/{r10:.1f} medr {medr:.0f}"
            for direction, (r1, r5, r10, medr) in zip(("i2t", "t2i"), result["acc"])
        )
    text = f"acc {result['acc']:.2f} (dev {result['devacc']:.2f})"
    if "f1" in result:
        text += f"; f1 {result['f1']:.2f}"
    return text


def format_table(output: dict) -> str:
    """A plain-text table: task, DeCLUTR aggregate score, SentEval's fields; then each group's
    mean with how many of its tasks ran."""
    rows = [("task", "score", "details")]
    for task, result in output["tasks"].items():
        score = output["aggregate"].get(task)
        rows.append((task, "" if score is None else f"{score:.2f}", headline(result)))
    for group, summary in output.get("groups", {}).items():
        partial = "" if not summary["missing"] else f" (partial: {', '.join(summary['missing'])} not run)"
        rows.append(
            (group, f"{summary['test']:.2f}", f"mean of {summary['coverage']}; dev {summary['dev']:.2f}{partial}")
        )
    if "average" in output["aggregate"]:
        rows.append(
            (
                "average",
                f"{output['aggregate']['average']:.2f}",
                f"mean of the task scores ({output['aggregate']['average_tasks']} MTEB STS tasks)",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    if "protocol" in output:
        lines.insert(0, protocol_header(output["protocol"]))
    return "\n".join(lines)
