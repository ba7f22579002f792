"""``declutr tokenizer DATA -o DIR``: train a WordPiece or BPE vocabulary on a corpus.

The folder it writes is a tokenizer like any checkpoint's (``tokenizer.json`` and its config):
name it as ``dataset_reader.tokenizer.model_name`` of a from-scratch experiment
(``training_config/pretrain_small.jsonnet``).
"""

from __future__ import annotations

import json
import time

import click


@click.command("tokenizer")
@click.argument("data_path", metavar="DATA")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to write (a new one).")
@click.option("--vocab-size", default=8192, show_default=True, type=click.IntRange(min=8), help="Tokens in all.")
@click.option(
    "--kind", type=click.Choice(["wordpiece", "bpe"]), default="wordpiece", show_default=True,
    help="WordPiece with BERT's normaliser and [CLS]/[SEP], or byte-level BPE with RoBERTa's <s>/</s>.",
)  # fmt: skip
@click.option("--cased", is_flag=True, help="Keep case (WordPiece lower-cases by default; BPE always keeps it).")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=3),
              help="The longest model input it serves, special tokens included (model_max_length).")  # fmt: skip
@click.option("--min-frequency", default=2, show_default=True, type=click.IntRange(min=1),
              help="Merges seen fewer times are not learned.")  # fmt: skip
@click.option("--field", "fields", default="text", show_default=True, help="The JSON/CSV text field.")
def command(data_path, output, vocab_size, kind, cased, max_length, min_frequency, fields):
    """Train a tokenizer on the documents of DATA (a file, folder or glob, any format `declutr
    train` reads) and save it to OUTPUT, with a record of how it was made (vocabulary.json)."""
    from pathlib import Path

    from declutr.core.atomic import staged_directory
    from declutr.core.errors import DeclutrError
    from declutr.data.sources import check_data_path
    from declutr.data.vocabulary import corpus_texts, train_tokenizer

    target = Path(output)
    if target.exists():
        raise DeclutrError(f"{output}: already exists (choose a new folder)")
    check_data_path(data_path)  # a missing path is one line before any work
    started = time.time()
    counted = [0]

    def texts():
        for text in corpus_texts(data_path, fields):
            counted[0] += 1
            yield text

    tokenizer = train_tokenizer(texts(), kind, vocab_size, lowercase=not cased, model_max_length=max_length,
                                min_frequency=min_frequency)  # fmt: skip
    if counted[0] == 0:
        raise DeclutrError(f"{data_path}: no usable documents to train a tokenizer on")
    with staged_directory(target) as staging:
        tokenizer.save_pretrained(str(staging))
        record = {
            "data_path": str(data_path),
            "documents": counted[0],
            "kind": kind,
            "vocab_size": len(tokenizer),
            "lowercase": kind == "wordpiece" and not cased,
            "model_max_length": max_length,
            "min_frequency": min_frequency,
        }
        (staging / "vocabulary.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    click.echo(
        f"{output}: {kind} tokenizer of {len(tokenizer)} tokens from {counted[0]} documents "
        f"in {time.time() - started:.0f} s",
        err=True,
    )
