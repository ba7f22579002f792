"""benchmarks/jobs.py, the process scheduler of bin/gpu-check: order, timings kept apart, failures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from jobs import Job, run_jobs


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def sleeper(seconds: float) -> list[str]:
    """A process that prints when it starts and ends its ``seconds`` of work."""
    return python(
        f"import time; print('start', time.time(), flush=True); time.sleep({seconds}); print('end', time.time())"
    )


def interval(job: Job) -> tuple[float, float]:
    lines = dict(line.split() for line in job.log.read_text().splitlines())
    return float(lines["start"]), float(lines["end"])


def run(jobs: dict[str, Job], max_jobs: int = 4, seconds: float = 60, timeout: float = 30) -> list[str]:
    messages: list[str] = []
    run_jobs(jobs, max_jobs, time.time() + seconds, timeout, cwd=ROOT, log=messages.append)
    return messages


def test_a_job_starts_after_the_jobs_it_waits_for_and_at_most_max_jobs_run(tmp_path):
    jobs = {
        "then": Job("then", sleeper(0), tmp_path / "then.log", after=("first", "second")),
        "first": Job("first", sleeper(0.4), tmp_path / "first.log"),
        "second": Job("second", sleeper(0.4), tmp_path / "second.log"),
    }
    run(jobs, max_jobs=1)
    assert all(job.returncode == 0 and job.seconds is not None for job in jobs.values())
    first, second, then = (interval(jobs[name]) for name in ("first", "second", "then"))
    assert first[1] <= second[0] and second[1] <= then[0]  # one at a time, in order


def test_an_alone_job_runs_beside_no_device_job_but_beside_cpu_jobs(tmp_path):
    jobs = {
        "before": Job("before", sleeper(0.3), tmp_path / "before.log"),
        "timing": Job("timing", sleeper(1.5), tmp_path / "timing.log", alone=True),
        "beside": Job("beside", sleeper(0.8), tmp_path / "beside.log", cpu=True),
        "later": Job("later", sleeper(0), tmp_path / "later.log"),
    }
    run(jobs)
    before, timing, beside, later = (interval(jobs[name]) for name in jobs)
    assert before[1] <= timing[0] and timing[1] <= later[0]
    assert timing[0] < beside[1] and beside[0] < timing[1]  # the CPU job overlapped the timing


def test_a_failing_job_is_reported_and_what_waits_for_it_still_runs(tmp_path):
    ended = []
    jobs = {
        "fails": Job("fails", python("print('boom'); raise SystemExit(3)"), tmp_path / "fails.log"),
        "after": Job("after", python("print('ran')"), tmp_path / "after.log", after=("fails",), env={"X": "1"}),
    }
    messages: list[str] = []
    run_jobs(
        jobs, 2, time.time() + 60, 30, lambda: ended.append(sum(j.done for j in jobs.values())), log=messages.append
    )
    assert jobs["fails"].returncode == 3 and not jobs["fails"].timed_out and jobs["fails"].tail() == "boom"
    assert jobs["after"].returncode == 0 and jobs["after"].tail() == "ran"
    assert ended == [1, 2]  # on_done after each job
    assert messages[:2] == ["fails: started", f"fails: exit 3 after {jobs['fails'].seconds} s"]


def test_past_its_limit_a_job_is_killed_with_its_children_and_past_the_deadline_nothing_starts(tmp_path):
    child = "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"
    jobs = {
        "stuck": Job("stuck", python(child), tmp_path / "stuck.log", timeout=1),
        "slow": Job("slow", sleeper(60), tmp_path / "slow.log"),
        "waits": Job("waits", sleeper(0), tmp_path / "waits.log", after=("slow",)),
    }
    started = time.time()
    messages = run(jobs, seconds=2.5)
    assert time.time() - started < 20
    assert jobs["stuck"].timed_out and jobs["stuck"].returncode is None and jobs["stuck"].seconds < 2.5
    assert jobs["slow"].timed_out  # running at the deadline
    assert jobs["waits"].timed_out and jobs["waits"].process is None  # would have started after it
    assert [m.split(" after")[0] for m in messages if "timed out" in m] == ["stuck: timed out", "slow: timed out"]
    grandchild = Path("/proc") / jobs["stuck"].log.read_text().split()[0] / "status"
    for _ in range(50):  # killed; its parent gone, it is reaped by init
        if not grandchild.exists() or "State:\tZ" in grandchild.read_text():
            break
        time.sleep(0.1)
    assert not grandchild.exists() or "State:\tZ" in grandchild.read_text()
