"""The checks of ``bin/gpu-check`` (its docstring says what each one proves), one ``Check`` each.

A ``Check`` is a row of ``TABLE``: its ``plan`` adds the processes it needs to a ``Planner`` (a
training run two checks share, such as ``precision_float32``, is added by whichever asks first),
``job_prefixes`` name the jobs whose end it waits for, and ``judge`` reads what they left (logs,
``metrics.jsonl``, weights, result files) into the check's report: ``ok``, ``problems`` and the
figures. ``plan`` and ``report`` are what ``bin/gpu-check`` calls.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs import Job

from declutr import testing  # stdlib-only at import: start-up stays cheap

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training_config" / "declutr.jsonnet"
TERMS = ("loss", "contrastive_loss", "mlm_loss")
PRECISION_DTYPES = ("float32", "bfloat16", "float16")
RECOVER_DTYPES = ("float32", "bfloat16")
#: relative agreement of the first step's loss terms with float32's
PRECISION_TOLERANCE = {"bfloat16": 0.05, "float16": 0.02}
#: largest |weight difference| between a killed-and-recovered run and an uninterrupted one
RECOVER_BOUND = {"float32": 1e-6, "bfloat16": 1e-5}
#: largest |difference| of unit-length embeddings, device against CPU
EXPORT_BOUND = {"float32": 1e-5, "bfloat16": 1e-3}
STSB_BOUND = 0.1
NCCL_TOLERANCE = 1e-4
#: relative agreement of the compiled bf16 run's first-step loss terms with the eager bf16 run's
COMPILE_TOLERANCE = 0.02
COMPILE_SECONDS = 200  # the compiled MFU run starts only with this much of the budget left

SIZES = {
    "full": {
        "model": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
        "positions": 514,
        "vocab_size": 8192,
        "max_length": 512,
        "spans": (32, 512),
        "batch_size": 4,
        "documents": 16,
        "min_chars": 11000,
        "steps": 20,
        "recover_steps": 12,
        "checkpoint_every": 4,
        "kill_at": 6,
        "sentences": 256,
        "gradcache": {"documents": 4, "chunk_size": 4},  # 8 anchors in 2 chunks, 16 positives in 4
        "mfu": {"batches": 3, "rounds": 3, "documents": (4, 32), "compile": True},
        "timeout": 300,
    },
    "quick": {
        "model": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        "positions": 130,
        "vocab_size": 400,
        "max_length": 128,
        "spans": (8, 32),
        "batch_size": 2,
        "documents": 8,
        "min_chars": 2000,
        "steps": 12,
        "recover_steps": 8,
        "checkpoint_every": 3,
        "kill_at": 5,
        "sentences": 32,
        "gradcache": {"documents": 2, "chunk_size": 2},
        "mfu": {"batches": 2, "rounds": 1, "documents": (2,), "compile": False},
        "timeout": 300,
    },
}
LR = 3e-4  # random initialisation: the paper's 5e-5 barely moves it in 20 steps


@dataclass(frozen=True)
class Setting:
    """What the checks' plans and judges read: the command line's choices and the prepared files."""

    device: str
    quick: bool
    checks: tuple[str, ...]  # the chosen ones, in the order of ``TABLE``
    size: dict  # one of ``SIZES``
    paths: dict[str, Path]  # the documents, sentences and checkpoints bin/gpu-check prepared
    work: Path  # runs/, logs/ and the result files
    data: Path  # the shared data folder
    cuda_devices: int
    deadline: float  # the budget's end, a time.time()
    script: Path  # bin/gpu-check: the internal steps run it again with --internal


# ------------------------------------------------------------------------------------ plans
def train_argv(model: Path, data: Path, run_dir: Path, steps: int, size: dict, device: str, **options) -> list[str]:
    """``declutr train`` of the shipped DeCLUTR experiment with the check's overrides."""
    low, high = size["spans"]
    cuda, dtype = device.startswith("cuda"), options.get("dtype", "float32")
    overrides = {
        "train_data_path": str(data),
        "dataset_reader.tokenizer.max_length": size["max_length"],
        "dataset_reader.span_sampler.min_span_len": low,
        "dataset_reader.span_sampler.max_span_len": high,
        "data_loader.batch_size": size["batch_size"],
        "trainer.num_epochs": steps,
        "trainer.max_steps": steps,
        "trainer.optimizer.lr": LR,
        "trainer.log_every": 1,
        "trainer.checkpoint_every": options.get("checkpoint_every"),
        "trainer.keep_checkpoints": 1,
        "trainer.show_progress": False,
        "trainer.use_amp": dtype != "float32",
        "trainer.amp_dtype": "float16" if dtype == "float32" else dtype,
        "trainer.cuda_device": (int(device.split(":")[1]) if ":" in device else 0) if cuda else -1,
    }
    if options.get("compile"):
        overrides["model.encoder.compile"] = True
    if options.get("chunk_size"):
        overrides["model.contrastive_chunk_size"] = options["chunk_size"]
    if options.get("fixed"):  # one epoch of `steps` repeats of one batch: one checkpoint, at the end
        overrides.update({"data_loader.type": "fixed_batch", "data_loader.repeat": steps, "trainer.num_epochs": 1})
    if options.get("distributed"):
        overrides["distributed"] = options["distributed"]
        overrides.pop("trainer.cuda_device")
    argv = [sys.executable, "-m", "declutr", "train", str(CONFIG), "-s", str(run_dir)]
    argv += ["--ext-var", f"TRANSFORMER_MODEL={model}", "--overrides", json.dumps(overrides)]
    argv += ["--include-package", "declutr_fixed_batch", "--include-package", "declutr_kill_at_step"]
    if options.get("deterministic"):
        argv += ["--include-package", "declutr_deterministic"]
    return argv + (["--recover"] if options.get("recover") else [])


