"""Stopping cleanly when a cluster asks: SIGTERM / SIGUSR1 end training at a checkpoint.

Schedulers warn before they kill (SLURM sends SIGTERM, or ``--signal=USR1@90``; spot instances
a short notice). While training, the handlers only record the first signal; the trainer then
finishes the optimizer step it is in, agrees with every other process on the step to stop at
(one all-reduce of a flag over the CPU), writes a checkpoint, and stops with
:class:`TrainingPreempted` (exit code :data:`PREEMPTED_EXIT_CODE`). A second signal while the
checkpoint is written is recorded and otherwise ignored, so it cannot cut the write short.
``declutr train ... --recover`` then continues exactly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence

from declutr.core.errors import ConfigurationError, DeclutrError

#: EX_TEMPFAIL: "try again later", what a requeueing job script can test for
PREEMPTED_EXIT_CODE = 75
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class TrainingPreempted(DeclutrError):
    """Training stopped at a checkpoint because a preemption signal arrived."""

    exit_code = PREEMPTED_EXIT_CODE
    prefix = ""


def signal_numbers(names: Sequence[str], key: str = "trainer.preemption_signals") -> list[signal.Signals]:
    """``["SIGTERM", "USR1"]`` as signals; an unknown name is a one-line config error at ``key``."""
    numbers = []
    for name in names:
        canonical = str(name).upper()
        canonical = canonical if canonical.startswith("SIG") else f"SIG{canonical}"
        number = getattr(signal.Signals, canonical, None)
        if number is None or number in (signal.SIGKILL, getattr(signal, "SIGSTOP", None)):
            raise ConfigurationError(f"{key}: {name!r} is not a signal a process can handle (e.g. SIGTERM, SIGUSR1)")
        numbers.append(number)
    return numbers


class SignalWatch:
    """While installed (main thread only), records the first of ``signals`` and how many arrived."""

    def __init__(self, signals: Sequence[signal.Signals]):
        self.signals = list(signals)
        self.received: signal.Signals | None = None
        self.count = 0
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, number: int, frame) -> None:
        self.count += 1
        if self.received is None:
            self.received = signal.Signals(number)

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalWatch]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread: nothing to watch
            return
        for number in self.signals:
            self._previous[number] = signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, previous in self._previous.items():
                signal.signal(number, previous)
            self._previous.clear()

    def agreed(self, group=None, world_size: int = 1) -> signal.Signals | None:
        """The signal to stop for, the same on every process: any process's (the highest number
        when they differ), after one all-reduce over ``group`` (a CPU process group)."""
        local = int(self.received or 0)
        if world_size > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([local], dtype=torch.int64)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
            local = int(flag.item())
        return signal.Signals(local) if local else None


@contextlib.contextmanager
def forwarded(signals: Sequence[signal.Signals], pids: Sequence[int]) -> Iterator[None]:
    """In the launching process of spawned training processes: pass ``signals`` on to them (a
    scheduler may signal only the process it started), instead of dying and orphaning them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(number: int, frame) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    previous = {number: signal.signal(number, forward) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
