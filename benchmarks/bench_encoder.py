"""Encoder throughput against sentence-transformers' ``encode``: same model, sentences, batch size, run.

    python benchmarks/bench_encoder.py MODEL [--sentences FILE] [--limit N] [--batch-size 32] [--device cpu]

MODEL must be a folder both libraries load (e.g. all-MiniLM-L6-v2's). sentence-transformers is an
optional benchmark dependency only. The two are timed alternately (``--repeats`` rounds each,
after one warm-up) and the best round of each is reported, with the max absolute difference
between their embeddings, which must be at most ``TOLERANCE`` (1e-4; exit status 1 otherwise).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def default_sentences(limit: int) -> list[str]:
    """The STS Benchmark test sentences from ../shared/data when present, else synthetic ones."""
    path = (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "data"
        / "senteval"
        / "STS"
        / "STSBenchmark"
        / "original"
        / "sts-test.csv"
    )
    if path.is_file():
        sentences = []
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            sentences.extend(fields[5:7])
        return sentences[:limit]
    rng = np.random.RandomState(0)
    words = [
        "the",
        "a",
        "ship",
        "captain",
        "river",
        "morning",
        "night",
        "letter",
        "garden",
        "window",
        "horse",
        "village",
        "doctor",
        "winter",
    ]
    return [" ".join(rng.choice(words, rng.randint(4, 40))) for _ in range(limit)]


#: the largest absolute difference between the two libraries' embeddings that counts as equal
TOLERANCE = 1e-4


def compare(
    model: str, sentences: list[str], batch_size: int = 32, device: str | None = None, repeats: int = 3
) -> dict:
    """Sentences/s of declutr's ``Encoder`` and of sentence-transformers' ``encode``, timed
    alternately (best of ``repeats`` after a warm-up), and the max absolute difference of their
    embeddings (``equal``: within ``TOLERANCE``)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from declutr import Encoder

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = Encoder(model, device=device, batch_size=batch_size)
    reference = SentenceTransformer(str(model), device=device)

    def run_declutr():
        return encoder(sentences, show_progress=False)

    def run_st():
        return reference.encode(sentences, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    def timed(function):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        output = function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, output

    run_declutr(), run_st()  # warm-up
    best = {"declutr": float("inf"), "sentence-transformers": float("inf")}
    for _ in range(repeats):
        seconds, ours = timed(run_declutr)
        best["declutr"] = min(best["declutr"], seconds)
        seconds, theirs = timed(run_st)
        best["sentence-transformers"] = min(best["sentence-transformers"], seconds)
    rates = {name: len(sentences) / seconds for name, seconds in best.items()}
    difference = float(np.abs(ours - theirs).max())
    return {
        "benchmark": "encoder",
        "model": str(model),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "sentences": len(sentences),
        "batch_size": batch_size,
        "repeats": repeats,
        "rates": rates,
        "ratio": rates["declutr"] / rates["sentence-transformers"],
        "max_abs_difference": difference,
        "equal": difference <= TOLERANCE,
    }


def default_documents(limit: int) -> list[str]:
    """The first ``limit`` Gutenberg validation documents from ../shared/data when present (median
    about 3,300 tokens), else synthetic documents of about 2,000 words."""
    import json

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "gutenberg_docs" / "valid.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line)["text"] for line, _ in zip(handle, range(limit))]
    from declutr.testing import make_documents

    return make_documents(limit, 2000)


def long_texts(
    model: str, documents: list[str], batch_size: int = 32, device: str | None = None, stride: int = 0
) -> dict:
    """``Encoder(long_text="chunk")`` on whole documents against ``"truncate"``: documents/s and
    tokens read per second of each (one timed pass after a warm-up on one document), and how
    often a 60-word passage from three quarters into a document finds that document first among
    all of them (cosine; the passage is short, so embedded the same way by both)."""
    import torch

    from declutr import Encoder

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    passages = []
    for document in documents:
        words = document.split()
        start = int(len(words) * 0.75)
        passages.append(" ".join(words[start : start + 60]))
    result = {
        "benchmark": "long_texts",
        "model": str(model),
        "device": device,
        "documents": len(documents),
        "batch_size": batch_size,
        "stride": stride,
        "modes": {},
    }
    for mode in ("truncate", "chunk"):
        encoder = Encoder(
            model, device=device, batch_size=batch_size, long_text=mode, stride=stride if mode == "chunk" else 0
        )
        encoder(documents[:1], show_progress=False)  # warm-up
        lengths = [
            len(ids) for ids in encoder.tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]
        ]
        start = time.perf_counter()
        vectors = encoder(documents, show_progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        long = encoder.long_texts
        queries = encoder(passages, show_progress=False)
        scores = queries @ vectors.T
        read = sum(lengths) if mode == "chunk" else sum(min(n, encoder.max_length - 2) for n in lengths)
        result["max_length"] = encoder.max_length
        result["modes"][mode] = {
            "documents_per_second": len(documents) / seconds,
            "tokens_per_second": read / seconds,
            "long_documents": long,
            "passage_top1": float((scores.argmax(axis=1) == np.arange(len(documents))).mean()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--sentences", help="a text file, one sentence a line (default: STS-B test sentences)")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sentences = (
        Path(args.sentences).read_text(encoding="utf-8").splitlines()[: args.limit]
        if args.sentences
        else default_sentences(args.limit)
    )
    result = compare(args.model, sentences, args.batch_size, args.device, args.repeats)
    print(
        f"model {args.model}; device {result['device']} (torch threads {result['torch_threads']}); "
        f"{len(sentences)} sentences; batch size {args.batch_size}; best of {args.repeats}"
    )
    for name, rate in result["rates"].items():
        print(f"{name:>22}: {rate:8.1f} sentences/s")
    print(f"{'ratio':>22}: {result['ratio']:.2f}x (declutr / sentence-transformers)")
    print(
        f"{'max |difference|':>22}: {result['max_abs_difference']:.2e} ({'equal' if result['equal'] else 'NOT EQUAL'}, tolerance {TOLERANCE})"
    )
    if not result["equal"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