class Planner:
    """The jobs planned so far (``jobs``, in the order they were added) and how a check adds one."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.jobs: dict[str, Job] = {}

    def add(self, name, argv, after=(), env=None, alone=False, cpu=False, timeout=None) -> None:
        log = self.setting.work / "logs" / f"{name}.log"
        self.jobs[name] = Job(name, argv, log, tuple(after), env or {}, alone, cpu, timeout)

    def train(self, name: str, model: str, data: str, run: str, steps: int, after=(), env=None, **options) -> None:
        """``declutr train`` of checkpoint ``paths[model]`` on ``paths[data]`` into ``runs/run``."""
        s = self.setting
        argv = train_argv(s.paths[model], s.paths[data], s.work / "runs" / run, steps, s.size, s.device, **options)
        self.add(name, argv, after, env)

    def internal(self, step: str, *arguments: str) -> list[str]:
        """The command of one of bin/gpu-check's internal steps."""
        return [sys.executable, str(self.setting.script), "--internal", step, *arguments]

    def fixed_batch_run(self, dtype: str, name: str | None = None, **options) -> None:
        """``precision_{dtype}`` (or ``name``): ``steps`` steps on one fixed batch, dropout off."""
        name = name or f"precision_{dtype}"
        if name not in self.jobs:
            steps = self.setting.size["steps"]
            self.train(name, "model_no_dropout", "fixed", name, steps, dtype=dtype, fixed=True, **options)

    def reference_run(self, dtype: str) -> None:
        """``reference_{dtype}``: the uninterrupted run the recovered one must equal."""
        name = f"reference_{dtype}"
        if name not in self.jobs:
            steps = self.setting.size["recover_steps"]
            self.train(name, "model", "documents", name, steps, **recover_options(self.setting.size, dtype))


def recover_options(size: dict, dtype: str) -> dict:
    """The options of the runs ``recover`` compares: checkpoints, and deterministic kernels."""
    return {"dtype": dtype, "checkpoint_every": size["checkpoint_every"], "deterministic": True}


def evaluated_on(device: str) -> list[str]:
    """Where ``evaluate`` scores the export: the device, and the CPU (once when they are one)."""
    return list(dict.fromkeys((device, "cpu")))


def plan_precision(plan: Planner) -> None:
    for dtype in PRECISION_DTYPES:
        plan.fixed_batch_run(dtype)


def plan_compile(plan: Planner) -> None:
    """The bf16 fixed-batch run with the transformer through ``torch.compile``, and its eager twin."""
    plan.fixed_batch_run("bfloat16")
    plan.fixed_batch_run("bfloat16", "compile_bfloat16", compile=True)


def plan_gradcache(plan: Planner) -> None:
    s = plan.setting
    settings = s.size["gradcache"]
    argv = plan.internal(
        "gradcache", str(s.paths["model"]), "--device", s.device, "--result", str(s.work / "gradcache.json")
    )
    argv += ["--documents", str(settings["documents"]), "--chunk-size", str(settings["chunk_size"])]
    plan.add("gradcache", argv + ["--quick"] * s.quick)


