"""Two CPU processes (gloo) from ``distributed.cuda_devices: [-1, -1]`` against one process with
the same global batch: one run directory and the same loss curve when ``scale_fix`` is on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch.distributed

from tests.fixtures.declutr_process import free_port, run_declutr, tiny_model_without_dropout

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)

CONFIG = """
local m = std.extVar("M");
{
  dataset_reader: { type: "declutr", tokenizer: { model_name: m }, mlm_probability: 0.15,
                    span_sampler: { num_anchors: 2, num_positives: 2, min_span_len: 8, max_span_len: 32 } },
  train_data_path: std.extVar("DATA"),
  data_loader: { batch_size: 2, drop_last: true },
  model: { type: "declutr", encoder: { model_name: m }, loss: { type: "nt_xent", temperature: 0.05 },
           scale_fix: true, mlm_global_mean: true },
  trainer: { num_epochs: 2, optimizer: { type: "adamw", lr: 1e-3, correct_bias: false, weight_decay: 0.1 },
             grad_norm: 1.0, log_every: 1, checkpoint_every: 2, show_progress: false },
  distributed: { cuda_devices: [-1, -1], master_port: std.parseInt(std.extVar("PORT")) },
  random_seed: 3,
}
"""


@pytest.fixture(scope="module")
def experiment(documents_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    model = tiny_model_without_dropout(root / "model")  # one process and two see the same network
    (root / "exp.jsonnet").write_text(CONFIG)
    return root, model, documents_file


def train(experiment, run_dir: Path, overrides: dict | None = None, launcher=(sys.executable,)):
    root, model, data = experiment
    ext_vars = [f"M={model}", f"DATA={data}", f"PORT={free_port()}"]
    args = ["train", root / "exp.jsonnet", "-s", run_dir, *(a for v in ext_vars for a in ("--ext-var", v))]
    return run_declutr(*args, *(["--overrides", json.dumps(overrides)] if overrides else []), launcher=launcher)


def curve(run_dir: Path) -> list[tuple[float, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["contrastive_loss"], r["mlm_loss"]) for r in records if "lr" in r]


def largest_difference(a, b) -> float:
    return max(abs(x - y) / abs(y) for pair_a, pair_b in zip(a, b, strict=True) for x, y in zip(pair_a, pair_b))


def test_two_processes_follow_the_single_process_curve(experiment):
    root = experiment[0]
    single = train(experiment, root / "single", {"distributed": None, "data_loader.batch_size": 4})
    assert single.returncode == 0, single.stderr
    double = train(experiment, root / "double")
    assert double.returncode == 0, double.stderr
    unfixed = train(experiment, root / "unfixed", {"model.scale_fix": False})
    assert unfixed.returncode == 0, unfixed.stderr

    run = root / "double"
    assert {
        "config.json",
        "out.log",
        "metrics.jsonl",
        "checkpoints",
        "model",
        "metrics.json",
    } <= {p.name for p in run.iterdir()}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(
        (root / "single" / "metrics.jsonl").read_text().splitlines()
    )
    assert (run / "model" / "model.safetensors").is_file()

    reference, fixed, broken = (
        curve(root / "single"),
        curve(run),
        curve(root / "unfixed"),
    )
    assert len(reference) == 6
    # Step 1 sees the same weights and spans: the gathered contrastive loss is the global one.
    # With scale_fix both terms are those of one process on the whole batch (the gathered
    # contrastive loss; the masked-LM mean over every rank's masked tokens), at every step.
    assert largest_difference(fixed, reference) < 1e-4
    # Without it the contrastive gradient is 1/world_size too small and the masked-LM term a mean
    # of per-rank means (the reference's behaviour): the curve drifts away.
    assert largest_difference(broken, reference) > 0.01


def test_a_user_error_in_a_spawned_process_is_one_line(experiment, tmp_path):
    result = train(
        experiment,
        tmp_path / "run",
        {"train_data_path": str(tmp_path / "missing.jsonl")},
    )
    assert result.returncode == 1
    assert "missing.jsonl: no such file or directory" in result.stderr and "Traceback" not in result.stderr


def test_torchrun_reads_the_same_config_from_the_environment(experiment):
    root = experiment[0]
    if not (root / "double" / "metrics.jsonl").is_file():
        pytest.skip("the spawned two-process run did not complete")
    torchrun = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    )
    result = train(experiment, root / "torchrun", {"distributed": None}, launcher=torchrun)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("done:") == 1
    assert (
        largest_difference(curve(root / "torchrun"), curve(root / "double")) < 1e-4
    )  # torchrun sets OMP_NUM_THREADS=1


def test_the_cached_contrastive_step_follows_the_two_process_curve(experiment):
    """GradCache under two processes: chunks of one text, negatives still gathered from both ranks,
    the gradients averaged as DDP would; the same curve and weights as the uncached run."""
    from safetensors.torch import load_file

    root = experiment[0]
    if not (root / "double" / "metrics.jsonl").is_file():
        pytest.skip("the spawned two-process run did not complete")
    result = train(experiment, root / "cached", {"model.contrastive_chunk_size": 1})
    assert result.returncode == 0, result.stderr
    assert largest_difference(curve(root / "cached"), curve(root / "double")) < 1e-4
    cached, plain = (load_file(str(root / run / "model" / "model.safetensors")) for run in ("cached", "double"))
    for name, tensor in cached.items():
        assert torch.allclose(tensor, plain[name], rtol=1e-4, atol=1e-5), name


def test_two_processes_resume_exactly_after_a_kill_and_after_preemption(experiment):
    """Dropout on, so each process's own random stream matters: a SIGKILL mid-epoch and a SIGTERM
    sent to the launching process (which forwards it), each followed by ``--recover``, end with the
    weights of the uninterrupted two-process run."""
    from safetensors.torch import load_file

    from declutr.training.preemption import PREEMPTED_EXIT_CODE

    root, model, data = experiment
    killer = Path(__file__).resolve().parents[1] / "fixtures" / "killer"
    dropout = json.dumps({"model.encoder.dropout": 0.1})

    def run(name: str, *extra: str, env: dict | None = None):
        ext_vars = [f"M={model}", f"DATA={data}", f"PORT={free_port()}"]
        args = ["train", root / "exp.jsonnet", "-s", root / name, *(a for v in ext_vars for a in ("--ext-var", v))]
        return run_declutr(*args, "--overrides", dropout, *extra, env=env, extra_path=[killer])

    reference = run("dropout")
    assert reference.returncode == 0, reference.stderr
    killed = run("dropout-killed", "--include-package", "declutr_kill_at_step", env={"DECLUTR_KILL_AT_STEP": "3"})
    assert killed.returncode == 1 and "died" in killed.stderr
    preempted = run(
        "dropout-preempted",
        "--include-package",
        "declutr_signal_at_step",
        env={"DECLUTR_SIGNAL_AT_STEP": "3", "DECLUTR_SIGNAL_TARGET": "parent"},
    )
    assert preempted.returncode == PREEMPTED_EXIT_CODE, preempted.stderr
    assert preempted.stderr.count("preempted by SIGTERM") == 1 and "Traceback" not in preempted.stderr
    expected = load_file(str(root / "dropout" / "model" / "model.safetensors"))
    for name in ("dropout-killed", "dropout-preempted"):
        recovered = run(name, "--recover")  # from step 2 (killed) / the step every process stopped at
        assert recovered.returncode == 0, recovered.stderr
        actual = load_file(str(root / name / "model" / "model.safetensors"))
        for key, tensor in expected.items():
            torch.testing.assert_close(actual[key], tensor, rtol=0, atol=1e-6, msg=f"{name}: {key}")
