"""Learning-rate schedules as pure functions of the optimizer step, stepped once per optimizer step.

Each scheduler receives the optimizer and the real total number of optimizer steps
(``num_training_steps``) from the trainer, so no schedule ever guesses the length of the data.
The learning rate at step ``t`` (0-based: the rate used for the ``t``-th update) is
``base_lr * factor(t)``.
"""

from __future__ import annotations

import math

from declutr.core.registrable import Registrable


class LearningRateScheduler(Registrable):
    """Sets every parameter group's lr to ``initial_lr * factor(step)``."""

    default_implementation = "constant"
    runtime_args = ("optimizer", "num_training_steps")

    def __init__(self, optimizer, num_training_steps: int):
        self.optimizer = optimizer
        self.num_training_steps = max(1, int(num_training_steps))
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def _apply(self) -> None:
        scale = self.factor(self.last_step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale

    def step(self) -> None:
        """Advance after an optimizer step."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()


@LearningRateScheduler.register("constant")
class Constant(LearningRateScheduler):
    """The optimizer's learning rate throughout."""

    def factor(self, step: int) -> float:
        return 1.0


@LearningRateScheduler.register("slanted_triangular")
class SlantedTriangular(LearningRateScheduler):
    """ULMFiT's slanted-triangular schedule (Howard & Ruder 2018), as DeCLUTR used it.

    ``cut = floor(T * cut_frac)``; ``p = t / cut`` while ``t < cut``, else
    ``1 - (t - cut) / (cut * (1 / cut_frac - 1))``; ``lr_t = lr * (1 + p (ratio - 1)) / ratio``.
    ``p`` is clipped at 0: when ``T * cut_frac`` is not whole the decay reaches 0 before the
    last step, and a learning rate must never go negative (it stays at ``lr / ratio``).

    # Parameters
    cut_frac: fraction of steps spent warming up. ratio: how much smaller the lowest rate is.
    reproduce_lazy_bug: reproduce AllenNLP 1.1 with ``"lazy": true`` (the reference configs):
        the trainer passed no dataset length, the schedule took "steps so far" as the total,
        and after step 0 the rate stayed at ``lr / ratio``. Off by default (the correct schedule).
    """

    def __init__(
        self,
        optimizer,
        num_training_steps: int,
        cut_frac: float = 0.1,
        ratio: float = 32.0,
        reproduce_lazy_bug: bool = False,
    ):
        if not 0.0 < cut_frac < 1.0:
            raise ValueError(f"cut_frac must lie in (0, 1), got {cut_frac}")
        if ratio < 1.0:
            raise ValueError(f"ratio must be at least 1, got {ratio}")
        self.cut_frac, self.ratio, self.reproduce_lazy_bug = cut_frac, ratio, reproduce_lazy_bug
        super().__init__(optimizer, num_training_steps)

    def factor(self, step: int) -> float:
        if self.reproduce_lazy_bug:
            return 1.0 / self.ratio
        cut = int(self.num_training_steps * self.cut_frac)
        if step < cut:
            p = step / cut
        elif cut == 0:
            p = max(0.0, 1.0 - step / max(1, self.num_training_steps))
        else:
            p = max(0.0, 1.0 - (step - cut) / (cut * (1.0 / self.cut_frac - 1.0)))
        return (1.0 + p * (self.ratio - 1.0)) / self.ratio


@LearningRateScheduler.register("linear_with_warmup")
class LinearWithWarmup(LearningRateScheduler):
    """Linear warm-up from 0 over ``warmup_steps`` (or ``warmup_ratio`` of training), then linear decay to 0.

    # Parameters
    warmup_steps: absolute warm-up length; warmup_ratio: warm-up as a fraction of all steps.
    """

    def __init__(self, optimizer, num_training_steps: int, warmup_steps: int | None = None, warmup_ratio: float = 0.0):
        if warmup_steps is not None and warmup_steps < 0 or not 0.0 <= warmup_ratio < 1.0:
            raise ValueError("warmup_steps must be >= 0 and warmup_ratio in [0, 1)")
        self.warmup = warmup_steps if warmup_steps is not None else int(warmup_ratio * num_training_steps)
        super().__init__(optimizer, num_training_steps)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        return max(0.0, (self.num_training_steps - step) / max(1, self.num_training_steps - self.warmup))


@LearningRateScheduler.register("cosine")
class Cosine(LearningRateScheduler):
    """Linear warm-up, then half a cosine from the full rate down to ``min_lr_ratio`` of it.

    # Parameters
    warmup_steps: warm-up length in optimizer steps; min_lr_ratio: the final rate / the peak rate.
    """

    def __init__(self, optimizer, num_training_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0):
        if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")
        self.warmup, self.min_lr_ratio = warmup_steps, min_lr_ratio
        super().__init__(optimizer, num_training_steps)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.num_training_steps - self.warmup))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
