"""Every shipped experiment in training_config/: the published hyperparameters (the papers and reference code), the
model and data changeable from the command line, and a few real training steps through the CLI
on a tiny local model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.commands.config import resolve_experiment

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training_config"
SHIPPED = sorted(path.name for path in CONFIG_DIR.glob("*.jsonnet"))
NO_DECAY = [[["bias", "LayerNorm\\.weight", "layer_norm\\.weight"], {"weight_decay": 0.0}]]
#: built from an architecture, not a model name (tests/training/test_from_scratch.py)
FROM_SCRATCH = ("pretrain_small.jsonnet",)
DECLUTR_FAMILY = [
    "declutr_base.jsonnet",
    "declutr_small.jsonnet",
    "declutr.jsonnet",
    "contrastive_only.jsonnet",
    "mlm_only.jsonnet",
]


@pytest.fixture(autouse=True)
def no_model_in_the_environment(monkeypatch):
    """``TRANSFORMER_MODEL`` from the environment would replace the files' defaults."""
    monkeypatch.delenv("TRANSFORMER_MODEL", raising=False)


def resolve(name: str, model: str | None = None, overrides: dict | None = None) -> dict:
    ext_vars = (f"TRANSFORMER_MODEL={model}",) if model else ()
    return resolve_experiment(str(CONFIG_DIR / name), json.dumps(overrides) if overrides else None, ext_vars)


def test_the_expected_configs_are_shipped():
    assert set(SHIPPED) >= {
        "quickstart.jsonnet",
        "declutr.jsonnet",
        "declutr_small.jsonnet",
        "declutr_base.jsonnet",
        "contrastive_only.jsonnet",
        "mlm_only.jsonnet",
        "transformer_mean.jsonnet",
        "transformer_cls.jsonnet",
        "simcse_unsup.jsonnet",
        "simcse_sup.jsonnet",
        "isbert.jsonnet",
        "declutr_small_paper2020.jsonnet",
        "declutr_base_paper2020.jsonnet",
        "declutr_small_paper_step.jsonnet",
        "declutr_base_paper_step.jsonnet",
    }


def assert_declutr_paper_values(config: dict, model: str) -> None:
    """The DeCLUTR paper's settings (Giorgi et al., ACL 2021, and its reference configs)."""
    reader, trainer = config["dataset_reader"], config["trainer"]
    assert reader["type"] == "declutr" and reader["tokenizer"] == {"model_name": model, "max_length": None}
    assert reader["span_sampler"] == {
        "type": "declutr",
        "num_anchors": 2,
        "num_positives": 2,
        "min_span_len": 32,
        "max_span_len": 512,
        "strategy": "default",
        "unit": "subword",
    }
    assert reader["mlm_probability"] == 0.15
    assert reader["short_documents"] == "error"  # the reference raised on a too-short document
    assert config["train_data_path"] is None
    assert config["data_loader"]["batch_size"] == 4 and config["data_loader"]["drop_last"] is True
    assert config["model"] == {
        "type": "declutr",
        "encoder": {"type": "transformer", "model_name": model},
        "pooler": {"type": "mean"},
        "loss": {"type": "nt_xent", "temperature": 0.05},
        "contrastive_weight": 1,
        "mlm_weight": 1,
        "scale_fix": False,
        "mlm_global_mean": False,
        "mlm_mean_groups": None,
    }
    assert trainer["optimizer"] == {
        "type": "adamw",
        "lr": 5e-5,
        "eps": 1e-6,
        "correct_bias": False,
        "weight_decay": 0.1,
        "parameter_groups": NO_DECAY,
    }
    assert trainer["learning_rate_scheduler"] == {
        "type": "slanted_triangular",
        "cut_frac": 0.1,
        "ratio": 32,
        "reproduce_lazy_bug": False,
    }
    assert trainer["grad_norm"] == 1.0 and trainer["num_epochs"] == 1 and trainer["use_amp"] is True
    assert "max_steps" not in trainer and trainer.get("type", "default") == "default"


@pytest.mark.parametrize(
    ("name", "model"), [("declutr_base.jsonnet", "roberta-base"), ("declutr_small.jsonnet", "distilroberta-base")]
)
def test_declutr_paper_configs(name, model):
    assert_declutr_paper_values(resolve(name), model)


@pytest.mark.parametrize("size", ["small", "base"])
def test_paper2020_variants_count_spans_in_whitespace_words(size):
    """The released 2020 models: the 2021 file's every value, but spans (and the 2048 minimum) in
    words; each span is still truncated to the model maximum (max_length null: 510 + 2 for RoBERTa)."""
    subword, words = resolve(f"declutr_{size}.jsonnet"), resolve(f"declutr_{size}_paper2020.jsonnet")
    assert words["dataset_reader"]["span_sampler"]["unit"] == "whitespace"
    assert words["dataset_reader"]["tokenizer"]["max_length"] is None
    words["dataset_reader"]["span_sampler"]["unit"] = "subword"
    assert words == subword


