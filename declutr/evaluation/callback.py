"""Training callbacks that score the model being trained and keep the best: ``senteval`` (a
SentEval similarity task) and ``held_out`` (in-domain: same-document retrieval on held-out
documents, a BEIR folder, STS-B dev).

It lives with the evaluation (which it uses, with inference and io) rather than in
``training/``, so that training never imports the later stages; registering it imports this
module (``declutr.core.plugins.COMPONENT_PACKAGES``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from declutr.training.callbacks import Callback
from declutr.training.util import unwrap


def model_embedder(model, batch_size: int):
    """``texts -> float32 [N, D] numpy`` with ``model`` (a declutr ``Model``) as it is, through its
    inference path (``Model.embed``); call it in eval mode under ``torch.inference_mode``."""
    import numpy as np

    from declutr.inference.encoder import padded_batches
    from declutr.io.export import max_sequence_length

    device = next(model.parameters()).device
    config = getattr(getattr(model.encoder, "model", None), "config", None)
    max_length = max_sequence_length(config, model.tokenizer)

    def embed(texts: list[str]) -> np.ndarray:
        batches = [
            (index, model.embed(ids, attention, special).float().cpu().numpy())
            for index, ids, attention, special in padded_batches(model.tokenizer, texts, batch_size, max_length, device)
        ]
        output = np.empty((len(texts), batches[0][1].shape[1]), dtype=np.float32)
        for index, vectors in batches:
            output[index] = vectors
        return output

    return embed


class ModelSelection(Callback):
    """Scores the model being trained every ``every`` steps (and after the last step), reports
    the scores as validation metrics (``metrics.jsonl``, the progress line, ``early_stopping``),
    and with ``keep_best`` exports the best model so far by ``metric`` to ``RUN/best_model``.
    Rank 0 scores; the scores are shared with every rank. A subclass gives ``scores(model)``.
    """

    metric: str
    reported_metrics: tuple[str, ...] = ()

    def __init__(self, every: int, keep_best: bool, mode: Literal["max", "min"] = "max", score_start: bool = False):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.every = every
        self.keep_best = keep_best
        self.mode = mode
        self.score_start = score_start
        self.best: float | None = None
        self.best_step: int | None = None
        self.evaluated_at = -1

    def scores(self, model) -> dict[str, float]:
        raise NotImplementedError

    def _scores(self, model) -> dict[str, float]:
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return self.scores(model)
        finally:
            model.train(was_training)

    def evaluate(self, trainer) -> None:
        import torch

        model = unwrap(trainer.model)
        scores = self._scores(model) if trainer.is_primary else {}
        if trainer.world_size > 1:
            shared = [scores]
            torch.distributed.broadcast_object_list(shared, 0)
            scores = shared[0]
        self.evaluated_at = trainer.step
        value = scores[self.metric]
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            self.best_step = trainer.step
            if self.keep_best and trainer.is_primary:
                model.export(Path(trainer.serialization_dir) / "best_model")  # staged, then renamed into place
        if trainer.world_size > 1:
            torch.distributed.barrier()
        trainer.report({**scores, f"best_{self.metric}": self.best, "best_step": self.best_step})

    def on_start(self, trainer) -> None:
        if self.score_start and trainer.step == 0 and self.evaluated_at != 0:
            self.evaluate(trainer)  # the start model, as step 0

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
        self.best = state["best"]
        self.best_step = state["best_step"]
        self.evaluated_at = state["evaluated_at"]


@Callback.register("senteval")
class SentEvalEvaluation(ModelSelection):
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
        super().__init__(every, keep_best)
        self.task = similarity_task(task, data_dir, untokenized)
        self.split = split
        self.batch_size = batch_size
        self.metric = f"senteval_{task}_{split}_spearman"
        self.reported_metrics = (self.metric, f"best_{self.metric}")

    def score(self, model) -> float:
        """Cosine Spearman x 100 of ``model`` (a declutr ``Model``, in eval mode) on the task's split."""
        return 100 * float(self.task.cosine(model_embedder(model, self.batch_size), self.split)["spearman"])

    def scores(self, model) -> dict[str, float]:
        return {self.metric: self.score(model)}


def similarity_task(task: str, data_dir: str | None, untokenized: bool):
    """A built SentEval similarity task from ``data_dir`` or ``$DECLUTR_SENTEVAL_DIR``."""
    import os

    from declutr.evaluation.run import build_tasks

    data_dir = data_dir or os.environ.get("DECLUTR_SENTEVAL_DIR")
    if not data_dir:
        raise ValueError("data_dir is not set (give the SentEval data folder here or in $DECLUTR_SENTEVAL_DIR)")
    return build_tasks([task], data_dir, untokenized=untokenized)[0]


