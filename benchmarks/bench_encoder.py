"""Encoder throughput against sentence-transformers' ``encode``: same model, sentences, batch size, run.

    python benchmarks/bench_encoder.py MODEL [--sentences FILE] [--limit N] [--batch-size 32] [--device cpu]

MODEL must be a folder both libraries load (e.g. all-MiniLM-L6-v2's). sentence-transformers is an
optional benchmark dependency only. The two are timed alternately (``--repeats`` rounds each,
after one warm-up) and the best round of each is reported, with the max absolute difference
between their embeddings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def default_sentences(limit: int) -> list[str]:
    """The STS Benchmark test sentences from ../shared/data when present, else synthetic ones."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "senteval" / "STS" / "STSBenchmark" / "original" / "sts-test.csv"
    if path.is_file():
        sentences = []
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            sentences.extend(fields[5:7])
        return sentences[:limit]
    rng = np.random.RandomState(0)
    words = ["the", "a", "ship", "captain", "river", "morning", "night", "letter", "garden", "window", "horse", "village", "doctor", "winter"]
    return [" ".join(rng.choice(words, rng.randint(4, 40))) for _ in range(limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--sentences", help="a text file, one sentence a line (default: STS-B test sentences)")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from declutr import Encoder

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sentences = Path(args.sentences).read_text(encoding="utf-8").splitlines()[: args.limit] if args.sentences else default_sentences(args.limit)
    encoder = Encoder(args.model, device=device, batch_size=args.batch_size)
    reference = SentenceTransformer(str(args.model), device=device)

    def run_declutr():
        return encoder(sentences, show_progress=False)

    def run_st():
        return reference.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)

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
    for _ in range(args.repeats):
        seconds, ours = timed(run_declutr)
        best["declutr"] = min(best["declutr"], seconds)
        seconds, theirs = timed(run_st)
        best["sentence-transformers"] = min(best["sentence-transformers"], seconds)
    rates = {name: len(sentences) / seconds for name, seconds in best.items()}
    print(f"model {args.model}; device {device} (torch threads {torch.get_num_threads()}); "
          f"{len(sentences)} sentences; batch size {args.batch_size}; best of {args.repeats}")
    for name, rate in rates.items():
        print(f"{name:>22}: {rate:8.1f} sentences/s")
    print(f"{'ratio':>22}: {rates['declutr'] / rates['sentence-transformers']:.2f}x (declutr / sentence-transformers)")
    print(f"{'max |difference|':>22}: {float(np.abs(ours - theirs).max()):.2e}")


if __name__ == "__main__":
    main()
