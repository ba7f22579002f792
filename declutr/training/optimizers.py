"""Optimizers with regex parameter groups, built lazily once the model's parameters exist.

``parameter_groups`` follows AllenNLP: ``[[["bias", "LayerNorm\\\\.weight"], {"weight_decay": 0.0}]]``
puts every parameter whose name matches any regex (``re.search``) in a group with those
overrides; the rest form the default group. Frozen parameters are left out.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from declutr.core.registrable import Registrable

ParameterGroups = list[tuple[list[str], dict[str, Any]]]


def make_parameter_groups(
    model_parameters: list[tuple[str, torch.nn.Parameter]], groups: ParameterGroups | None
) -> list[dict[str, Any]]:
    """Torch parameter-group dicts from named parameters and regex groups (first match wins)."""
    trainable = [(name, p) for name, p in model_parameters if p.requires_grad]
    if not groups:
        return [{"params": [p for _, p in trainable]}]
    result = [{"params": [], **overrides} for _, overrides in groups] + [{"params": []}]
    for name, parameter in trainable:
        index = next(
            (i for i, (regexes, _) in enumerate(groups) if any(re.search(r, name) for r in regexes)), len(groups)
        )
        result[index]["params"].append(parameter)
    return [group for group in result if group["params"]]


class Optimizer(Registrable):
    """A ``torch.optim.Optimizer`` built from a config; receives ``model_parameters`` at run time."""

    default_implementation = "adamw"
    runtime_args = ("model_parameters",)


@Optimizer.register("adamw")
@Optimizer.register("huggingface_adamw")
class AdamW(Optimizer, torch.optim.Optimizer):
    """AdamW with decoupled weight decay and an optional bias correction (``correct_bias``).

    The update of Hugging Face's original ``AdamW`` that DeCLUTR used (``correct_bias: false``
    in the paper): ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= step_size * m / (sqrt(v) + eps)`` with ``step_size = lr`` (or
    ``lr * sqrt(1-b2^t) / (1-b1^t)`` with bias correction); then ``p -= lr * wd * p``.
    Runs as multi-tensor (``foreach``) updates per device and dtype.

    # Parameters
    lr, betas, eps, weight_decay: as in torch; correct_bias: apply Adam's bias correction.
    parameter_groups: regex groups with per-group overrides (see the module docstring).
    foreach: use multi-tensor kernels (default: on).
    """

    def __init__(
        self,
        model_parameters: list[tuple[str, torch.nn.Parameter]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        parameter_groups: ParameterGroups | None = None,
        foreach: bool = True,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError("lr, eps and weight_decay must be non-negative")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(betas)}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "correct_bias": correct_bias,
        }
        torch.optim.Optimizer.__init__(self, make_parameter_groups(model_parameters, parameter_groups), defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("AdamW does not support sparse gradients")
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            beta1, beta2 = group["betas"]
            step = self.state[params[0]]["step"]
            step_size = group["lr"]
            if group["correct_bias"]:
                step_size *= math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
            grads = [p.grad for p in params]
            exp_avgs = [self.state[p]["exp_avg"] for p in params]
            exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
            if self.foreach:
                torch._foreach_mul_(exp_avgs, beta1)
                torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
                torch._foreach_mul_(exp_avg_sqs, beta2)
                torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
                denominators = torch._foreach_sqrt(exp_avg_sqs)
                torch._foreach_add_(denominators, group["eps"])
                torch._foreach_addcdiv_(params, exp_avgs, denominators, value=-step_size)
                if group["weight_decay"] > 0.0:
                    torch._foreach_add_(params, params, alpha=-group["lr"] * group["weight_decay"])
            else:
                for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
                    m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)
                    if group["weight_decay"] > 0.0:
                        p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


@Optimizer.register("adam")
class Adam(Optimizer, torch.optim.Adam):
    """``torch.optim.Adam`` (fused/foreach chosen by torch) with regex parameter groups.

    # Parameters
    lr, betas, eps, weight_decay, amsgrad: as in torch; parameter_groups: regex groups.
    """

    def __init__(
        self,
        model_parameters: list[tuple[str, torch.nn.Parameter]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        parameter_groups: ParameterGroups | None = None,
    ):
        torch.optim.Adam.__init__(
            self,
            make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )


@Optimizer.register("sgd")
class SGD(Optimizer, torch.optim.SGD):
    """``torch.optim.SGD`` with regex parameter groups.

    # Parameters
    lr, momentum, weight_decay, nesterov: as in torch; parameter_groups: regex groups.
    """

    def __init__(
        self,
        model_parameters: list[tuple[str, torch.nn.Parameter]],
        lr: float = 1e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        parameter_groups: ParameterGroups | None = None,
    ):
        torch.optim.SGD.__init__(
            self,
            make_parameter_groups(model_parameters, parameter_groups),
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
