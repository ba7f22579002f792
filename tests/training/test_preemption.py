"""Runs that survive what clusters do to them: a preemption signal stops training at a checkpoint,
``--recover`` continues exactly (data-loader workers included), a damaged newest checkpoint is
reported and the newest intact one used, run directories follow the umask."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from declutr.training.checkpoint import Checkpointer, inspect_checkpoint, list_checkpoints, set_rng_state
from declutr.training.preemption import PREEMPTED_EXIT_CODE
from tests.fixtures.declutr_process import run_declutr
from tests.training.test_train_end_to_end import experiment as experiment  # noqa: PLC0414  (the fixture)
from tests.training.test_train_end_to_end import train, weights
from tests.training.test_trainer_step import build as build  # noqa: PLC0414  (the fixture)

#: checkpoints every 3 steps, so a stop at step 4 or 5 falls between two; 6 steps an epoch
EVERY_3 = '{"trainer.checkpoint_every": 3, "trainer.keep_checkpoints": 3}'


def with_workers(workers: int) -> tuple[str, str]:
    return ("--overrides", EVERY_3[:-1] + f', "data_loader.num_workers": {workers}}}')


@pytest.fixture(scope="module")
def reference(experiment):
    """The uninterrupted run (no loader workers): what every interrupted run must end equal to."""
    run = experiment[0] / "uninterrupted"
    result = train(experiment, run, "--overrides", EVERY_3)
    assert result.returncode == 0, result.stderr
    return weights(run)


def assert_same_weights(run: Path, expected: dict[str, torch.Tensor]) -> None:
    actual = weights(run)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-6, msg=name)


def killed_at(experiment, run: Path, step: int, workers: int):
    """A run SIGKILLed right after optimizer step ``step`` (plugin ``declutr_kill_at_step``)."""
    killed = train(
        experiment,
        run,
        *with_workers(workers),
        "--include-package",
        "declutr_kill_at_step",
        env={"DECLUTR_KILL_AT_STEP": str(step)},
    )
    assert killed.returncode == -9


def signalled(experiment, run: Path, *extra: str, **env: str):
    return train(
        experiment,
        run,
        *extra,
        "--include-package",
        "declutr_signal_at_step",
        env={f"DECLUTR_{key.upper()}": value for key, value in env.items()},
    )


def test_sigterm_mid_step_stops_at_a_checkpoint_and_recover_continues_exactly(experiment, reference):
    """Between two regular checkpoints, with a loader worker: the stop writes its own."""
    run = experiment[0] / "sigterm"
    stopped = signalled(experiment, run, *with_workers(1), signal_at_step="5")
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    message = [line for line in stopped.stderr.splitlines() if "preempted" in line]
    assert len(message) == 1 and "Traceback" not in stopped.stderr
    assert "preempted by SIGTERM after step 5 of 12" in message[0] and "--recover" in message[0]
    assert "step_00000005" in message[0]
    assert inspect_checkpoint(run / "checkpoints" / "step_00000005").status == "ok"
    assert not (run / "model").exists()
    recovered = train(experiment, run, *with_workers(1), "--recover")
    assert recovered.returncode == 0, recovered.stderr
    assert "resumed from" in (run / "out.log").read_text() and "step 5" in (run / "out.log").read_text()
    assert_same_weights(run, reference)


def test_a_second_signal_while_the_checkpoint_is_written_does_not_corrupt_it(experiment, reference):
    run = experiment[0] / "twice"
    stopped = signalled(experiment, run, *with_workers(0), signal_at_step="6", signal="SIGUSR1", signal_twice="1")
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr
    assert "preempted by SIGUSR1 after step 6" in stopped.stderr
    assert [s.status for s in list_checkpoints(run)] == ["ok", "ok"]
    recovered = train(experiment, run, *with_workers(0), "--recover")
    assert recovered.returncode == 0, recovered.stderr
    assert_same_weights(run, reference)


@pytest.mark.parametrize("workers", [2])  # 1 worker: the SIGTERM test above
def test_sigkill_mid_epoch_with_loader_workers_resumes_exactly(experiment, reference, workers):
    """torch's loader draws its workers' seed when an epoch's iteration starts: from its own
    generator, not the trainer's random stream (dropout is on in this model)."""
    run = experiment[0] / f"killed-{workers}-workers"
    killed_at(experiment, run, 4, workers)
    recovered = train(experiment, run, *with_workers(workers), "--recover")  # from step 3, mid-epoch
    assert recovered.returncode == 0, recovered.stderr
    assert_same_weights(run, reference)


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(experiment, reference):
    """Truncated newest (as a full disk leaves it); the one before has no manifest (an earlier
    release's run directory): it is used, and the result is still exact."""
    run = experiment[0] / "damaged"
    killed_at(experiment, run, 7, workers=0)
    newest, older = run / "checkpoints" / "step_00000006", run / "checkpoints" / "step_00000003"
    weights_file = newest / "model.safetensors"
    size = weights_file.stat().st_size
    with open(weights_file, "r+b") as file:
        file.truncate(size // 2)
    (older / "manifest.json").unlink()

    listing = run_declutr("checkpoints", run)
    assert listing.returncode == 1
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "damaged" in rows["step_00000006"] and f"manifest says {size:,}" in rows["step_00000006"]
    assert "unverified" in rows["step_00000003"] and "<- resume" in rows["step_00000003"]

    recovered = train(experiment, run, *with_workers(0), "--recover")
    assert recovered.returncode == 0, recovered.stderr
    log = recovered.stderr
    assert "checkpoint step_00000006 is damaged" in log and "model.safetensors" in log
    assert "falling back to" in log and "step_00000003" in log
    assert (run / "checkpoints" / "damaged_step_00000006" / "model.safetensors").stat().st_size == size // 2
    assert_same_weights(run, reference)


# -- checkpoints, one fault at a time ---------------------------------------------------------------


def three_checkpoints(tmp_path) -> tuple[Checkpointer, torch.nn.Module]:
    model = torch.nn.Linear(4, 3)
    checkpointer = Checkpointer(tmp_path, keep=-1)
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(step)
        checkpointer.save(step, model, {"step": step})
    return checkpointer, model


def test_a_checksum_mismatch_is_damage(tmp_path, caplog):
    checkpointer, model = three_checkpoints(tmp_path)
    state = tmp_path / "step_00000003" / "training_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    state.write_bytes(bytes(data))
    status = inspect_checkpoint(tmp_path / "step_00000003")
    assert status.status == "damaged" and "SHA-256" in status.problem and "training_state.pt" in status.problem
    assert inspect_checkpoint(tmp_path / "step_00000003", checksums=False).status == "ok"  # sizes only
    with caplog.at_level("WARNING", logger="declutr"):
        assert checkpointer.resume_point() == tmp_path / "step_00000002"
    assert sum("is damaged" in r.message for r in caplog.records) == 1
    assert Checkpointer.load(tmp_path / "step_00000002", model) == {"step": 2}


def test_every_checkpoint_damaged_is_one_line_and_nothing_is_deleted(tmp_path):
    from declutr.core.errors import DeclutrError

    checkpointer, _ = three_checkpoints(tmp_path)
    for folder in checkpointer.folders():
        (folder / "training_state.pt").unlink()
    with pytest.raises(DeclutrError, match="no intact checkpoint") as error:
        checkpointer.resume_point()
    assert len(str(error.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.glob("damaged_step_*")) == [f"damaged_step_0000000{i}" for i in (1, 2, 3)]


def test_a_missing_manifest_is_an_earlier_release_and_still_resumes(tmp_path):
    checkpointer, _ = three_checkpoints(tmp_path)
    (tmp_path / "step_00000003" / "manifest.json").unlink()
    assert inspect_checkpoint(tmp_path / "step_00000003").status == "unverified"
    assert checkpointer.resume_point() == tmp_path / "step_00000003"


def test_run_files_follow_the_umask(tmp_path):
    from declutr.core.atomic import atomic_write_text

    previous = os.umask(0o027)
    try:
        three_checkpoints(tmp_path)
        atomic_write_text(tmp_path / "note.txt", "x")
    finally:
        os.umask(previous)
    folder = tmp_path / "step_00000003"
    assert folder.stat().st_mode & 0o777 == 0o750
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
        "model.safetensors": 0o640,
        "training_state.pt": 0o640,
        "manifest.json": 0o640,
    }
    assert (tmp_path / "note.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "latest").stat().st_mode & 0o777 == 0o640


# -- processes and devices ------------------------------------------------------------------------------


def test_recovering_on_another_number_of_processes_is_refused_in_one_line(build):
    from declutr.core.errors import DeclutrError

    trainer = build()
    state = trainer.training_state()
    state["world_size"] = 2  # as two processes would have written it
    folder = trainer.checkpointer.save(1, trainer.model, state)
    with pytest.raises(DeclutrError, match="written by a run of 2 process") as error:
        build().restore(folder)
    assert len(str(error.value).splitlines()) == 1


def test_each_process_restores_only_its_own_cuda_generator(monkeypatch):
    """A checkpoint saved with more GPUs visible than now (an earlier release saved every visible
    device's state): restoring touches this process's device only, and does not raise."""
    from declutr.training.checkpoint import rng_state

    calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((int(state[0]), device)))
    monkeypatch.setattr(
        torch.cuda, "set_rng_state_all", lambda states: (_ for _ in ()).throw(AssertionError("all devices"))
    )
    state = rng_state()
    device = torch.device("cuda", 1)
    set_rng_state({**state, "cuda": [torch.tensor([10]), torch.tensor([11]), torch.tensor([12])]}, device)
    set_rng_state({**state, "cuda_device": torch.tensor([7])}, device)
    set_rng_state({**state, "cuda": [torch.tensor([10])]}, device)  # saved with fewer devices: nothing to restore
    assert calls == [(11, device), (7, device)]


def test_an_unknown_preemption_signal_is_a_config_error(build):
    from declutr.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="trainer.preemption_signals: 'SIGFOO'"):
        build(preemption_signals=["SIGFOO"])
    assert build(preemption_signals=["USR2"]).preemption.signals == [signal.SIGUSR2]