def test_paper2020_minimum_is_counted_in_words(documents, tiny_roberta, tmp_path):
    """A 127-word document is short for 8-32-word spans (minimum 2 * 32 * 2 = 128 words) although it
    has more than 128 subword tokens; the 2021 file, counting subwords, takes it."""
    short = " ".join(documents[0].split()[:127])
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in [*documents[:4], short]))
    overrides = {**training_overrides("declutr_small.jsonnet", {"documents": corpus}), "data_loader.num_workers": 0}
    args = ["--ext-var", f"TRANSFORMER_MODEL={tiny_roberta}", "--overrides", json.dumps(overrides)]
    config = CONFIG_DIR / "declutr_small_paper2020.jsonnet"
    result = CliRunner().invoke(main, ["train", str(config), "-s", str(tmp_path / "words"), *args])
    assert result.exit_code == 1, result.output
    assert f"{corpus}:5: document of 127 whitespace words, shorter than the minimum 128" in result.stderr
    result = CliRunner().invoke(
        main, ["train", str(CONFIG_DIR / "declutr_small.jsonnet"), "-s", str(tmp_path / "subwords"), *args]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("size", ["small", "base"])
@pytest.mark.parametrize(("gpus", "documents", "weight"), [(1, 16, 0.25), (2, 8, 0.5), (4, 4, 1), (8, 2, 2)])
def test_paper_step_on_any_number_of_gpus(size, gpus, documents, weight):
    """The paper's 4 GPUs x 4 documents step: 16 / N documents per GPU, contrastive weight N / 4
    (DDP's average over N), the masked-LM term the mean of the 4 paper ranks' means; all else as
    the plain file."""
    config = resolve_experiment(str(CONFIG_DIR / f"declutr_{size}_paper_step.jsonnet"), None, (f"GPUS={gpus}",))
    assert config["data_loader"]["batch_size"] == documents
    assert config["model"]["contrastive_weight"] == weight and config["model"]["mlm_mean_groups"] == 4
    assert config["distributed"] == (None if gpus == 1 else {"cuda_devices": list(range(gpus))})
    plain = resolve(f"declutr_{size}.jsonnet")
    for key, value in (("data_loader", "batch_size"), ("model", "contrastive_weight"), ("model", "mlm_mean_groups")):
        config[key][value] = plain[key][value]
    config["distributed"] = None
    assert config == plain
    if gpus == 4:
        assert_declutr_paper_values(plain, "roberta-base" if size == "base" else "distilroberta-base")


def test_paper_step_refuses_a_number_of_gpus_that_does_not_split_16_documents():
    with pytest.raises(Exception, match="GPUS must be 1, 2, 4 or 8"):
        resolve_experiment(str(CONFIG_DIR / "declutr_base_paper_step.jsonnet"), None, ("GPUS=3",))


def test_declutr_jsonnet_needs_the_model(tmp_path):
    assert_declutr_paper_values(resolve("declutr.jsonnet", "some/model"), "some/model")
    result = CliRunner().invoke(main, ["config", str(CONFIG_DIR / "declutr.jsonnet")])
    assert result.exit_code == 1 and "TRANSFORMER_MODEL" in result.output


def test_ablations_differ_from_declutr_small_only_where_they_should():
    small = resolve("declutr_small.jsonnet")
    contrastive = resolve("contrastive_only.jsonnet")
    assert contrastive["model"]["mlm_weight"] == 0 and contrastive["dataset_reader"]["mlm_probability"] is None
    assert {**contrastive["model"], "mlm_weight": 1} == small["model"]
    assert {**contrastive["dataset_reader"], "mlm_probability": 0.15} == small["dataset_reader"]
    assert contrastive["trainer"] == small["trainer"] and contrastive["data_loader"] == small["data_loader"]

    mlm = resolve("mlm_only.jsonnet")
    assert mlm["model"]["contrastive_weight"] == 0 and mlm["model"]["mlm_weight"] == 1
    assert mlm["dataset_reader"]["span_sampler"]["num_positives"] == 1
    assert mlm["dataset_reader"]["mlm_probability"] == 0.15
    assert mlm["trainer"] == small["trainer"]


@pytest.mark.parametrize(("name", "pooler"), [("transformer_mean.jsonnet", "mean"), ("transformer_cls.jsonnet", "cls")])
def test_untrained_baselines(name, pooler):
    config = resolve(name)
    assert config["trainer"] == {"type": "no_op"}
    assert config["model"]["pooler"] == {"type": pooler}
    assert config["model"]["encoder"]["model_name"] == "distilroberta-base"
    assert config["model"]["mlm_weight"] == 0  # exported without the masked-LM head


def test_simcse_configs():
    """SimCSE (Gao et al., EMNLP 2021) and its reference code."""
    unsup, sup = resolve("simcse_unsup.jsonnet"), resolve("simcse_sup.jsonnet")
    for config in (unsup, sup):
        assert config["model"]["type"] == "simcse"
        assert config["model"]["encoder"]["model_name"] == "bert-base-uncased"
        assert config["model"]["pooler"] == {"type": "cls_mlp"}  # MLP in training only
        assert config["model"]["loss"]["type"] == "info_nce" and config["model"]["loss"]["temperature"] == 0.05
        assert config["dataset_reader"]["tokenizer"]["max_length"] == 32
        assert config["trainer"]["optimizer"]["type"] == "adamw"
    assert unsup["dataset_reader"]["type"] == "simcse_unsupervised"
    assert unsup["data_loader"]["batch_size"] == 64
    assert unsup["trainer"]["optimizer"]["lr"] == 3e-5 and unsup["trainer"]["num_epochs"] == 1
    assert sup["dataset_reader"]["type"] == "simcse_supervised"
    assert sup["data_loader"]["batch_size"] == 512
    assert sup["trainer"]["optimizer"]["lr"] == 5e-5 and sup["trainer"]["num_epochs"] == 3


def test_simcse_selects_on_sts_b_dev_when_senteval_data_is_given(monkeypatch, tmp_path):
    monkeypatch.delenv("DECLUTR_SENTEVAL_DIR", raising=False)
    assert resolve("simcse_unsup.jsonnet")["trainer"]["callbacks"] == []
    sts = tmp_path / "STS" / "STSBenchmark"
    sts.mkdir(parents=True)
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        (sts / name).write_text("")
    for name in ("simcse_unsup.jsonnet", "simcse_sup.jsonnet"):
        config = resolve_experiment(str(CONFIG_DIR / name), None, (f"DECLUTR_SENTEVAL_DIR={tmp_path}",))
        assert config["trainer"]["callbacks"] == [
            {
                "type": "senteval",
                "data_dir": str(tmp_path),
                "task": "STSBenchmark",
                "split": "dev",
                "every": 250,
                "keep_best": True,
            }
        ]


def test_isbert_config():
    """IS-BERT (Zhang et al., EMNLP 2020) and the reference code's training settings."""
    config = resolve("isbert.jsonnet")
    assert config["dataset_reader"]["type"] == "isbert"
    assert config["model"]["type"] == "isbert"
    assert config["model"]["encoder"]["model_name"] == "bert-base-uncased"
    # no activation after the convolutions, as the authors' models/CNN.py
    assert config["model"]["pooler"] == {
        "type": "cnn",
        "kernel_sizes": [1, 3, 5],
        "out_channels": 256,
        "activation": None,
    }
    assert config["model"]["loss"] == {"type": "infomax"}
    assert config["data_loader"]["batch_size"] == 32 and config["trainer"]["num_epochs"] == 1


@pytest.mark.parametrize("name", [name for name in SHIPPED if name not in FROM_SCRATCH])
def test_model_and_data_are_set_from_the_command_line(name):
    config = resolve(name, "/models/mine", {"train_data_path": "/data/mine.txt"})
    assert config["model"]["encoder"]["model_name"] == "/models/mine"
    assert config["dataset_reader"]["tokenizer"]["model_name"] == "/models/mine"
    assert config["train_data_path"] == "/data/mine.txt"


def test_the_environment_sets_the_model_too(monkeypatch):
    monkeypatch.setenv("TRANSFORMER_MODEL", "from-env")
    assert resolve("declutr_small.jsonnet")["model"]["encoder"]["model_name"] == "from-env"
    assert resolve("declutr_small.jsonnet", "from-ext-var")["model"]["encoder"]["model_name"] == "from-ext-var"


# -- a few real steps of every shipped config --------------------------------------------------


@pytest.fixture(scope="module")
def data(documents, documents_file, tmp_path_factory) -> dict[str, Path]:
    """Tiny corpora: documents (JSON lines), sentences (text), NLI triplets (CSV)."""
    root = tmp_path_factory.mktemp("shipped-data")
    paths = {"documents": documents_file, "sentences": root / "sentences.txt", "nli": root / "nli.csv"}
    sentences = [s.strip() + "." for d in documents for s in d.split(".") if len(s.split()) > 3][:40]
    paths["sentences"].write_text("\n".join(sentences) + "\n")
    with paths["nli"].open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        for i in range(0, 36, 3):
            writer.writerow(sentences[i : i + 3])
    return paths


def training_overrides(name: str, data: dict[str, Path]) -> dict:
    """Tiny data, short spans, small batches and two steps; everything else as shipped."""
    quick = {"trainer.max_steps": 2, "trainer.show_progress": False, "trainer.log_every": 1}
    if name.startswith("transformer_"):
        return {}
    if name in FROM_SCRATCH:  # a 2-layer model for the tiny BERT's vocabulary and 128 positions
        from transformers import AutoTokenizer

        vocabulary = len(AutoTokenizer.from_pretrained(str(data["tiny_bert"])))
        architecture = {"vocab_size": vocabulary, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
        return {
            "train_data_path": str(data["documents"]),
            "validation_data_path": None,
            "model.encoder.architecture": {**architecture, "intermediate_size": 64},
            "data_loader.batch_size": 2,
            **quick,
        }
    if name.startswith("simcse_sup"):
        return {"train_data_path": str(data["nli"]), "data_loader.batch_size": 4, **quick}
    if name.startswith(("simcse_unsup", "isbert")):
        return {"train_data_path": str(data["sentences"]), "data_loader.batch_size": 4, **quick}
    spans = {"dataset_reader.span_sampler.min_span_len": 8, "dataset_reader.span_sampler.max_span_len": 32}
    if "paper_step" in name or name == "miniature.jsonnet":  # 16 documents per step: more than the tiny corpus holds
        spans["data_loader.batch_size"] = 4
    return {"train_data_path": str(data["documents"]), **({} if name == "quickstart.jsonnet" else spans), **quick}


EXPECTED_LOSSES = {
    "declutr": {"contrastive_loss", "mlm_loss"},
    "contrastive_only": {"contrastive_loss"},
    "mlm_only": {"mlm_loss"},
    "quickstart": {"contrastive_loss", "mlm_loss"},
    "miniature": {"contrastive_loss", "mlm_loss"},
    "pretrain": {"mlm_loss"},
    "simcse": {"contrastive_loss"},
    "isbert": {"infomax_loss"},
}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_trains(name, data, tiny_roberta, tiny_bert, tmp_path):
    model = tiny_bert if name.startswith(("simcse", "isbert")) else tiny_roberta
    run = tmp_path / "run"
    overrides = training_overrides(name, {**data, "tiny_bert": tiny_bert})
    args = ["train", str(CONFIG_DIR / name), "-s", str(run), "--ext-var", f"TRANSFORMER_MODEL={model}"]
    args += ["--ext-var", f"TOKENIZER={tiny_bert}"]  # the from-scratch config's vocabulary
    result = CliRunner().invoke(main, args + (["--overrides", json.dumps(overrides)] if overrides else []))
    assert result.exit_code == 0, result.output
    assert (run / "model" / "config.json").is_file() and (run / "config.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    if name.startswith("transformer_"):
        assert metrics["step"] == 0
        return
    assert 1 <= metrics["step"] <= 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "lr" in r]
    kind = next(k for k in EXPECTED_LOSSES if Path(name).stem.startswith(k))
    assert logged and all(math.isfinite(r["loss"]) for r in logged)
    assert {k for r in logged for k in r if k.endswith("_loss")} == EXPECTED_LOSSES[kind]


def test_paper_configs_stop_at_a_short_document_or_skip_it_loudly(documents, tiny_roberta, tmp_path):
    """The reference raised on a document shorter than num_anchors * max_span_len * 2; the paper
    configs stop before training, naming it; "skip" trains and reports the share skipped."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in [*documents[:8], "Far too short.", documents[8]]))
    overrides = {
        **training_overrides("declutr_small.jsonnet", {"documents": corpus}),
        "data_loader.num_workers": 0,
        "data_loader.batch_size": 2,
    }
    args = ["train", str(CONFIG_DIR / "declutr_small.jsonnet"), "--ext-var", f"TRANSFORMER_MODEL={tiny_roberta}"]
    result = CliRunner().invoke(main, [*args, "-s", str(tmp_path / "error"), "--overrides", json.dumps(overrides)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{corpus}:9: document of" in errors[0] and "shorter than the minimum 128" in errors[0]
    assert not (tmp_path / "error" / "model").exists()

    skip = {**overrides, "dataset_reader.short_documents": "skip"}
    result = CliRunner().invoke(main, [*args, "-s", str(tmp_path / "skip"), "--overrides", json.dumps(skip)])
    assert result.exit_code == 0, result.output
    assert "records used; skipped 1 of 10 (10.0%): short 1" in result.stderr  # the WARNING at the start
    assert "documents skipped 1 of 10 (10.0%): short 1" in result.stderr.splitlines()[-1]  # the run summary
    assert json.loads((tmp_path / "skip" / "metrics.json").read_text())["documents_skipped_short"] == 1
