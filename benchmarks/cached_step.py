"""The cached contrastive step against the plain step on one device, dropout on: the ``gradcache``
check of ``bin/gpu-check`` (``compare``).

For each precision (float32; bfloat16 autocast; float16 autocast with a gradient scaler, as the
trainer runs them) one DeCLUTR step (both losses) on a synthetic batch at the check's spans, plain
and cached (``contrastive_chunk_size``) on the same chunks and from the same seed. Both then draw
the same dropout masks: the cached step replays each chunk's RNG state (the CPU generator and the
device's, so dropout inside SDPA's CUDA kernels too) in its pass with autograd. Every parameter must
get a gradient in both, and the gradients must agree within the precision's tolerance (relative in
norm). A control runs the float32 cached step with the replay switched off: its gradients must
then differ by more than ``REPLAY_CONTROL``, or the check could not see a broken replay (dropout
off, or a kernel drawing its masks elsewhere).
"""

from __future__ import annotations

import contextlib
import math
import time

import bench_step
import numpy as np

#: the cached step's gradients against the plain step's, ``|g_cached - g_plain| / |g_plain|`` over
#: all parameters. In half precision the plain step adds its chunks' weight gradients in that
#: precision (one cast copy of each weight takes them all), the cached step in float32: measured
#: on 2-layer models (CPU) bf16 9e-3 to 1.8e-2, fp16 1.3e-3; a broken replay gives about 0.5
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-1, "float16": 2e-2}
#: without the replay the float32 gradients must differ by more than this (10x float32's tolerance)
REPLAY_CONTROL = 1e-3
#: the gradient scaler's first scale (the trainer's); halved while the plain step overflows
INITIAL_SCALE = 2.0**16


def step(model, batch: dict, dtype, cached: bool, scale: float | None, seed: int = 0) -> tuple[dict, dict]:
    """Loss terms and (unscaled) gradients of one step, as the trainer computes them: autocast
    around the step, ``scaler.scale(loss).backward()`` with a scale (float16)."""
    import torch

    device = batch["anchors"]["input_ids"].device
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # every device's generator: the dropout masks
    scaler = torch.amp.GradScaler(device.type, init_scale=scale or 1.0, enabled=scale is not None)

    def backward(loss):
        scaler.scale(loss).backward()

    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        if cached:
            output = model.training_step(batch, backward)
        else:
            output = model(batch)
            backward(output["loss"])
    divisor = scale or 1.0
    gradients = {name: p.grad.double() / divisor for name, p in model.named_parameters() if p.grad is not None}
    return {key: float(value.detach()) for key, value in output.items()}, gradients


def difference(actual: dict, expected: dict) -> dict:
    """How far ``actual``'s gradients are from ``expected``'s: relative in norm, and the largest
    entry's difference over the largest entry; the parameters only one of them has."""
    import torch

    missing = sorted(set(expected) ^ set(actual))
    common = sorted(set(expected) & set(actual))
    flat = torch.cat([actual[name].flatten() for name in common])
    reference = torch.cat([expected[name].flatten() for name in common])
    return {
        "relative_difference": float((flat - reference).norm() / reference.norm().clamp(min=1e-30)),
        "max_entry_difference": float((flat - reference).abs().max() / reference.abs().max().clamp(min=1e-30)),
        "finite": bool(torch.isfinite(flat).all() and torch.isfinite(reference).all()),
        "missing_gradients": missing,
    }


@contextlib.contextmanager
def without_replay():
    """The cached step with its dropout replay switched off (the control)."""
    from declutr.models import gradcache

    replayed = gradcache.replayed
    gradcache.replayed = lambda state, device: contextlib.nullcontext()
    try:
        yield
    finally:
        gradcache.replayed = replayed


def plain_and_cached(model, batch: dict, dtype) -> tuple[float | None, tuple[dict, dict], tuple[dict, dict]]:
    """The scale (float16: halved from ``INITIAL_SCALE`` until the plain step's gradients are
    finite, as the scaler would over the first steps), the plain step and the cached step."""
    import torch

    scale = INITIAL_SCALE if dtype == torch.float16 else None
    while True:
        plain = step(model, batch, dtype, cached=False, scale=scale)
        finite = all(torch.isfinite(g).all() for g in plain[1].values())
        if finite or scale is None or scale < 1:
            return scale, plain, step(model, batch, dtype, cached=True, scale=scale)
        scale /= 2


def compare(model_dir: str, device: str, documents: int, chunk_size: int, spans: tuple[int, int]) -> dict:
    """The check's report: ``ok``, ``problems``, and per precision the scale, the loss terms'
    largest relative difference and the gradients' ``difference``; the control's."""
    import torch

    device = torch.device(device)
    model = bench_step.build_model(model_dir, device).train()
    config = model.encoder.model.config
    model.contrastive_chunk_size = chunk_size
    low, high = spans
    rng = np.random.default_rng(0)
    batch = bench_step.synthetic_batch(rng, documents, config.vocab_size, low, high, high - 2)
    batch = bench_step.move(batch, device)
    report: dict = {
        "documents": documents,
        "texts": {key: int(batch[key]["input_ids"].size(0)) for key in ("anchors", "positives")},
        "chunk_size": chunk_size,
        "dropout": config.hidden_dropout_prob,
        "attention": getattr(config, "_attn_implementation", None),
        "tolerance": TOLERANCE,
        "runs": {},
    }
    problems, reference = [], {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        started = time.perf_counter()
        scale, (plain_terms, plain), (cached_terms, cached) = plain_and_cached(model, batch, dtype)
        figures = difference(cached, plain)
        terms = max(abs(cached_terms[k] - plain_terms[k]) / max(abs(plain_terms[k]), 1e-12) for k in plain_terms)
        figures.update(scale=scale, loss_terms_relative_difference=terms, seconds=time.perf_counter() - started)
        report["runs"][name] = figures
        if dtype == torch.float32:
            reference = plain
        if figures["missing_gradients"]:
            problems.append(f"{name}: only one step gives gradients to {', '.join(figures['missing_gradients'][:3])}")
        if not figures["finite"] or not math.isfinite(terms):
            problems.append(f"{name}: gradients or loss terms not finite (scale {scale})")
        elif figures["relative_difference"] > TOLERANCE[name]:
            problems.append(
                f"{name}: cached gradients {figures['relative_difference']:.3g} from the plain step's "
                f"(tolerance {TOLERANCE[name]})"
            )
    with without_replay():
        control = difference(step(model, batch, torch.float32, cached=True, scale=None)[1], reference)
    report["without_replay"] = {"relative_difference": control["relative_difference"], "bound": REPLAY_CONTROL}
    if not control["relative_difference"] > REPLAY_CONTROL:
        problems.append(
            f"without dropout replay the cached gradients differ by only {control['relative_difference']:.3g}: "
            "the check cannot see the replay (is dropout on?)"
        )
    return {"ok": not problems, "problems": problems, **report}
