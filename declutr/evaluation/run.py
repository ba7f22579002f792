"""Run SentEval tasks on an embedding function; DeCLUTR's aggregation; the results table."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from declutr.core.errors import DeclutrError, closest
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.tasks import PAIR_FEATURES, Embed, SentEvalTask

logger = logging.getLogger(__name__)

#: SentEval's downstream tasks in the paper's order
DOWNSTREAM_TASKS = (
    "STS12",
    "STS13",
    "STS14",
    "STS15",
    "STS16",
    "STSBenchmark",
    "SICKRelatedness",
    "MR",
    "CR",
    "SUBJ",
    "MPQA",
    "SST2",
    "SST5",
    "TREC",
    "MRPC",
    "SICKEntailment",
)


def parse_tasks(spec: str | list[str]) -> list[str]:
    """``"STS12,MR"`` (or a list) -> task names; ``all``/``downstream`` = every downstream task."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise DeclutrError("no tasks given; e.g. --tasks STS12,STSBenchmark,MR")
    available = SentEvalTask.list_available()
    result = []
    for name in names:
        if name.lower() in ("all", "downstream"):
            result.extend(DOWNSTREAM_TASKS)
            continue
        if name not in available:
            by_case = {a.lower(): a for a in available}
            if name.lower() in by_case:
                name = by_case[name.lower()]
            else:
                suggestion = closest(name, available)
                hint = f'; did you mean "{suggestion}"?' if suggestion else ""
                raise DeclutrError(f'unknown task "{name}"{hint} available: {", ".join(available)}')
        result.append(name)
    return list(dict.fromkeys(result))


def build_tasks(
    names: list[str], data_dir: str | Path, untokenized: bool = False, pair_features: str = "senteval"
) -> list[SentEvalTask]:
    """The tasks, after checking that ``data_dir`` holds every file they need (one error listing all)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DeclutrError(f"data directory {data_dir} does not exist (expected SentEval's data/downstream layout)")
    if pair_features not in PAIR_FEATURES:
        raise DeclutrError(f'unknown pair features "{pair_features}"; choose one of: {", ".join(PAIR_FEATURES)}')
    tasks = [
        SentEvalTask.by_name(name)(str(data_dir), untokenized=untokenized, pair_features=pair_features)
        for name in names
    ]
    missing = [f"{task.name}: {path}" for task in tasks for path in task.missing_files()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DeclutrError(f"missing SentEval data files under {data_dir}: {'; '.join(missing[:3])}{more}")
    return tasks


def aggregate(results: dict[str, dict]) -> dict[str, float]:
    """DeCLUTR's aggregation: one score per task (x100 for correlations) and their mean, "downstream".

    STS12-16: ``all.spearman.mean``; STS-B and SICK-R: test Spearman of SentEval's regressor;
    classification: test accuracy; MRPC: the mean of accuracy and F1."""
    scores: dict[str, float] = {}
    for task, result in results.items():
        if "all" in result:
            scores[task] = 100 * result["all"]["spearman"]["mean"]
        elif "spearman" in result:
            scores[task] = 100 * result["spearman"]
        elif "f1" in result:
            scores[task] = (result["acc"] + result["f1"]) / 2
        elif "acc" in result:
            scores[task] = result["acc"]
    scores = {task: round(score, 2) for task, score in scores.items()}
    if scores:
        scores["downstream"] = round(sum(scores.values()) / len(scores), 2)
    return scores


def evaluate(
    embed: Embed,
    tasks: str | list[str],
    data_dir: str | Path,
    seed: int = 1111,
    prototyping: bool = False,
    settings: ClassifierSettings | None = None,
    untokenized: bool = False,
    pair_features: str = "senteval",
    on_task: Callable[[str, dict, float], None] | None = None,
) -> dict:
    """Score ``embed`` on SentEval ``tasks`` read from ``data_dir``.

    Returns ``{"tasks": {TASK: SentEval-named fields}, "aggregate": {...}, "protocol": {...}}``;
    deterministic given ``seed`` (and the embeddings). ``settings`` overrides the classifier
    settings (default: the paper's, or SentEval's prototyping ones with ``prototyping``)."""
    names = parse_tasks(tasks)
    built = build_tasks(names, data_dir, untokenized=untokenized, pair_features=pair_features)
    settings = settings or (ClassifierSettings.prototyping() if prototyping else ClassifierSettings.paper())
    results: dict[str, dict] = {}
    for task in built:
        started = time.perf_counter()
        results[task.name] = task.run(embed, settings, seed)
        elapsed = time.perf_counter() - started
        logger.info("%s done in %.1fs", task.name, elapsed)
        if on_task is not None:
            on_task(task.name, results[task.name], elapsed)
    return {
        "tasks": results,
        "aggregate": aggregate(results),
        "protocol": {
            "senteval": "prototyping" if prototyping else "paper",
            **settings.describe(),
            "seed": seed,
            "sts_text": "untokenised original/ files" if untokenized else "SentEval tokenised files",
            "pair_features": PAIR_FEATURES[pair_features],
            "relatedness_features": "[|u-v|, u*v]",
            "aggregate": "STS12-16 all.spearman.mean*100; STS-B/SICK-R test spearman*100 (regressor); "
            "classification test acc; MRPC (acc+f1)/2; downstream = mean",
        },
    }


def headline(result: dict) -> str:
    """The one-line summary of a task's result for the table."""
    if "all" in result:
        s, p = result["all"]["spearman"], result["all"]["pearson"]
        return f"spearman mean {100 * s['mean']:.2f} (wmean {100 * s['wmean']:.2f}); pearson mean {100 * p['mean']:.2f}"
    if "spearman" in result:
        cos = result.get("cosine", {})
        text = f"regressor spearman {100 * result['spearman']:.2f} pearson {100 * result['pearson']:.2f}"
        if cos:
            text += f"; cosine spearman {100 * cos['spearman']:.2f} pearson {100 * cos['pearson']:.2f}"
        return text
    text = f"acc {result['acc']:.2f} (dev {result['devacc']:.2f})"
    if "f1" in result:
        text += f"; f1 {result['f1']:.2f}"
    return text


def format_table(output: dict) -> str:
    """A plain-text table: task, DeCLUTR aggregate score, SentEval's fields."""
    rows = [("task", "score", "details")]
    for task, result in output["tasks"].items():
        score = output["aggregate"].get(task)
        rows.append((task, "" if score is None else f"{score:.2f}", headline(result)))
    if "downstream" in output["aggregate"]:
        rows.append(("downstream", f"{output['aggregate']['downstream']:.2f}", "mean of the task scores"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