def plan_recover(plan: Planner) -> None:
    steps, kill = plan.setting.size["recover_steps"], str(plan.setting.size["kill_at"])
    for dtype in RECOVER_DTYPES:
        plan.reference_run(dtype)
        run, options = f"killed_{dtype}", recover_options(plan.setting.size, dtype)
        plan.train(run, "model", "documents", run, steps, env={"DECLUTR_KILL_AT_STEP": kill}, **options)
        plan.train(f"recovered_{dtype}", "model", "documents", run, steps, [run], recover=True, **options)


def plan_export(plan: Planner) -> None:
    s = plan.setting
    plan.reference_run("float32")
    reference = str(s.work / "runs" / "reference_float32")
    argv = plan.internal("export", reference, "--device", s.device, "--sentences", str(s.paths["sentences"]))
    plan.add("export", [*argv, "--result", str(s.work / "export.json")], after=["reference_float32"])


def plan_evaluate(plan: Planner) -> None:
    s = plan.setting
    plan.fixed_batch_run("float32")
    exported, senteval = s.work / "runs" / "precision_float32", s.data / "senteval"
    protocol = ["--protocol", "mteb"] if s.quick else []  # quick: the test pairs only, no regressor
    for where in evaluated_on(s.device):
        key = where.replace(":", "")
        argv = ["-m", "declutr", "evaluate", str(exported), "--tasks", "STSBenchmark", "--data-dir", str(senteval)]
        argv += ["--device", where, "--batch-size", "128", "--output", str(s.work / f"evaluate_{key}.json")]
        argv += ["--precision", "float32"]  # the device's own arithmetic against the CPU's, not bf16's
        cpu_beside_gpu = where == "cpu" and s.device != "cpu"  # half the cores, none of the GPU
        cores = str(max(1, len(os.sched_getaffinity(0)) // 2))
        env = {"OMP_NUM_THREADS": cores, "CUDA_VISIBLE_DEVICES": ""} if cpu_beside_gpu else None
        # the CPU's pass over STS-B with the full-size model has no figure yet: the budget is its limit
        plan.add(
            f"evaluate_{key}",
            [sys.executable, *argv, *protocol],
            ["precision_float32"],
            env,
            cpu=cpu_beside_gpu,
            timeout=s.deadline - time.time() if where == "cpu" else None,
        )


def plan_mfu(plan: Planner) -> None:
    """Alone on the device, after every device job planned before it."""
    s = plan.setting
    argv = plan.internal("mfu", "--device", s.device, "--result", str(s.work / "mfu.json"), "--until", str(s.deadline))
    device_jobs = [name for name, job in plan.jobs.items() if not job.cpu]
    plan.add("mfu", argv + ["--quick"] * s.quick, device_jobs, alone=True)


def plan_nccl(plan: Planner) -> None:
    """Last, after every other job: 2 ranks on NCCL, 2 gloo processes on the CPU, and 2 ranks on
    NCCL with the cached step (``contrastive_chunk_size``)."""
    s = plan.setting
    before, steps = list(plan.jobs), s.size["recover_steps"]
    runs = {"nccl": ([0, 1], None), "gloo": ([-1, -1], None), "cached": ([0, 1], s.size["gradcache"]["chunk_size"])}
    for name, (devices, chunk_size) in runs.items():
        options = {
            "distributed": {"cuda_devices": devices, "master_port": testing.free_port()},
            "chunk_size": chunk_size,
        }
        plan.train(f"nccl_{name}", "model_no_dropout", "documents", f"two_{name}", steps, before, **options)


def needs_two_cuda_devices(setting: Setting) -> str | None:
    if setting.cuda_devices < 2:
        return f"needs 2+ CUDA devices, this machine has {setting.cuda_devices}"
    return None


# ----------------------------------------------------------------------------------- judges
def records(run_dir: Path) -> list[dict]:
    """The logged training records (those with a loss) of a run's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in lines if "loss" in r and "lr" in r]


def weights(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def failed(job: Job) -> dict:
    what = "timed out" if job.timed_out else f"exit {job.returncode}"
    return {"job": job.name, "status": what, "log_tail": job.tail()}


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-6)


def judge_precision(jobs: dict[str, Job], s: Setting) -> dict:
    size = s.size
    result: dict = {"steps": size["steps"], "lr": LR, "tolerance": PRECISION_TOLERANCE, "runs": {}}
    problems = []
    reference = None
    for dtype in PRECISION_DTYPES:
        run = fixed_batch_result(jobs, s, f"precision_{dtype}", dtype, problems)
        result["runs"][dtype] = run
        if "first_step" not in run:
            continue
        if dtype == "float32":
            reference = run["first_step"]
        elif reference is not None:
            run["first_step_relative_difference"] = max(relative(run["first_step"][k], reference[k]) for k in reference)
            if run["first_step_relative_difference"] > PRECISION_TOLERANCE[dtype]:
                problems.append(f"{dtype}: first step {run['first_step_relative_difference']:.4f} from float32's")
        if dtype == "float16" and not s.device.startswith("cuda"):
            run["on_cpu"] = "trains in float32 with a warning"
            log = jobs["precision_float16"].log.read_text(encoding="utf-8", errors="replace")
            if "mixed precision is off" not in log:
                problems.append("float16 on CPU: no warning that mixed precision is off")
    return {"ok": not problems, "problems": problems, **result}


def fixed_batch_result(jobs: dict[str, Job], s: Setting, name: str, what: str, problems: list[str]) -> dict:
    """A fixed-batch run's first step, losses and seconds; its problems (every step logged, losses
    finite and falling) added to ``problems`` as ``what: ...``."""
    job, steps = jobs[name], s.size["steps"]
    logged = records(s.work / "runs" / name)
    if job.returncode != 0 or len(logged) != steps:
        problems.append(f"{what}: {len(logged)} of {steps} steps logged")
        return failed(job)
    losses = [r["loss"] for r in logged]
    run = {
        "first_step": {k: logged[0][k] for k in TERMS if k in logged[0]},
        "losses": [round(v, 5) for v in losses],
        "finite": all(math.isfinite(v) for v in losses),
        "decreased": sum(losses[-3:]) / 3 < losses[0],
        "seconds": job.seconds,
    }
    if not run["finite"] or not run["decreased"]:
        problems.append(f"{what}: losses {'not finite' if not run['finite'] else 'did not decrease'}")
    return run


def judge_compile(jobs: dict[str, Job], s: Setting) -> dict:
    """The compiled run trains (every step, losses finite and falling) and its first step's loss
    terms are the eager run's within ``COMPILE_TOLERANCE``; its seconds include compilation."""
    problems: list[str] = []
    compiled = fixed_batch_result(jobs, s, "compile_bfloat16", "compiled", problems)
    eager = fixed_batch_result(jobs, s, "precision_bfloat16", "eager", problems)
    result = {"key": "model.encoder.compile: true", "dtype": "bfloat16", "tolerance": COMPILE_TOLERANCE}
    result.update(compiled=compiled, eager_seconds=eager.get("seconds"))
    if "first_step" in compiled and "first_step" in eager:
        first, reference = compiled["first_step"], eager["first_step"]
        result["first_step_relative_difference"] = max(relative(first[k], reference[k]) for k in reference)
        if result["first_step_relative_difference"] > COMPILE_TOLERANCE:
            problems.append(f"compiled first step {result['first_step_relative_difference']:.4f} from eager's")
    return {"ok": not problems, "problems": problems, **result}


def judge_recover(jobs: dict[str, Job], s: Setting) -> dict:
    size, runs = s.size, s.work / "runs"
    result: dict = {
        "steps": size["recover_steps"],
        "checkpoint_every": size["checkpoint_every"],
        "killed_after_step": size["kill_at"],
        "bound": RECOVER_BOUND,
        "runs": {},
    }
    problems = []
    for dtype in RECOVER_DTYPES:
        reference, killed, recovered = (jobs[f"{kind}_{dtype}"] for kind in ("reference", "killed", "recovered"))
        if reference.returncode != 0 or recovered.returncode != 0 or killed.returncode != -9:
            problems.append(
                f"{dtype}: reference exit {reference.returncode}, killed exit {killed.returncode} (SIGKILL "
                f"is -9), recovered exit {recovered.returncode}"
            )
            result["runs"][dtype] = {"jobs": [failed(j) for j in (reference, killed, recovered) if j.returncode]}
            continue
        expected, actual = weights(runs / f"reference_{dtype}"), weights(runs / f"killed_{dtype}")
        difference = max((actual[k].double() - expected[k].double()).abs().max().item() for k in expected)
        curve = {r["step"]: r["loss"] for r in records(runs / f"reference_{dtype}")}
        resumed = {r["step"]: r["loss"] for r in records(runs / f"killed_{dtype}")}
        after = [step for step in curve if step > size["kill_at"]]
        run = {
            "max_weight_difference": difference,
            "max_loss_difference_after_resume": max(
                (abs(curve[step] - resumed.get(step, math.inf)) for step in after), default=0.0
            ),
            "seconds": [reference.seconds, killed.seconds, recovered.seconds],
        }
        if expected.keys() != actual.keys() or difference > RECOVER_BOUND[dtype]:
            problems.append(f"{dtype}: recovered weights differ by {difference:.3g} (bound {RECOVER_BOUND[dtype]})")
        if run["max_loss_difference_after_resume"] > RECOVER_BOUND[dtype]:
            problems.append(
                f"{dtype}: the loss curve after the resume differs by {run['max_loss_difference_after_resume']:.3g}"
            )
        # a "recovery" that started over would end with the same weights: it must say where it resumed
        resumed_at = re.search(
            r"resumed from .+ at step (\d+) \(epoch", recovered.log.read_text(encoding="utf-8", errors="replace")
        )
        run["resumed_from_step"] = int(resumed_at.group(1)) if resumed_at else None
        if not resumed_at or not 0 < int(resumed_at.group(1)) < size["kill_at"]:
            problems.append(
                f"{dtype}: the recovered run did not resume from a checkpoint before step {size['kill_at']}"
            )
        result["runs"][dtype] = run
    return {"ok": not problems, "problems": problems, **result}


def file_result(jobs: dict[str, Job], name: str, path: Path) -> dict:
    """The result an internal step wrote, failed (with what it wrote so far) unless it finished."""
    job = jobs[name]
    written = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if job.returncode != 0 or not written:
        problems = [*written.get("problems", []), f"{name} did not finish"]
        return {**written, "ok": False, "problems": problems, **failed(job)}
    return {**written, "seconds": job.seconds}


def judge_export(jobs: dict[str, Job], s: Setting) -> dict:
    return file_result(jobs, "export", s.work / "export.json")


def judge_gradcache(jobs: dict[str, Job], s: Setting) -> dict:
    return file_result(jobs, "gradcache", s.work / "gradcache.json")


def judge_evaluate(jobs: dict[str, Job], s: Setting) -> dict:
    scores, problems = {}, []
    for where in evaluated_on(s.device):
        key = where.replace(":", "")
        job, path = jobs[f"evaluate_{key}"], s.work / f"evaluate_{key}.json"
        if job.returncode != 0 or not path.exists():
            problems.append(f"evaluate on {where} did not finish")
            scores[where] = failed(job)
            continue
        figures = json.loads(path.read_text(encoding="utf-8"))["tasks"]["STSBenchmark"]
        scores[where] = {
            "spearman": 100 * figures["spearman"],
            "pearson": 100 * figures["pearson"],
            "seconds": job.seconds,
        }
    protocol = "MTEB: cosine" if s.quick else "SentEval: regressor"
    result = {"task": f"STSBenchmark ({protocol}, test Spearman x 100)", "bound": STSB_BOUND, "scores": scores}
    if s.device == "cpu":
        result["note"] = "the device is the CPU: one evaluation"
    if not problems:
        result["difference"] = abs(scores[s.device]["spearman"] - scores["cpu"]["spearman"])
        if result["difference"] > STSB_BOUND:
            problems.append(f"STS-B on {s.device} differs from the CPU by {result['difference']:.3f}")
    return {"ok": not problems, "problems": problems, **result}


def judge_mfu(jobs: dict[str, Job], s: Setting) -> dict:
    """The MFU figures: failed only when an eager run did not finish (a compiled run that failed
    or ran out of time is a note)."""
    job, path, documents = jobs["mfu"], s.work / "mfu.json", s.size["mfu"]["documents"]
    written = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    eager = [run for run in written.get("runs", []) if not run["compile"]]
    problems, notes = list(written.get("problems", [])), list(written.get("notes", []))
    if len(eager) < len(documents):
        problems.append(f"{len(eager)} of {len(documents)} eager runs finished")
    if job.returncode != 0:
        notes.append(failed(job))
    return {**written, "ok": not problems, "problems": problems, "notes": notes, "seconds": job.seconds}


def judge_nccl(jobs: dict[str, Job], s: Setting) -> dict:
    """NCCL's loss curve against gloo's, and NCCL's with the cached step against NCCL's plain one
    (dropout off: the same network, so the same curve up to rounding)."""
    curves, problems = {}, []
    for name in ("nccl", "gloo", "cached"):
        job = jobs[f"nccl_{name}"]
        curves[name] = [r["loss"] for r in records(s.work / "runs" / f"two_{name}")]
        if job.returncode != 0 or not curves[name]:
            problems.append(f"2 processes ({name}): {failed(job)}")
    result: dict = {"tolerance": NCCL_TOLERANCE, "chunk_size": s.size["gradcache"]["chunk_size"], "curves": curves}
    if problems:
        return {"ok": False, "problems": problems, **result}
    for key, (curve, reference, what) in {
        "max_relative_difference": ("nccl", "gloo", "NCCL curve differs from gloo's"),
        "cached_max_relative_difference": ("cached", "nccl", "NCCL curve with the cached step differs from without"),
    }.items():
        result[key] = max(relative(a, b) for a, b in zip(curves[curve], curves[reference], strict=False))
        if len(curves[curve]) != len(curves[reference]) or result[key] > NCCL_TOLERANCE:
            problems.append(f"{what} by {result[key]:.3g}")
    return {"ok": not problems, "problems": problems, **result}


# ------------------------------------------------------------------------------------ table
@dataclass(frozen=True)
class Check:
    """One check: ``plan`` adds its jobs, the jobs whose names start with ``job_prefixes`` are the
    ones it waits for, ``judge`` makes its report from what they left, and ``skip`` says why it
    cannot run on this machine (None: it can)."""

    name: str
    plan: Callable[[Planner], None]
    job_prefixes: tuple[str, ...]
    judge: Callable[[dict[str, Job], Setting], dict]
    skip: Callable[[Setting], str | None] = lambda setting: None


TABLE = (
    Check("precision", plan_precision, ("precision_",), judge_precision),
    Check("compile", plan_compile, ("compile_", "precision_bfloat16"), judge_compile),
    Check("gradcache", plan_gradcache, ("gradcache",), judge_gradcache),
    Check("recover", plan_recover, ("reference_", "killed_", "recovered_"), judge_recover),
    Check("export", plan_export, ("export", "reference_float32"), judge_export),
    Check("evaluate", plan_evaluate, ("evaluate_", "precision_float32"), judge_evaluate),
    Check("mfu", plan_mfu, ("mfu",), judge_mfu),
    Check("nccl", plan_nccl, ("nccl_",), judge_nccl, skip=needs_two_cuda_devices),
)
CHECKS = tuple(check.name for check in TABLE)


def plan(setting: Setting) -> dict[str, Job]:
    """Every process the chosen checks need, with their order: by check in ``TABLE`` order (a run
    two checks share goes with the first of them), and within a check as it added them."""
    planner = Planner(setting)
    for check in TABLE:
        if check.name in setting.checks and check.skip(setting) is None:
            check.plan(planner)

    def owner(name: str) -> int:
        return next(i for i, check in enumerate(TABLE) if name.startswith(check.job_prefixes))

    return dict(sorted(planner.jobs.items(), key=lambda item: owner(item[0])))


def report(jobs: dict[str, Job], setting: Setting, judged: dict[str, dict]) -> dict[str, dict]:
    """Each chosen check's report: skipped, pending (the jobs it still waits for), or judged. A
    judgement is kept in ``judged`` and reused: a check's jobs are read once, after they all ended."""
    return {check.name: _report(check, jobs, setting, judged) for check in TABLE if check.name in setting.checks}


def _report(check: Check, jobs: dict[str, Job], setting: Setting, judged: dict[str, dict]) -> dict:
    if check.name in judged:
        return judged[check.name]
    reason = check.skip(setting)
    if reason is not None:
        return {"skipped": reason}
    waiting = [job.name for job in jobs.values() if job.name.startswith(check.job_prefixes) and not job.done]
    if waiting:
        return {"pending": waiting}
    try:
        judged[check.name] = check.judge(jobs, setting)
    except Exception as error:  # noqa: BLE001 (a failed check, not a lost report)
        return {
            "ok": False,
            "problems": [f"{type(error).__name__}: {error}"],
            "traceback": traceback.format_exc().splitlines()[-4:],
        }
    return judged[check.name]
