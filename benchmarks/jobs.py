"""Run commands as separate processes, in dependency order, a few at once, under a deadline.

    from jobs import Job, run_jobs

    jobs = {
        "train": Job("train", ["python", "-m", "declutr", "train", ...], Path("logs/train.log")),
        "score": Job("score", ["python", "-m", "declutr", "evaluate", ...], Path("logs/score.log"), after=("train",)),
        "timing": Job("timing", ["python", "bench.py"], Path("logs/timing.log"), after=("train",), alone=True),
    }
    run_jobs(jobs, max_jobs=4, deadline=time.time() + 600, timeout=300, on_done=lambda: print("one more ended"))
    failed = [job.name for job in jobs.values() if job.returncode != 0]

A job starts once every job named in its ``after`` has ended (whatever its exit status: the caller
judges what a failed dependency means) and fewer than ``max_jobs`` run. Jobs start in the order of
the ``jobs`` dict among those that may. A job marked ``alone`` (a timing) starts only when no other
device job runs, and no later device job starts beside it; jobs marked ``cpu`` leave the device
alone and may run beside it. Each job runs in its own process group with stdout and stderr in its
``log``; a job past its ``timeout`` (or the job's own), or anything running at the ``deadline``,
is killed with its whole group and marked ``timed_out``, and jobs that have not started by then
never do (also ``timed_out``). When ``run_jobs`` returns, or is interrupted, no process is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Job", "run_jobs"]


@dataclass
class Job:
    """One command and what became of it: ``returncode`` (negative: killed by that signal),
    ``seconds`` it ran, or ``timed_out``."""

    name: str
    argv: list[str]
    log: Path
    after: tuple[str, ...] = ()  # names of the jobs that must end before this one starts
    env: dict[str, str] = field(default_factory=dict)  # over the environment run_jobs is given
    alone: bool = False  # runs with no other device job beside it (timings)
    cpu: bool = False  # leaves the device alone (may run beside an ``alone`` job)
    timeout: float | None = None  # its own limit in seconds (default: run_jobs' ``timeout``)
    process: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float | None = None
    returncode: int | None = None
    timed_out: bool = False

    @property
    def done(self) -> bool:
        return self.returncode is not None or self.timed_out

    def tail(self, lines: int = 6) -> str:
        """The last ``lines`` lines of its log."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


def run_jobs(
    jobs: Mapping[str, Job],
    max_jobs: int,
    deadline: float,
    timeout: float,
    on_done: Callable[[], object] = lambda: None,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], object] = lambda message: None,
) -> None:
    """Run ``jobs`` as their ``after`` allow, at most ``max_jobs`` at once, until every one has
    ended or timed out (see the module's docstring). ``deadline`` is a ``time.time()``; ``timeout``
    the seconds one job may run unless it sets its own. ``on_done()`` is called after each job
    that ran ends; ``log`` receives one line when a job starts and when it ends. Every job runs
    in ``cwd`` with ``env`` (default: this process's environment) updated by its own ``env``."""
    environment = dict(os.environ if env is None else env)
    pending = list(jobs.values())
    running: list[Job] = []
    try:
        while pending or running:
            now = time.time()
            for job in _ended(running, now, deadline, timeout):
                log(f"{job.name}: {'timed out' if job.timed_out else f'exit {job.returncode}'} after {job.seconds} s")
                on_done()
            if now > deadline:  # what has not started by now never does
                for job in pending:
                    job.timed_out = True
                pending.clear()
            for job in _startable(jobs, pending, running, max_jobs):
                _start(job, cwd, environment)
                pending.remove(job)
                running.append(job)
                log(f"{job.name}: started")
            time.sleep(0.2)
    finally:  # interrupted: leave no process group behind
        for job in running:
            if job.process.poll() is None:
                os.killpg(job.process.pid, signal.SIGKILL)


def _ended(running: list[Job], now: float, deadline: float, timeout: float) -> Iterator[Job]:
    """Yield, one at a time and removed from ``running``, the jobs that have exited or that are
    killed now for running past ``deadline`` or their limit."""
    for job in list(running):
        code = job.process.poll()
        if code is None and (now > deadline or now - job.started > (job.timeout or timeout)):
            os.killpg(job.process.pid, signal.SIGKILL)  # its workers and child processes too
            job.process.wait()
            job.timed_out, code = True, None
        if code is not None or job.timed_out:
            job.returncode, job.seconds = code, round(time.time() - job.started, 1)
            running.remove(job)
            yield job


def _startable(jobs: Mapping[str, Job], pending: list[Job], running: list[Job], max_jobs: int) -> Iterator[Job]:
    """Yield the pending jobs that may start now, in order; the caller starts each one (and moves
    it to ``running``) before asking for the next."""
    for job in list(pending):
        if not all(jobs[name].done for name in job.after) or len(running) >= max_jobs:
            continue
        on_device = [other for other in running if not other.cpu]
        if (job.alone and on_device) or (not job.cpu and any(other.alone for other in running)):
            return  # keep the order: no device job starts beside a timing run
        yield job


def _start(job: Job, cwd: str | Path | None, environment: dict[str, str]) -> None:
    """Start ``job`` in a new process group (killing the group kills everything it started)."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w", encoding="utf-8") as handle:
        job.process = subprocess.Popen(
            job.argv,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**environment, **job.env},
            start_new_session=True,
        )
    job.started = time.time()
