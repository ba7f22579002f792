"""Train a fast tokenizer on a corpus: the vocabulary of a model pretrained from scratch.

``train_tokenizer(texts, kind="wordpiece", vocab_size=8192)`` gives a
``PreTrainedTokenizerFast`` that declutr (and transformers) use like any checkpoint's:
WordPiece with BERT's normaliser and ``[CLS] ... [SEP]`` (``kind="wordpiece"``), or byte-level
BPE with RoBERTa's ``<s> ... </s>`` (``kind="bpe"``). ``declutr tokenizer DATA -o DIR`` reads
the documents through the same document sources as training (any format ``declutr train``
reads) and saves the tokenizer folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

Kind = Literal["wordpiece", "bpe"]
KINDS = ("wordpiece", "bpe")
#: the special tokens of each kind, in id order (padding first for WordPiece, as BERT's)
SPECIAL_TOKENS = {
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "bpe": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}


def train_tokenizer(
    texts: Iterable[str],
    kind: Kind = "wordpiece",
    vocab_size: int = 8192,
    lowercase: bool = True,
    model_max_length: int = 512,
    min_frequency: int = 2,
):
    """A fast tokenizer trained on ``texts`` (deterministic for the same texts and settings).

    ``lowercase`` applies to WordPiece only (byte-level BPE keeps case, as RoBERTa's);
    ``model_max_length`` is the longest input the model it serves takes, special tokens included.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast, RobertaTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    specials = SPECIAL_TOKENS[kind]
    if vocab_size <= len(specials):
        raise ValueError(f"vocab_size must exceed the {len(specials)} special tokens, got {vocab_size}")
    if kind == "bpe":
        backend = Tokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer)
        backend.post_processor = processors.RobertaProcessing(
            ("</s>", backend.token_to_id("</s>")), ("<s>", backend.token_to_id("<s>"))
        )
        return RobertaTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length)
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
    )
    backend.train_from_iterator(texts, trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length, do_lower_case=lowercase)


def corpus_texts(data_path: str, fields: str | list[str] = "text") -> Iterator[str]:
    """The usable texts of ``data_path`` as training reads them (any format of ``auto``; empty
    and undecodable documents skipped)."""
    from declutr.data.sources import AutoFormat

    for record in AutoFormat(fields=fields).read(data_path):
        if record.texts is not None:
            yield from record.texts
