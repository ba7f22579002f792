"""The model's fast tokenizer, used on the ids level: tokenize whole texts once, slice ids, wrap.

Spans are slices of a document's token ids (no special tokens, no truncation); each becomes a
model input by adding the tokenizer's own special tokens (``<s> ... </s>``, ``[CLS] ... [SEP]``)
and truncating the content to ``max_length`` minus their number. No decode/re-encode round trip.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from declutr.core.errors import DeclutrError

#: what ``model_max_length`` holds when a tokenizer does not know its model's limit
_UNKNOWN_MAX = 10**6
_FALLBACK_MAX = 512


def check_model_name(name: str) -> bool:
    """Whether ``name`` is a local directory; a path that does not exist is a ``DeclutrError``
    (transformers would answer "Repo id must be in the form ..."). A Hugging Face name is
    ``NAME`` or ``ORG/NAME``."""
    if os.path.isdir(name):
        return True
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or os.path.exists(name):
        raise DeclutrError(f"{name}: no such model directory (a Hugging Face model is named NAME or ORG/NAME)")
    return False


def plain_backend(backend_json: str):
    """A Rust tokenizer from its JSON, with truncation and padding off."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(backend_json)
    backend.no_truncation()
    backend.no_padding()
    return backend


class TransformerTokenizer:
    """A Hugging Face fast tokenizer plus the few operations the data pipeline needs.

    # Parameters
    model_name: a Hugging Face model name or a local directory with a fast tokenizer.
    max_length: the longest model input in tokens, special tokens included (null: the
        tokenizer's ``model_max_length``, 512 for RoBERTa, i.e. 510 content tokens).
    """

    def __init__(self, model_name: str, max_length: int | None = None):
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        from transformers import AutoTokenizer

        check_model_name(str(model_name))
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_name, use_fast=True)
        except (OSError, ValueError) as error:
            raise DeclutrError(f'cannot load the tokenizer of "{model_name}": {str(error).splitlines()[0]}') from None
        self._setup(tokenizer, model_name, max_length)

    @classmethod
    def from_tokenizer(cls, tokenizer, max_length: int | None = None) -> TransformerTokenizer:
        """Wrap an already loaded ``PreTrainedTokenizerFast`` (for use from plain Python)."""
        self = cls.__new__(cls)
        self._setup(tokenizer, getattr(tokenizer, "name_or_path", ""), max_length)
        return self

    def _setup(self, tokenizer, model_name: str, max_length: int | None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DeclutrError(f'"{model_name}" has no fast tokenizer (tokenizer.json); declutr needs one')
        self.hf = tokenizer
        self.model_name = model_name
        model_max = tokenizer.model_max_length
        model_max = _FALLBACK_MAX if model_max is None or model_max >= _UNKNOWN_MAX else int(model_max)
        self.max_length = int(max_length) if max_length is not None else model_max
        self.prefix, self.suffix = self._special_tokens()
        if self.max_length <= len(self.prefix) + len(self.suffix):
            raise ValueError(f"max_length {self.max_length} leaves no room for content after the special tokens")
        self.max_content = self.max_length - len(self.prefix) - len(self.suffix)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.id_dtype = np.uint16 if self.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
        backend_json = tokenizer.backend_tokenizer.to_str()
        self.backend_json = backend_json
        self._backend = None

    def _special_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids the tokenizer puts before and after a single sequence."""
        content = self.hf("a", add_special_tokens=False)["input_ids"]
        full = self.hf("a", add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(content) + 1):
            if full[start : start + len(content)] == content:
                return np.asarray(full[:start], dtype=np.int64), np.asarray(
                    full[start + len(content) :], dtype=np.int64
                )
        raise DeclutrError(f'cannot find where "{self.model_name}" puts its special tokens')

    @property
    def backend(self):
        """A private copy of the Rust tokenizer with truncation and padding off (picklable)."""
        if self._backend is None:
            self._backend = plain_backend(self.backend_json)
        return self._backend

    def fingerprint(self) -> str:
        """Identifies the tokenization (part of the token cache key)."""
        return hashlib.sha256(self.backend_json.encode("utf-8")).hexdigest()[:16]

    def encode_batch(self, texts: list[str]) -> list[Any]:
        """Tokenize whole texts without special tokens or truncation (``tokenizers.Encoding`` s)."""
        return self.backend.encode_batch(texts, add_special_tokens=False)

    def wrap(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, special_tokens_mask)`` for one span: specials added, content truncated."""
        content = np.asarray(ids[: self.max_content], dtype=np.int64)
        input_ids = np.concatenate([self.prefix, content, self.suffix])
        special = np.zeros(len(input_ids), dtype=np.int64)
        special[: len(self.prefix)] = 1
        if len(self.suffix):
            special[-len(self.suffix) :] = 1
        return input_ids, special

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_backend"] = None
        return state
