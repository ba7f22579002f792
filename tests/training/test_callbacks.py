"""Callbacks a user relies on: SentEval scoring with keep-best, early stopping, the NaN guard."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from declutr.training.callbacks import EarlyStopping, NanGuard, TrainingError
from tests.fixtures.declutr_process import run_declutr

CONFIG = """
local m = std.extVar("M");
{
  dataset_reader: { type: "declutr", tokenizer: { model_name: m }, mlm_probability: 0.15,
                    span_sampler: { num_anchors: 2, num_positives: 2, min_span_len: 8, max_span_len: 32 } },
  train_data_path: std.extVar("DATA"),
  data_loader: { batch_size: 2 },
  model: { type: "declutr", encoder: { model_name: m } },
  trainer: { num_epochs: 1, optimizer: { type: "adamw", lr: 3e-3 }, log_every: 2, show_progress: false,
             callbacks: [{ type: "senteval", data_dir: std.extVar("SENTEVAL"), every: 2 }] },
  random_seed: 5,
}
"""

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion.", 4.2),
    ("The river runs past the house.", "A dog sleeps in the sun.", 0.4),
    ("Children walk to the old school.", "Kids are walking to school.", 4.0),
    ("The ship sails across the sea.", "A boat crosses the ocean.", 3.9),
    ("He reads a long letter.", "The garden is full of flowers.", 0.2),
    ("Two horses run in a field.", "Horses are running outside.", 3.6),
    ("She opens the window.", "A man eats bread.", 0.6),
]


@pytest.fixture(scope="module")
def experiment(tiny_roberta, documents_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("callbacks")
    sts = root / "senteval" / "STS" / "STSBenchmark"
    sts.mkdir(parents=True)
    rows = "".join(
        f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score}\t{a}\t{b}\n" for i, (a, b, score) in enumerate(PAIRS)
    )
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        (sts / name).write_text(rows)
    (root / "exp.jsonnet").write_text(CONFIG)
    return root, tiny_roberta, documents_file


def train(experiment, run_dir, overrides=None):
    root, model, data = experiment
    ext_vars = [f"M={model}", f"DATA={data}", f"SENTEVAL={root / 'senteval'}"]
    args = ["train", root / "exp.jsonnet", "-s", run_dir, *(a for v in ext_vars for a in ("--ext-var", v))]
    return run_declutr(*args, *(["--overrides", json.dumps(overrides)] if overrides else []))


def test_senteval_callback_logs_scores_and_keeps_the_best_model(experiment):
    from declutr import Encoder
    from declutr.evaluation.run import build_tasks

    root = experiment[0]
    result = train(experiment, root / "run")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    scores = {
        r["step"]: r["senteval_STSBenchmark_dev_spearman"] for r in records if "senteval_STSBenchmark_dev_spearman" in r
    }
    assert sorted(scores) == [2, 4, 6]
    best_step = max(scores, key=lambda step: (scores[step], -step))
    summary = json.loads((root / "run" / "metrics.json").read_text())
    assert summary["best_step"] == best_step
    assert summary["best_senteval_STSBenchmark_dev_spearman"] == pytest.approx(scores[best_step])

    task = build_tasks(["STSBenchmark"], root / "senteval")[0]
    rescored = 100 * task.cosine(Encoder(root / "run" / "best_model").embed, "dev")["spearman"]
    assert rescored == pytest.approx(scores[best_step], abs=1e-3)
    final = 100 * task.cosine(Encoder(root / "run" / "model").embed, "dev")["spearman"]
    assert final == pytest.approx(scores[6], abs=1e-3)


def test_early_stopping_on_an_unknown_metric_is_one_line(experiment, tmp_path):
    result = train(
        experiment,
        tmp_path / "run",
        {
            "trainer.callbacks": [
                {"type": "senteval", "data_dir": str(experiment[0] / "senteval"), "every": 2},
                {"type": "early_stopping", "metric": "senteval_STSBenchmark_dev_spearmann", "mode": "max"},
            ]
        },
    )
    assert result.returncode == 1
    assert 'no callback reports "senteval_STSBenchmark_dev_spearmann"' in result.stderr
    assert "senteval_STSBenchmark_dev_spearman" in result.stderr and "Traceback" not in result.stderr


def fake_trainer(latest=None, step=7):
    return SimpleNamespace(
        step=step,
        epoch=1,
        stop_reason=None,
        callbacks=[],
        validation_data_loader=object(),
        checkpointer=SimpleNamespace(latest=lambda: latest),
    )


def test_early_stopping_stops_after_patience_and_resumes_its_count():
    trainer = fake_trainer()
    stopping = EarlyStopping(patience=2, metric="validation_loss", mode="min", min_delta=0.01)
    stopping.on_start(trainer)
    for value in (3.0, 2.0, 1.995):  # 1.995 is within min_delta: no improvement
        stopping.on_validation(trainer, {"validation_loss": value})
    stopping.on_validation(trainer, {"other_metric": 0.0})  # reports without the metric are ignored
    assert trainer.stop_reason is None
    resumed = EarlyStopping(patience=2, metric="validation_loss", mode="min", min_delta=0.01)
    resumed.load_state_dict(json.loads(json.dumps(stopping.state_dict())))
    resumed.on_validation(trainer, {"validation_loss": 2.5})
    assert trainer.stop_reason == "early stopping: validation_loss did not improve for 2 validations"


def test_early_stopping_on_validation_loss_needs_validation_data():
    trainer = fake_trainer()
    trainer.validation_data_loader = None
    with pytest.raises(TrainingError, match="no validation_data_path"):
        EarlyStopping(metric="validation_loss").on_start(trainer)


def test_nan_guard_names_the_term_the_step_and_the_last_good_checkpoint():
    guard = NanGuard()
    guard.on_log(fake_trainer(), {"loss": 1.0, "mlm_loss": 0.5, "lr": 1e-3})
    with pytest.raises(TrainingError) as error:
        guard.on_log(
            fake_trainer(latest="RUN/checkpoints/step_00000006"), {"loss": np.nan, "mlm_loss": np.inf, "lr": 1e-3}
        )
    message = str(error.value)
    assert "non-finite loss, mlm_loss by step 7 (epoch 1)" in message
    assert "the last good checkpoint is RUN/checkpoints/step_00000006" in message
    with pytest.raises(TrainingError, match="no checkpoint was written yet"):
        guard.on_log(fake_trainer(), {"loss": float("inf")})


def test_a_missing_senteval_folder_names_the_callback(experiment, tmp_path):
    result = train(
        experiment, tmp_path / "run", {"trainer.callbacks": [{"type": "senteval", "data_dir": str(tmp_path / "nope")}]}
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"trainer.callbacks[0]: data directory {tmp_path / 'nope'} does not exist" in result.stderr


def test_held_out_callback_scores_the_start_and_keeps_the_best_model(experiment, tmp_path):
    """In-domain selection: same-document retrieval and STS-B dev at step 0 (the start model) and
    every 2 steps; the best model by near MRR is exported and rescores to its logged figure."""
    from declutr import Encoder
    from declutr.evaluation.same_document import evaluate_same_document
    from declutr.testing import make_documents

    root = experiment[0]
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(
        "".join(json.dumps({"id": f"h{i}", "text": t}) + "\n" for i, t in enumerate(make_documents(6, 300, seed=1)))
    )
    callback = {
        "type": "held_out",
        "documents": str(held_out),
        "sts_dir": str(root / "senteval"),
        "passage_words": 16,
        "every": 2,
    }
    stopping = {"type": "early_stopping", "metric": "same_document_near_mrr", "mode": "max", "patience": 5}
    result = train(experiment, tmp_path / "run", {"trainer.callbacks": [callback, stopping]})
    assert result.returncode == 0, result.stderr

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"]: r for r in records if "same_document_near_mrr" in r}
    assert sorted(scored) == [0, 2, 4, 6]
    for record in scored.values():
        for mode in ("near", "far"):
            assert {f"same_document_{mode}_{k}" for k in ("recall@1", "recall@10", "mrr", "ndcg@10")} <= record.keys()
        assert "stsb_dev_spearman" in record and 0 < record["same_document_near_mrr"] <= 1
    mrr = {step: record["same_document_near_mrr"] for step, record in scored.items()}
    best_step = max(mrr, key=lambda step: (mrr[step], -step))
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["best_step"] == best_step
    assert summary["best_same_document_near_mrr"] == pytest.approx(mrr[best_step])

    def near_mrr(model_dir) -> float:
        figures = evaluate_same_document(
            Encoder(model_dir).embed, held_out, passage_words=16, modes=("near",), bm25=False
        )
        return figures["near"]["model"]["mrr"]

    assert near_mrr(tmp_path / "run" / "best_model") == pytest.approx(mrr[best_step], abs=1e-4)
    assert near_mrr(experiment[1]) == pytest.approx(mrr[0], abs=1e-4)  # step 0 is the start model


def test_held_out_data_too_short_fails_before_training(experiment, tmp_path):
    held_out = tmp_path / "short.jsonl"
    held_out.write_text(json.dumps({"id": "a", "text": "only a few words here"}) + "\n")
    result = train(
        experiment, tmp_path / "run", {"trainer.callbacks": [{"type": "held_out", "documents": str(held_out)}]}
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(held_out) in result.stderr and not (tmp_path / "run" / "metrics.jsonl").exists()
