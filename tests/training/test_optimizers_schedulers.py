"""Optimizers (the paper's AdamW without bias correction) and schedules against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from declutr.core import ConfigurationError, build
from declutr.training.optimizers import AdamW, Optimizer, make_parameter_groups
from declutr.training.schedulers import LearningRateScheduler


def named_parameters(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    return model, list(model.named_parameters())


def reference_adamw(params, grads_per_step, lr, betas, eps, weight_decay, correct_bias):
    """Hugging Face's original AdamW update, written out per tensor in plain Python."""
    params = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            step_size = lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) if correct_bias else lr
            p -= step_size * m[i] / (v[i].sqrt() + eps)
            p -= lr * weight_decay * p
    return params


@pytest.mark.parametrize("correct_bias", [False, True])
@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_matches_the_reference_update(correct_bias, foreach):
    _model, named = named_parameters()
    initial = [p.detach().clone() for _, p in named]
    optimizer = AdamW(
        named, lr=0.01, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1, correct_bias=correct_bias, foreach=foreach
    )
    grads_per_step = []
    for step in range(5):
        torch.manual_seed(100 + step)
        grads = [torch.randn_like(p) for _, p in named]
        for (_, p), g in zip(named, grads):
            p.grad = g.clone()
        grads_per_step.append(grads)
        optimizer.step()
    expected = reference_adamw(initial, grads_per_step, 0.01, (0.9, 0.98), 1e-6, 0.1, correct_bias)
    for (_, p), e in zip(named, expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-7)


def test_parameter_groups_by_regex_like_the_paper():
    _, named = named_parameters()
    groups = make_parameter_groups(named, [(["bias", r"1\.weight"], {"weight_decay": 0.0})])
    no_decay = {id(p) for p in groups[0]["params"]}
    names = {n for n, p in named if id(p) in no_decay}
    assert names == {"0.bias", "1.weight", "1.bias"} and groups[0]["weight_decay"] == 0.0
    assert [id(p) for p in groups[1]["params"]] == [id(dict(named)["0.weight"])]


def test_optimizer_from_config_with_the_papers_settings():
    _, named = named_parameters()
    config = {
        "type": "huggingface_adamw",
        "lr": 5e-5,
        "eps": 1e-6,
        "correct_bias": False,
        "weight_decay": 0.1,
        "parameter_groups": [[["bias", "LayerNorm\\.weight", "layer_norm\\.weight"], {"weight_decay": 0}]],
    }
    optimizer = build(Optimizer, config, "trainer.optimizer", {"model_parameters": named})
    assert isinstance(optimizer, AdamW) and optimizer.defaults["correct_bias"] is False
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0, 0.1]
    with pytest.raises(ConfigurationError, match=r"^trainer.optimizer: betas must lie in \[0, 1\)"):
        build(Optimizer, {"type": "adamw", "betas": [0.9, 1.5]}, "trainer.optimizer", {"model_parameters": named})


def slanted_triangular(t, total, cut_frac=0.1, ratio=32):
    """ULMFiT's slanted triangular schedule (Howard & Ruder 2018) as the DeCLUTR reference uses it, never below lr / ratio."""
    cut = int(total * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + max(p, 0.0) * (ratio - 1)) / ratio


def schedule(name, total, **kwargs):
    _, named = named_parameters()
    optimizer = build(Optimizer, {"type": "sgd", "lr": 2.0}, "o", {"model_parameters": named})
    scheduler = build(
        LearningRateScheduler, {"type": name, **kwargs}, "s", {"optimizer": optimizer, "num_training_steps": total}
    )
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return rates, scheduler


@pytest.mark.parametrize("total", [12, 100, 1003])
def test_slanted_triangular_follows_the_formula(total):
    rates, _ = schedule("slanted_triangular", total)
    expected = [2.0 * slanted_triangular(t, total) for t in range(total)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert min(rates) >= 2.0 / 32 - 1e-12 and rates[0] == pytest.approx(2.0 / 32)
    assert max(rates) == pytest.approx(2.0)


def test_slanted_triangular_lazy_bug_switch_gives_constant_lr_over_ratio():
    rates, _ = schedule("slanted_triangular", 50, reproduce_lazy_bug=True)
    assert rates == [2.0 / 32] * 50


def test_linear_warmup_cosine_and_constant():
    rates, _ = schedule("linear_with_warmup", 10, warmup_steps=4)
    assert rates == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.0 * 5 / 6, 2.0 * 4 / 6, 2.0 * 3 / 6, 2.0 * 2 / 6, 2.0 / 6])
    rates, _ = schedule("cosine", 11, warmup_steps=1)
    assert (
        rates[0] == 0
        and rates[1] == pytest.approx(2.0)
        and rates[-1] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    )
    rates, _ = schedule("constant", 5)
    assert rates == [2.0] * 5


def test_scheduler_state_round_trip():
    rates, _scheduler = schedule("slanted_triangular", 40)
    _, named = named_parameters()
    optimizer = torch.optim.SGD([p for _, p in named], lr=2.0)
    fresh = build(
        LearningRateScheduler, {"type": "slanted_triangular"}, "s", {"optimizer": optimizer, "num_training_steps": 40}
    )
    half = build(
        LearningRateScheduler,
        {"type": "slanted_triangular"},
        "s",
        {"optimizer": torch.optim.SGD([p for _, p in named], lr=2.0), "num_training_steps": 40},
    )
    for _ in range(17):
        half.step()
    fresh.load_state_dict(half.state_dict())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(rates[17])
