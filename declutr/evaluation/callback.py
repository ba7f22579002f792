"""The ``senteval`` training callback: score a SentEval similarity task during training.

It lives with the evaluation (which it uses, with inference and io) rather than in
``training/``, so that training never imports the later stages; registering it imports this
module (``declutr.core.plugins.COMPONENT_PACKAGES``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from declutr.training.callbacks import Callback
from declutr.training.util import unwrap


@Callback.register("senteval")
class SentEvalEvaluation(Callback):
    """Scores the model on a SentEval similarity task every ``every`` steps and keeps the best model.

    The score is the cosine-similarity Spearman (x 100) of the task's ``split`` (SimCSE selects its
    checkpoint on STS-B dev this way). It is logged as ``senteval_<task>_<split>_spearman`` in
    ``metrics.jsonl``, passed to the other callbacks as a validation metric (so ``early_stopping``
    can watch it), and with ``keep_best`` the best model so far is exported to ``RUN/best_model``
    (loadable like ``RUN/model``). Rank 0 evaluates; the score is shared with every rank.

    # Parameters
    data_dir: SentEval's ``data/downstream`` folder (default: ``$DECLUTR_SENTEVAL_DIR``).
    task: ``STSBenchmark`` or ``SICKRelatedness``. split: ``dev`` (default), ``train`` or ``test``.
    every: steps between evaluations (one is also made after the last step).
    keep_best: export the best-scoring model to ``best_model/``.
    untokenized: read STS-B's untokenised ``original/`` files. batch_size: sentences per forward pass.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        task: Literal["STSBenchmark", "SICKRelatedness"] = "STSBenchmark",
        split: Literal["train", "dev", "test"] = "dev",
        every: int = 250,
        keep_best: bool = True,
        untokenized: bool = False,
        batch_size: int = 64,
    ):
        import os

        from declutr.evaluation.run import build_tasks

        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        data_dir = data_dir or os.environ.get("DECLUTR_SENTEVAL_DIR")
        if not data_dir:
            raise ValueError("data_dir is not set (give the SentEval data folder here or in $DECLUTR_SENTEVAL_DIR)")
        self.task = build_tasks([task], data_dir, untokenized=untokenized)[0]
        self.split, self.every, self.keep_best, self.batch_size = split, every, keep_best, batch_size
        self.metric = f"senteval_{task}_{split}_spearman"
        self.reported_metrics = (self.metric, f"best_{self.metric}")
        self.best: float | None = None
        self.best_step: int | None = None
        self.evaluated_at = -1

    def score(self, model) -> float:
        """Cosine Spearman x 100 of ``model`` (a declutr ``Model``) on the task's split."""
        import numpy as np
        import torch

        from declutr.inference.encoder import padded_batches
        from declutr.io.export import max_sequence_length

        device = next(model.parameters()).device
        config = getattr(getattr(model.encoder, "model", None), "config", None)
        max_length = max_sequence_length(config, model.tokenizer)

        def embed(texts: list[str]) -> np.ndarray:
            batches = [
                (index, model.embed(ids, attention, special).float().cpu().numpy())
                for index, ids, attention, special in padded_batches(
                    model.tokenizer, texts, self.batch_size, max_length, device
                )
            ]
            output = np.empty((len(texts), batches[0][1].shape[1]), dtype=np.float32)
            for index, vectors in batches:
                output[index] = vectors
            return output

        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return 100 * float(self.task.cosine(embed, self.split)["spearman"])
        finally:
            model.train(was_training)

    def evaluate(self, trainer) -> None:
        import torch

        model = unwrap(trainer.model)
        value = self.score(model) if trainer.is_primary else 0.0
        if trainer.world_size > 1:
            shared = torch.tensor([value], dtype=torch.float64, device=trainer.device)
            torch.distributed.broadcast(shared, 0)
            value = float(shared.item())
        self.evaluated_at = trainer.step
        improved = self.best is None or value > self.best
        if improved:
            self.best, self.best_step = value, trainer.step
            if self.keep_best and trainer.is_primary:
                model.export(Path(trainer.serialization_dir) / "best_model")  # staged, then renamed into place
        if trainer.world_size > 1:
            torch.distributed.barrier()
        trainer.report({self.metric: value, f"best_{self.metric}": self.best, "best_step": self.best_step})

    def on_step(self, trainer, metrics) -> None:
        if trainer.step % self.every == 0:
            self.evaluate(trainer)

    def on_end(self, trainer, metrics) -> None:
        if self.evaluated_at != trainer.step:
            self.evaluate(trainer)
        metrics.update({f"best_{self.metric}": self.best, "best_step": self.best_step})

    def state_dict(self):
        return {"best": self.best, "best_step": self.best_step, "evaluated_at": self.evaluated_at}

    def load_state_dict(self, state):
        self.best, self.best_step, self.evaluated_at = state["best"], state["best_step"], state["evaluated_at"]
