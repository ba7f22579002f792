#!/usr/bin/env python
"""Benchmark of the cached contrastive step (``contrastive_chunk_size``; not a test).

    python benchmarks/bench_gradcache.py [--model DIR] [--anchors 8,32,128] [--chunk-size 8] [--device cpu]

Batches are synthetic DeCLUTR batches (``bench_step.synthetic_batch``: 2 anchors and 2 positives
per document, the paper's span-length distributions capped at ``--max-length``, 15% of anchor
tokens masked), the model a DeCLUTR model with both losses (dropout on, train mode).

- ``memory``: the peak memory of one training step (forward, backward) at each anchor count,
  cached and uncached, each point in a fresh process. CPU: the peak resident set during the
  step (the high-water mark is reset just before it, ``/proc/self/clear_refs``) minus the
  resident set before it; CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before.
- ``throughput``: real tokens/s of the cached and the uncached step on the same batch (the
  middle anchor count), interleaved, after a warm-up step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step


def resident_bytes() -> int:
    """The current resident set (``/proc/self/statm``; 0 where it is unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * resource.getpagesize()


def reset_peak() -> bool:
    """Reset the resident high-water mark (Linux); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(args, chunk_size: int | None):
    import torch

    device = torch.device(args.device)
    model = bench_step.build_model(args.model, device)
    model.contrastive_chunk_size = chunk_size
    return model.train(), device


def batch_for(args, model, anchors: int, device) -> dict:
    rng = np.random.default_rng(args.seed)
    vocab = model.encoder.model.config.vocab_size
    batch = bench_step.synthetic_batch(
        rng, anchors // 2, vocab, max_len=args.max_length, max_content=args.max_length - 2
    )
    return bench_step.move(batch, device)


def one_step(model, batch) -> dict:
    output = model.training_step(batch, lambda loss: loss.backward())
    model.zero_grad(set_to_none=True)
    return output


def measure_point(args) -> dict:
    """One memory point, in this (fresh) process."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    chunk = None if args.point_chunk == "none" else int(args.point_chunk)
    model, device = build(args, chunk)
    batch = batch_for(args, model, args.point_anchors, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = resident_bytes()
        if not reset_peak():
            raise SystemExit("cannot reset the peak resident set (/proc/self/clear_refs): Linux only")
    started = time.perf_counter()
    output = one_step(model, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = peak_resident_bytes()
    return {
        "anchors": args.point_anchors,
        "chunk_size": chunk,
        "real_tokens": bench_step.real_tokens(batch),
        "step_memory_mb": (peak - before) / 2**20,
        "seconds": time.perf_counter() - started,
        "loss": float(output["loss"]),
    }


def run_memory(args) -> list[dict]:
    points = []
    for anchors in args.anchor_counts:
        for chunk in (args.chunk_size, None):
            command = [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--device",
                args.device,
                "--max-length",
                str(args.max_length),
                "--seed",
                str(args.seed),
                "--point-anchors",
                str(anchors),
                "--point-chunk",
                "none" if chunk is None else str(chunk),
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            points.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return points


def run_throughput(args, anchors: int) -> dict:

    model, device = build(args, None)
    batch = batch_for(args, model, anchors, device)
    seconds = {"cached": 0.0, "uncached": 0.0}
    order = ["cached", "uncached"]
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name in order if round_ % 2 else order[::-1]:
            model.contrastive_chunk_size = args.chunk_size if name == "cached" else None
            bench_step.synchronize(device)
            started = time.perf_counter()
            one_step(model, batch)
            bench_step.synchronize(device)
            if round_:
                seconds[name] += time.perf_counter() - started
    tokens = bench_step.real_tokens(batch) * args.rounds
    rates = {name: tokens / value for name, value in seconds.items()}
    return {"anchors": anchors, "rates": rates, "ratio": rates["cached"] / rates["uncached"]}


def run(args) -> dict:
    """Both measurements; the summary (printed as one JSON line)."""
    points = run_memory(args)
    cached = [p["step_memory_mb"] for p in points if p["chunk_size"] is not None]
    uncached = [p["step_memory_mb"] for p in points if p["chunk_size"] is None]
    throughput = run_throughput(args, args.anchor_counts[len(args.anchor_counts) // 2])
    summary = {
        "benchmark": "gradcache",
        "model": args.model,
        "device": args.device,
        "chunk_size": args.chunk_size,
        "max_length": args.max_length,
        "points": points,
        "cached_memory_growth": cached[-1] / max(cached[0], 1e-9),
        "uncached_memory_growth": uncached[-1] / max(uncached[0], 1e-9),
        "throughput": throughput,
        "throughput_ratio": throughput["ratio"],
    }
    print(json.dumps(summary), flush=True)
    return summary


def settings(
    model: str,
    device: str,
    threads: int | None,
    anchors: str,
    chunk_size: int,
    max_length: int,
    rounds: int,
    seed: int = 0,
) -> argparse.Namespace:
    """What ``run`` reads (bin/benchmark's gradcache section passes its own options)."""
    return argparse.Namespace(
        model=model,
        device=device,
        threads=threads,
        anchor_counts=[int(a) for a in anchors.split(",")],
        chunk_size=chunk_size,
        max_length=max_length,
        rounds=rounds,
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--point-anchors", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--point-chunk", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, default=128, help="longest span, special tokens included")
    parser.add_argument("--anchors", default="8,32,128", help="anchor counts (2 per document)")
    parser.add_argument("--chunk-size", type=int, default=8, help="the cached step's chunk")
    parser.add_argument("--rounds", type=int, default=2, help="timed steps of each kind")
    args = parser.parse_args()
    args.model = args.model or bench_step.default_model()
    if args.point_anchors is not None:
        print(json.dumps(measure_point(args)), flush=True)
        return
    run(
        settings(
            args.model,
            args.device,
            args.threads,
            args.anchors,
            args.chunk_size,
            args.max_length,
            args.rounds,
            args.seed,
        )
    )


if __name__ == "__main__":
    main()
