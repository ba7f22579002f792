"""Training: the trainer loop, optimizers, schedulers, callbacks, checkpoints, the experiment schema."""

from declutr.training import callbacks, optimizers, schedulers, trainer  # noqa: F401  (register components)
from declutr.training.callbacks import Callback
from declutr.training.experiment import Experiment
from declutr.training.optimizers import Optimizer
from declutr.training.schedulers import LearningRateScheduler
from declutr.training.trainer import Trainer

__all__ = ["Callback", "Experiment", "LearningRateScheduler", "Optimizer", "Trainer"]
