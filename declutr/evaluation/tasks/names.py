"""Task names as ``--tasks`` takes them: SentEval's names, case-insensitively, and the groups
``downstream`` (the 18 downstream tasks), ``probing`` (the 10 probing tasks) and ``all``."""

from __future__ import annotations

from declutr.core.errors import DeclutrError, closest
from declutr.evaluation.tasks.base import SentEvalTask
from declutr.evaluation.tasks.probing import PROBING_FILES

#: SentEval's downstream tasks in the paper's order (DeCLUTR's "downstream" group: 18 tasks)
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
    "SNLI",
    "ImageCaptionRetrieval",
)
#: SentEval's 10 probing tasks (data/probing)
PROBING_TASKS = tuple(PROBING_FILES)
#: the group names ``--tasks`` takes
TASK_GROUPS = {"downstream": DOWNSTREAM_TASKS, "probing": PROBING_TASKS, "all": DOWNSTREAM_TASKS + PROBING_TASKS}


def split_spec(spec: str | list[str]) -> list[str]:
    """``"STS12, MR"`` (or a list) -> its non-empty, stripped names."""
    return [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]


def parse_tasks(spec: str | list[str]) -> list[str]:
    """``"STS12,MR"`` (or a list) -> task names; the groups ``downstream`` (18 tasks), ``probing``
    (10) and ``all`` (both) expand to their tasks."""
    names = split_spec(spec)
    if not names:
        raise DeclutrError("no tasks given; e.g. --tasks STS12,STSBenchmark,MR or --tasks downstream")
    available = SentEvalTask.list_available()
    result = []
    for name in names:
        if name.lower() in TASK_GROUPS:
            result.extend(TASK_GROUPS[name.lower()])
            continue
        if name not in available:
            by_case = {a.lower(): a for a in available}
            if name.lower() in by_case:
                name = by_case[name.lower()]
            else:
                suggestion = closest(name, [*available, *TASK_GROUPS])
                hint = f'; did you mean "{suggestion}"?' if suggestion else ""
                raise DeclutrError(
                    f'unknown task "{name}"{hint} available: {", ".join(available)} '
                    f"or a group: {', '.join(TASK_GROUPS)}"
                )
        result.append(name)
    return list(dict.fromkeys(result))
