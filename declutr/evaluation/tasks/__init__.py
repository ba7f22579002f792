"""SentEval's tasks, read from SentEval's ``data/downstream`` (and ``data/probing``) layout.

Each task is a ``SentEvalTask`` registered under SentEval's name (``STS12`` ... ``SICKEntailment``,
``SNLI``, ``ImageCaptionRetrieval``, the ten probing tasks ``Length`` ... ``CoordinationInversion``);
a plugin can register more. A task reads its files exactly as SentEval does (same encodings,
same whitespace tokenisation joined back with single spaces, same length sorting, which fixes
the order the seeded classifiers see), embeds every distinct sentence once through ``embed``,
and returns SentEval-named fields.

``embed`` is any ``Callable[[list[str]], np.ndarray]``, e.g. a :class:`declutr.Encoder`.

One module per family: ``base`` (the ``SentEvalTask`` base and shared helpers), ``sts``
(STS12-16, STS-B, SICK-R), ``classification`` (MR ... TREC), ``pairs`` (MRPC, SICK-E, SNLI),
``retrieval`` (ImageCaptionRetrieval), ``probing``; ``names`` parses ``--tasks``. Importing this
package registers every task.
"""

from declutr.evaluation.tasks.base import (
    DOWNLOAD_SCRIPT,
    PAIR_FEATURES,
    SPLITS,
    Embed,
    SentEvalTask,
    correlations,
    cosine_rows,
    embed_all,
    length_sorted,
    pair_features,
    parse_score,
    senteval_tokens,
    split_result,
    tab_fields,
)
from declutr.evaluation.tasks.classification import (
    CR,
    MPQA,
    MR,
    SST2,
    SST5,
    SUBJ,
    TREC,
    BinaryTask,
    SSTTask,
    sorted_by_length,
)
from declutr.evaluation.tasks.names import DOWNSTREAM_TASKS, PROBING_TASKS, TASK_GROUPS, parse_tasks, split_spec
from declutr.evaluation.tasks.pairs import MRPC, SNLI, PairClassificationTask, SICKEntailment, label_parser
from declutr.evaluation.tasks.probing import PROBING_FILES, ProbingTask
from declutr.evaluation.tasks.retrieval import ImageCaptionRetrieval, load_pickle
from declutr.evaluation.tasks.sts import (
    STS12,
    STS13,
    STS14,
    STS15,
    STS16,
    RelatednessTask,
    SICKRelatedness,
    STSBenchmark,
    STSTask,
)

__all__ = [
    "CR",
    "DOWNLOAD_SCRIPT",
    "DOWNSTREAM_TASKS",
    "MPQA",
    "MR",
    "MRPC",
    "PAIR_FEATURES",
    "PROBING_FILES",
    "PROBING_TASKS",
    "SNLI",
    "SPLITS",
    "SST2",
    "SST5",
    "STS12",
    "STS13",
    "STS14",
    "STS15",
    "STS16",
    "SUBJ",
    "TASK_GROUPS",
    "TREC",
    "BinaryTask",
    "Embed",
    "ImageCaptionRetrieval",
    "PairClassificationTask",
    "ProbingTask",
    "RelatednessTask",
    "SICKEntailment",
    "SICKRelatedness",
    "SSTTask",
    "STSBenchmark",
    "STSTask",
    "SentEvalTask",
    "correlations",
    "cosine_rows",
    "embed_all",
    "label_parser",
    "length_sorted",
    "load_pickle",
    "pair_features",
    "parse_score",
    "parse_tasks",
    "senteval_tokens",
    "sorted_by_length",
    "split_result",
    "split_spec",
    "tab_fields",
]
