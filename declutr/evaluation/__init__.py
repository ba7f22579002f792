"""SentEval-compatible evaluation without the SentEval toolkit.

``evaluate(embed, "STS12,MR", data_dir)`` scores any ``Callable[[list[str]], np.ndarray]`` (such
as a :class:`declutr.Encoder`) on SentEval's tasks with SentEval's protocol; see
``docs/evaluation.md``. Imports numpy, never torch, until a classifier runs.
"""

from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.run import (
    GROUPS,
    aggregate,
    aggregate_dev,
    evaluate,
    format_table,
    groups,
    select_tasks,
)
from declutr.evaluation.tasks.base import SentEvalTask
from declutr.evaluation.tasks.names import DOWNSTREAM_TASKS, PROBING_TASKS, parse_tasks

__all__ = [
    "DOWNSTREAM_TASKS",
    "GROUPS",
    "PROBING_TASKS",
    "ClassifierSettings",
    "SentEvalTask",
    "aggregate",
    "aggregate_dev",
    "evaluate",
    "format_table",
    "groups",
    "parse_tasks",
    "select_tasks",
]
