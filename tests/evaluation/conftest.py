"""Session fixtures of the evaluation tests: tiny SentEval folders and every task's result on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from declutr.evaluation import evaluate
from tests.evaluation.evalhelpers import FAST, bag_of_words
from tests.evaluation.senteval_files import write_all


@pytest.fixture(scope="session")
def senteval_dir(tmp_path_factory) -> Path:
    """SentEval's ``data/downstream`` folder (``data/probing`` beside it) with tiny files."""
    return write_all(tmp_path_factory.mktemp("senteval") / "downstream")


@pytest.fixture(scope="session")
def all_results(senteval_dir):
    """Every task of ``--tasks all`` on the tiny files, with a bag-of-words embedding."""
    return evaluate(bag_of_words, "all", senteval_dir, settings=FAST)
