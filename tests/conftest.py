"""Session-wide fixtures: tiny local checkpoints and documents, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
def roberta_tokenizer(tiny_roberta):
    """The fast tokenizer of ``tiny_roberta``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_roberta))


@pytest.fixture(scope="session")
def bert_tokenizer(tiny_bert):
    """The fast tokenizer of ``tiny_bert``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


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
