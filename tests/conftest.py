"""Session-wide fixtures: tiny local checkpoints and documents, built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "fixtures"))

SHARED_DATA = TESTS.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    """A random 2-layer RoBERTa masked-LM checkpoint with a byte-level BPE tokenizer."""
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-roberta"), "roberta")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT masked-LM checkpoint with a WordPiece tokenizer."""
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """Twelve deterministic pseudo-English documents of about 700 words."""
    from tiny import make_documents

    return make_documents()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
