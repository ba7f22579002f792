"""SentEval-compatible evaluation without the SentEval toolkit.

``evaluate(embed, "STS12,MR", data_dir)`` scores any ``Callable[[list[str]], np.ndarray]`` (such
as a :class:`declutr.Encoder`) on SentEval's tasks with SentEval's protocol; see
``docs/evaluation.md``. Imports numpy, never torch, until a classifier runs.
"""

from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.run import (
    DOWNSTREAM_TASKS,
    aggregate,
    evaluate,
    format_table,
    parse_tasks,
)
from declutr.evaluation.tasks import SentEvalTask

__all__ = [
    "DOWNSTREAM_TASKS",
    "ClassifierSettings",
    "SentEvalTask",
    "aggregate",
    "evaluate",
    "format_table",
    "parse_tasks",
]
