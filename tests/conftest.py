"""Session-wide fixtures: tiny local checkpoints and documents, built once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "fixtures"))

SHARED_DATA = TESTS.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    """A random 2-layer RoBERTa masked-LM checkpoint with a byte-level BPE tokenizer."""
    from declutr.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-roberta"), "roberta")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT masked-LM checkpoint with a WordPiece tokenizer."""
    from declutr.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """Twelve deterministic pseudo-English documents of about 700 words."""
    from declutr.testing import make_documents

    return make_documents()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def documents_file(documents, tmp_path_factory) -> Path:
    """``documents`` as a JSON-lines corpus (``{"id": "doc<i>", "text": ...}`` per line)."""
    path = tmp_path_factory.mktemp("corpus") / "documents.jsonl"
    path.write_text("".join(json.dumps({"id": f"doc{i}", "text": d}) + "\n" for i, d in enumerate(documents)))
    return path


@pytest.fixture(scope="session", autouse=True)
def corpus_cache(tmp_path_factory):
    """Corpus indexes go to the session's temporary folder, not ``~/.cache/declutr`` (also for
    the ``declutr`` processes tests start, which inherit the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DECLUTR_CACHE", str(tmp_path_factory.mktemp("declutr-cache")))
        yield