@Callback.register("held_out")
class HeldOutEvaluation(ModelSelection):
    """In-domain checkpoint selection: scores the model being trained on held-out data every
    ``every`` steps, the start model as step 0 and the last step always, and keeps the best.

    Same-document retrieval on held-out ``documents`` (docs/evaluation.md: two passages of one
    document should be nearest each other; no labels needed), retrieval on a BEIR-format folder of
    your own labels (``beir``, docs/beir.md) and STS-B dev cosine Spearman x 100 (``sts_dir``), any
    of them. Every figure goes to ``metrics.jsonl`` as a validation record (``same_document_near_mrr``,
    ``same_document_far_recall@1``, ..., ``beir_ndcg@10``, ..., ``stsb_dev_spearman``), ``metric`` to
    the progress line; with ``keep_best`` the best model by ``metric`` is exported to
    ``RUN/best_model`` (the start model itself when training never beats it); ``held_out_seconds``
    is what each evaluation cost. ``early_stopping`` with the same ``metric`` (mode ``max``) stops
    after ``patience`` evaluations without a gain.

    # Parameters
    documents: held-out documents, in any format training reads (never the training file).
    beir: a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv). beir_split: [dev].
    sts_dir: SentEval's data folder, for STS-B dev (untokenised original/ files when present).
    metric: what selects the best model [same_document_near_mrr, else beir_ndcg@10, else stsb_dev_spearman].
    mode: ``max`` (every retrieval figure and Spearman) or ``min`` (alignment, uniformity).
    every: steps between evaluations [50]. keep_best: export the best model to ``best_model/`` [true].
    passage_words, pairs_per_document: the same-document passages [64 words, 4 pairs per document].
    max_documents: score only the first this many held-out documents (cheaper evaluations) [all].
    batch_size: texts per forward pass [64].
    """

    def __init__(
        self,
        documents: str | None = None,
        beir: str | None = None,
        beir_split: str = "dev",
        sts_dir: str | None = None,
        metric: str | None = None,
        mode: Literal["max", "min"] = "max",
        every: int = 50,
        keep_best: bool = True,
        passage_words: int = 64,
        pairs_per_document: int = 4,
        max_documents: int | None = None,
        batch_size: int = 64,
    ):
        super().__init__(every, keep_best, mode, score_start=True)
        if documents is None and beir is None and sts_dir is None:
            raise ValueError("give held-out data to score: documents, beir and/or sts_dir")
        self.passages = None  # cut once, here: held-out documents that are all too short fail before training
        if documents is not None:
            from declutr.core.errors import DeclutrError
            from declutr.evaluation.same_document import prepare_same_document, read_documents

            try:
                self.passages = prepare_same_document(
                    documents if max_documents is None else read_documents(documents)[:max_documents],
                    passage_words=passage_words,
                    pairs_per_document=pairs_per_document,
                )
            except DeclutrError as error:
                if max_documents is None:
                    raise
                raise DeclutrError(f"{documents} (its first {max_documents} documents): {error}") from None
        self.beir = beir
        self.beir_split = beir_split
        self.sts = (
            None if sts_dir is None else similarity_task("STSBenchmark", sts_dir, untokenized=_has_original(sts_dir))
        )
        self.batch_size = batch_size
        known = self.metric_names()
        self.metric = metric or next(
            n for n in ("same_document_near_mrr", "beir_ndcg@10", "stsb_dev_spearman") if n in known
        )
        if self.metric not in known:
            raise ValueError(f'metric "{self.metric}" is not scored by this evaluation (known: {", ".join(known)})')
        self.reported_metrics = (*known, f"best_{self.metric}")

    def metric_names(self) -> list[str]:
        """Every figure this evaluation reports."""
        names = []
        if self.passages is not None:
            for mode in self.passages:
                names += [f"same_document_{mode}_{key}" for key in RETRIEVAL_KEYS]
        if self.beir is not None:
            names += [f"beir_{key}" for key in ("ndcg@10", "mrr@10", "recall@100", "map@100")]
        if self.sts is not None:
            names.append("stsb_dev_spearman")
        return names

    def scores(self, model) -> dict[str, float]:
        import time

        started = time.perf_counter()
        embed = model_embedder(model, self.batch_size)
        scores: dict[str, float] = {}
        if self.passages is not None:
            from declutr.evaluation.same_document import score_same_document

            for mode, figures in score_same_document(embed, self.passages, bm25=False).items():
                scores.update({f"same_document_{mode}_{key}": float(figures["model"][key]) for key in RETRIEVAL_KEYS})
        if self.beir is not None:
            from declutr.evaluation.beir import evaluate_beir

            figures = evaluate_beir(embed, self.beir, split=self.beir_split, bm25=False)["model"]
            scores.update({f"beir_{key}": float(value) for key, value in figures.items()})
        if self.sts is not None:
            scores["stsb_dev_spearman"] = 100 * float(self.sts.cosine(embed, "dev")["spearman"])
        scores["held_out_seconds"] = time.perf_counter() - started  # what the evaluation cost
        return scores


#: the same-document figures the ``held_out`` callback reports per mode
RETRIEVAL_KEYS = ("recall@1", "recall@10", "mrr", "ndcg@10", "alignment", "uniformity")


def _has_original(sts_dir: str) -> bool:
    """Whether SentEval's folder has STS-B's untokenised ``original/`` files (the MTEB protocol reads those)."""
    return (Path(sts_dir) / "STS" / "STSBenchmark" / "original").is_dir()
