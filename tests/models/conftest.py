"""Tokenizers of the tiny checkpoints."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def roberta_tokenizer(tiny_roberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_roberta))


@pytest.fixture(scope="session")
def bert_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))
