#!/usr/bin/env python
"""Benchmark of the data pipeline (not a test): spans/s and peak memory.

    python benchmarks/bench_data.py --corpus ../shared/data/gutenberg_docs/train.jsonl \
        --generate-gb 1 --workdir /tmp/declutr-bench

For each corpus it runs, each in a fresh process so that peak RSS (``ru_maxrss``) belongs to
one phase: (1) building the corpus index (tokenizing every document once), (2) iterating
batches of the whole pipeline (read ids, sample spans, slice, add special tokens, mask
anchors, pad) with the paper's sampler (2 anchors, 2 positives, spans of 32-512 tokens,
4 documents per batch), with 0 and with ``--workers`` worker processes. ``--generate-gb``
adds a generated corpus of that size (the corpus's documents repeated with a distinct prefix)
under ``--workdir``, deleted afterwards unless ``--keep``.

With no ``--tokenizer`` (no model hub here), a byte-level BPE tokenizer with a 32k vocabulary
(RoBERTa-like) is trained on the first 4 MB of the corpus, so tokens per byte are realistic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SAMPLER = {"type": "declutr", "num_anchors": 2, "num_positives": 2, "min_span_len": 32, "max_span_len": 512}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_tokenizer(corpus: Path, directory: Path) -> Path:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import RobertaTokenizerFast

    from declutr.data.sources import JsonLines, TextLines

    if (directory / "tokenizer.json").is_file():
        return directory
    source = JsonLines() if corpus.name.removesuffix(".gz").endswith(".jsonl") else TextLines()
    texts, size = [], 0
    for record in source.read(corpus):
        if record.texts:
            texts.append(record.texts[0])
            size += len(record.texts[0])
        if size > 4 << 20:
            break
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=32000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    RobertaTokenizerFast(tokenizer_object=backend, model_max_length=512).save_pretrained(directory)
    return directory


def build(tokenizer: str, corpus: str, cache: str, workers: int, progress: bool, max_length: int | None = None):
    """The paper's pipeline (``SAMPLER``, BERT masking, 4 documents a batch) over ``corpus``."""
    from declutr.core import build as build_component
    from declutr.data import DataLoader, DatasetReader

    reader = build_component(
        DatasetReader,
        {
            "type": "declutr",
            "tokenizer": {"model_name": tokenizer, "max_length": max_length},
            "span_sampler": SAMPLER,
            "cache_directory": cache,
        },
    )
    extras = {"reader": reader, "data_path": corpus, "seed": 13, "rank": 0, "world_size": 1}
    config = {"batch_size": 4, "drop_last": True, "num_workers": workers, "progress": progress}
    return build_component(DataLoader, config, extras=extras)


def phase(args) -> None:
    """One measured phase in this process; prints one JSON line."""
    started = time.perf_counter()
    loader = build(args.tokenizer, args.corpus, args.cache, args.workers, progress=False)
    result = {
        "phase": args.phase,
        "corpus": args.corpus,
        "corpus_mb": sum(Path(f).stat().st_size for f in loader.index.files) / 2**20,
        "documents": loader.stats()["documents"],
        "documents_used": loader.stats()["documents_used"],
        "tokens": int(loader.index.token_offsets[-1]),
    }
    if args.phase == "index":
        result["seconds"] = time.perf_counter() - started
    else:
        spans = batches = 0
        started = time.perf_counter()
        for batch in loader:
            spans += batch["anchors"]["input_ids"].shape[0] + batch["positives"]["input_ids"].shape[0]
            batches += 1
            if batches >= args.max_batches:
                break
        seconds = time.perf_counter() - started
        result.update(
            workers=args.workers, batches=batches, spans=spans, seconds=seconds, spans_per_second=spans / seconds
        )
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def run_phase(
    name: str, corpus: Path, tokenizer: Path, cache: Path, workers: int = 0, max_batches: int = 10**9
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--corpus",
        str(corpus),
        "--tokenizer",
        str(tokenizer),
        "--cache",
        str(cache),
        "--workers",
        str(workers),
        "--max-batches",
        str(max_batches),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def generate(corpus: Path, target: Path, gigabytes: float) -> Path:
    """A one-document-per-line corpus of ``gigabytes`` made of the corpus's documents, each copy prefixed."""
    from declutr.data.sources import JsonLines, TextLines

    source = JsonLines() if corpus.name.removesuffix(".gz").endswith(".jsonl") else TextLines()
    limit, written, copy = gigabytes * 2**30, 0, 0
    with open(target, "w", encoding="utf-8") as handle:
        while written < limit:
            for record in source.read(corpus):
                if record.texts:
                    line = f"copy {copy}: {record.texts[0]}\n"
                    handle.write(line)
                    written += len(line.encode("utf-8"))
                    if written >= limit:
                        break
            copy += 1
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", default=str(Path(__file__).resolve().parents[2] / "shared/data/gutenberg_docs/train.jsonl")
    )
    parser.add_argument("--tokenizer", default=None, help="a model name or directory (default: train a 32k BPE)")
    parser.add_argument("--workdir", default="/tmp/declutr-bench")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generate-gb", type=float, default=0.0)
    parser.add_argument(
        "--max-batches", type=int, default=400, help="batches per iteration run on the generated corpus"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated corpus and caches")
    parser.add_argument("--phase", choices=("index", "iterate"), help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase(args)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = Path(args.corpus)
    tokenizer = Path(args.tokenizer) if args.tokenizer else train_tokenizer(corpus, workdir / "tokenizer")
    cache = workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    print(f"# {corpus} with tokenizer {tokenizer}; {os.cpu_count()} CPUs", flush=True)
    run_phase("index", corpus, tokenizer, cache)
    run_phase("iterate", corpus, tokenizer, cache, workers=0)
    if args.workers:
        run_phase("iterate", corpus, tokenizer, cache, workers=args.workers)
    if args.generate_gb:
        big = generate(corpus, workdir / "generated.txt", args.generate_gb)
        try:
            run_phase("index", big, tokenizer, cache)
            run_phase("iterate", big, tokenizer, cache, workers=0, max_batches=args.max_batches)
            if args.workers:
                run_phase("iterate", big, tokenizer, cache, workers=args.workers, max_batches=args.max_batches)
        finally:
            if not args.keep:
                big.unlink(missing_ok=True)
                shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
