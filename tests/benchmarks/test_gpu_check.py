"""bin/gpu-check's CPU half (``--device cpu --quick``): every check runs and passes, as a user runs it;
the NCCL check's plan and judgement with two (pretended) GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gpu-check"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture
def data(shared_data) -> Path:
    if not (shared_data / "senteval" / "STS" / "STSBenchmark" / "sts-test.csv").is_file():
        pytest.skip("STS-B is not in ../shared/data/senteval")
    return shared_data


def test_the_cpu_half_runs_every_check_and_passes(data, tmp_path):
    result = gpu_check("--device", "cpu", "--quick", "--data", str(data), "--output", str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report == json.loads((tmp_path / "out.json").read_text())
    assert report["ok"] and report["failed"] == [] and report["device"] == "cpu"
    checks = report["checks"]
    assert list(checks) == ["precision", "compile", "gradcache", "recover", "export", "evaluate", "mfu", "nccl"]

    precision = checks["precision"]["runs"]
    for dtype in ("float32", "bfloat16", "float16"):
        losses = precision[dtype]["losses"]
        assert len(losses) == 12 and sum(losses[-3:]) / 3 < losses[0]
        assert set(precision[dtype]["first_step"]) == {"loss", "contrastive_loss", "mlm_loss"}
    # bf16 autocast really runs on the CPU (not the fp32 fallback), and within the stated tolerance
    assert 0 < precision["bfloat16"]["first_step_relative_difference"] <= 0.05
    assert precision["float16"]["first_step_relative_difference"] == 0.0  # CPU: fp32 with a warning

    # torch.compile (inductor on the CPU) trains the fixed batch as the eager bf16 run does
    compiled = checks["compile"]
    assert len(compiled["compiled"]["losses"]) == 12 and compiled["compiled"]["decreased"]
    assert compiled["first_step_relative_difference"] <= 0.02

    # the cached step's gradients are the plain step's with dropout on, in each precision; the
    # control shows that without the dropout replay they would not be
    gradcache = checks["gradcache"]
    assert gradcache["dropout"] == 0.1 and gradcache["texts"] == {"anchors": 4, "positives": 8}
    for dtype, bound in (("float32", 1e-6), ("bfloat16", 5e-2), ("float16", 1e-2)):
        run = gradcache["runs"][dtype]
        assert run["missing_gradients"] == [] and run["relative_difference"] <= bound, dtype
        assert run["loss_terms_relative_difference"] <= 1e-6, dtype
    assert gradcache["runs"]["float16"]["scale"] >= 1  # fp16 through the gradient scaler
    assert gradcache["without_replay"]["relative_difference"] > 0.1

    for dtype, bound in (("float32", 1e-6), ("bfloat16", 1e-5)):
        run = checks["recover"]["runs"][dtype]
        assert run["max_weight_difference"] <= bound and run["max_loss_difference_after_resume"] <= bound
        assert run["resumed_from_step"] == 4  # killed after step 5: the epoch-end checkpoint of step 4

    export = checks["export"]
    assert export["float32_max_difference"] <= 1e-5 and 0 < export["bfloat16_max_difference"] <= 1e-3
    assert export["truncated_texts"] >= 1  # the long text was cut to the model's length

    evaluate = checks["evaluate"]
    assert evaluate["difference"] == 0 and -100 < evaluate["scores"]["cpu"]["spearman"] < 100

    assert checks["mfu"]["problems"] == checks["mfu"]["notes"] == []
    (mfu,) = checks["mfu"]["runs"]
    assert mfu["real_tokens_per_second"] > 0 and mfu["achieved_tflops"] > 0 and mfu["mfu"] is None
    assert checks["nccl"] == {"skipped": "needs 2+ CUDA devices, this machine has 0"}


def test_a_check_that_cannot_finish_fails_the_run_and_is_reported(data, tmp_path):
    result = gpu_check("--device", "cpu", "--quick", "--data", str(data), "--checks", "precision", "--budget", "0.1")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and report["failed"] == ["precision"] and set(report["checks"]) == {"precision"}
    runs = report["checks"]["precision"]["runs"]
    assert {run["status"] for run in runs.values()} == {"timed out"}


def test_bad_arguments_are_one_line(tmp_path):
    unknown = gpu_check("--checks", "precision,speed")
    assert unknown.returncode == 2 and "unknown speed" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = gpu_check("--device", "cpu", "--data", str(tmp_path))
    assert missing.returncode == 1 and "no gutenberg_docs/valid.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cuda_asked_for_on_a_machine_without_it_is_one_line(data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = gpu_check("--device", "cuda", "--data", str(data))
    assert result.returncode == 1 and "sees no CUDA device" in result.stderr and "Traceback" not in result.stderr


def test_with_two_gpus_the_nccl_check_runs_the_cached_step_and_judges_its_curve(tmp_path):
    """Planned and judged without a GPU: the runs it would start, and verdicts on written curves."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_checks

    size = gpu_checks.SIZES["quick"]
    paths = {name: tmp_path / name for name in ("model_no_dropout", "documents")}
    script, deadline = ROOT / "bin" / "gpu-check", time.time() + 60
    setting = gpu_checks.Setting("cuda", True, ("nccl",), size, paths, tmp_path, tmp_path, 2, deadline, script)
    jobs = gpu_checks.plan(setting)
    assert list(jobs) == ["nccl_nccl", "nccl_gloo", "nccl_cached"]

    def overrides(job) -> dict:
        return json.loads(job.argv[job.argv.index("--overrides") + 1])

    cached, plain = overrides(jobs["nccl_cached"]), overrides(jobs["nccl_nccl"])
    assert cached["model.contrastive_chunk_size"] == size["gradcache"]["chunk_size"]
    assert cached["distributed"]["cuda_devices"] == plain["distributed"]["cuda_devices"] == [0, 1]
    assert "model.contrastive_chunk_size" not in plain

    def judged(cached_losses: list[float]) -> dict:
        for run, losses in (("two_nccl", [5.0, 4.0]), ("two_gloo", [5.0, 4.0001]), ("two_cached", cached_losses)):
            (tmp_path / "runs" / run).mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"step": i + 1, "loss": loss, "lr": 1e-3}) for i, loss in enumerate(losses)]
            (tmp_path / "runs" / run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        for job in jobs.values():
            job.returncode = 0
        return gpu_checks.report(jobs, setting, {})["nccl"]

    agreeing = judged([5.0, 4.00001])
    assert agreeing["ok"] and agreeing["max_relative_difference"] == pytest.approx(2.5e-5, rel=1e-3)
    assert agreeing["cached_max_relative_difference"] == pytest.approx(2.5e-6)
    differing = judged([5.0, 4.1])
    assert not differing["ok"]
    (problem,) = differing["problems"]
    assert problem.startswith("NCCL curve with the cached step differs from without by 0.025"), problem
