"""Experiment files of the reference implementation (AllenNLP 1.1 schema, github.com/JohnGiorgi/DeCLUTR):
translated to declutr's schema, every translated key printed, and trained through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.commands.config import resolve_experiment
from declutr.core.config import evaluate_file
from declutr.core.errors import ConfigurationError
from declutr.training.legacy import is_reference_config, translate

CONFIG_DIR = Path(__file__).resolve().parents[2] / "training_config"

# the reference's declutr.jsonnet (its declutr_base/small.jsonnet name the model instead)
REFERENCE = """
local transformer_model = std.extVar("TRANSFORMER_MODEL");
local transformer_dim = 768;
{
    "vocabulary": { "type": "empty" },
    "dataset_reader": {
        "type": "declutr",
        "lazy": true,
        "num_anchors": 2,
        "num_positives": NUM_POSITIVES,
        "max_span_len": 512,
        "min_span_len": 32,
        "tokenizer": { "type": "pretrained_transformer", "model_name": transformer_model, "max_length": 510 },
        "token_indexers": { "tokens": { "type": "pretrained_transformer", "model_name": transformer_model } },
    },
    "train_data_path": null,
    "model": {
        "type": "declutr",
        "text_field_embedder": {
            "type": "mlm",
            "token_embedders": {
                "tokens": {
                    "type": "pretrained_transformer_mlm",
                    "model_name": transformer_model,
                    "masked_language_modeling": MASKED_LANGUAGE_MODELING,
                },
            },
        },
        LOSS
        "scale_fix": false,
    },
    "data_loader": { "batch_size": 4, "num_workers": 1, "drop_last": true },
    "trainer": {
        "use_amp": true,
        "optimizer": {
            "type": "huggingface_adamw",
            "lr": 5e-5,
            "eps": 1e-06,
            "correct_bias": false,
            "weight_decay": 0.1,
            "parameter_groups": [
                [["bias", "LayerNorm\\\\.weight", "layer_norm\\\\.weight"], { "weight_decay": 0 }],
            ],
        },
        "num_epochs": 1,
        "checkpointer": { "num_serialized_models_to_keep": -1 },
        "grad_norm": 1.0,
        "learning_rate_scheduler": { "type": "slanted_triangular" },
    },
}
"""
LOSS = '"loss": { "type": "nt_xent", "temperature": 0.05 },'
VARIANTS = {
    "declutr": REFERENCE.replace("NUM_POSITIVES", "2")
    .replace("MASKED_LANGUAGE_MODELING", "true")
    .replace("LOSS", LOSS),
    "contrastive_only": REFERENCE.replace("NUM_POSITIVES", "2")
    .replace("MASKED_LANGUAGE_MODELING", "false")
    .replace("LOSS", LOSS),
    "mlm_only": REFERENCE.replace("NUM_POSITIVES", "1").replace("MASKED_LANGUAGE_MODELING", "true").replace("LOSS", ""),
    "transformer_cls": """
local transformer_model = std.extVar("TRANSFORMER_MODEL");
{
    "vocabulary": { "type": "empty" },
    "dataset_reader": {
        "type": "declutr",
        "lazy": true,
        "tokenizer": { "type": "pretrained_transformer", "model_name": transformer_model },
        "token_indexers": { "tokens": { "type": "pretrained_transformer", "model_name": transformer_model } },
    },
    "train_data_path": null,
    "model": {
        "type": "declutr",
        "text_field_embedder": {
            "type": "mlm",
            "token_embedders": {
                "tokens": { "type": "pretrained_transformer_mlm", "model_name": transformer_model, "masked_language_modeling": false },
            },
        },
        "seq2vec_encoder": { "type": "cls_pooler", "embedding_dim": 768, "cls_is_last_token": false },
    },
    "data_loader": { "batch_size": 16 },
    "trainer": { "type": "no_op" },
}
""",
}

PAPER_LINES = [
    "vocabulary -> dropped",
    "dataset_reader.lazy -> dropped",
    "dataset_reader.token_indexers -> dropped",
    "dataset_reader.num_anchors -> dataset_reader.span_sampler.num_anchors",
    "dataset_reader.num_positives -> dataset_reader.span_sampler.num_positives",
    "dataset_reader.min_span_len -> dataset_reader.span_sampler.min_span_len",
    "dataset_reader.max_span_len -> dataset_reader.span_sampler.max_span_len",
    "dataset_reader.tokenizer.type pretrained_transformer -> dropped",
    "dataset_reader.tokenizer.max_length 510 -> dataset_reader.tokenizer.max_length 512 (AllenNLP 1.1 truncated the content to 510",
    'dataset_reader.num_anchors (span sampling) -> dataset_reader.short_documents "error" (as the reference',
    "model.text_field_embedder.type mlm -> dropped",
    "model.text_field_embedder.token_embedders.tokens.type pretrained_transformer_mlm -> model.encoder.type transformer",
    "model.text_field_embedder.token_embedders.tokens.model_name -> model.encoder.model_name",
    "trainer.optimizer.type huggingface_adamw -> adamw",
    "trainer.checkpointer.num_serialized_models_to_keep -1 -> trainer.keep_checkpoints -1",
]


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference")
    files = {}
    for name, text in VARIANTS.items():
        files[name] = root / f"{name}.jsonnet"
        files[name].write_text(text)
    return files


def reference(files, name: str, model: str = "roberta-base") -> dict:
    return evaluate_file(files[name], {"TRANSFORMER_MODEL": model})


def starts(messages: list[str], prefixes: list[str]) -> None:
    for prefix in prefixes:
        assert any(m.startswith(prefix) for m in messages), f"no message starts with {prefix!r}: {messages}"


def test_detection(reference_files, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_MODEL", "m")
    assert all(is_reference_config(reference(reference_files, name)) for name in VARIANTS)
    for path in CONFIG_DIR.glob("*.jsonnet"):
        assert not is_reference_config(evaluate_file(path)), path.name


def test_reference_declutr_translates_to_the_shipped_paper_config(reference_files):
    config, messages = translate(reference(reference_files, "declutr"))
    starts(messages, PAPER_LINES)
    assert len(messages) == len(PAPER_LINES) + 1  # and masked_language_modeling true -> mlm_weight 1
    assert config == {
        "dataset_reader": {
            "type": "declutr",
            "span_sampler": {
                "type": "declutr",
                "num_anchors": 2,
                "num_positives": 2,
                "min_span_len": 32,
                "max_span_len": 512,
            },
            "short_documents": "error",
            "tokenizer": {"model_name": "roberta-base", "max_length": 512},
        },
        "train_data_path": None,
        "model": {
            "type": "declutr",
            "encoder": {"type": "transformer", "model_name": "roberta-base"},
            "loss": {"type": "nt_xent", "temperature": 0.05},
            "scale_fix": False,
        },
        "data_loader": {"batch_size": 4, "num_workers": 1, "drop_last": True},
        "trainer": {
            "use_amp": True,
            "num_epochs": 1,
            "grad_norm": 1.0,
            "keep_checkpoints": -1,
            "optimizer": {
                "type": "adamw",
                "lr": 5e-5,
                "eps": 1e-6,
                "correct_bias": False,
                "weight_decay": 0.1,
                "parameter_groups": [[["bias", "LayerNorm\\.weight", "layer_norm\\.weight"], {"weight_decay": 0}]],
            },
            "learning_rate_scheduler": {"type": "slanted_triangular"},
        },
    }
    # the same training as the shipped declutr_base.jsonnet where both state a value
    shipped = evaluate_file(CONFIG_DIR / "declutr_base.jsonnet")
    sampler = shipped["dataset_reader"]["span_sampler"]
    assert config["dataset_reader"]["span_sampler"].items() <= sampler.items()
    # 510 content tokens + <s> and </s>: the shipped files' model maximum (null = 512 for RoBERTa)
    assert (
        config["dataset_reader"]["tokenizer"]["max_length"] == 512
        and shipped["dataset_reader"]["tokenizer"]["max_length"] is None
    )
    assert config["dataset_reader"]["short_documents"] == shipped["dataset_reader"]["short_documents"] == "error"
    assert config["model"]["loss"] == shipped["model"]["loss"]
    assert config["model"]["encoder"] == shipped["model"]["encoder"]
    assert config["trainer"]["optimizer"] == shipped["trainer"]["optimizer"]
    for key in ("use_amp", "num_epochs", "grad_norm"):
        assert config["trainer"][key] == shipped["trainer"][key]
    assert config["data_loader"] == shipped["data_loader"]


def test_ablations_and_baselines(reference_files):
    config, messages = translate(reference(reference_files, "contrastive_only"))
    assert config["model"]["mlm_weight"] == 0 and config["dataset_reader"]["mlm_probability"] is None
    assert "contrastive_weight" not in config["model"]
    starts(
        messages,
        [
            "model.text_field_embedder.token_embedders.tokens.masked_language_modeling false -> model.mlm_weight 0",
            "model.text_field_embedder.token_embedders.tokens.masked_language_modeling false -> dataset_reader.mlm_probability null",
        ],
    )

    config, messages = translate(reference(reference_files, "mlm_only"))
    assert config["model"]["contrastive_weight"] == 0 and "mlm_weight" not in config["model"]
    assert config["dataset_reader"]["span_sampler"]["num_positives"] == 1
    starts(messages, ["model.loss (absent) -> model.contrastive_weight 0 (MLM only)"])

    config, messages = translate(reference(reference_files, "transformer_cls"))
    assert config["trainer"] == {"type": "no_op"}
    assert config["model"] == {
        "type": "declutr",
        "encoder": {"type": "transformer", "model_name": "roberta-base"},
        "pooler": {"type": "cls"},
        "mlm_weight": 0,
    }
    assert "span_sampler" not in config["dataset_reader"]
    starts(
        messages,
        [
            "model.seq2vec_encoder.type cls_pooler -> model.pooler.type cls",
            "model.seq2vec_encoder.embedding_dim -> dropped",
            "model.seq2vec_encoder.cls_is_last_token -> dropped",
            "trainer.type no_op -> model.mlm_weight 0",
        ],
    )


def test_feedforward_sampling_strategy_and_distributed():
    config, messages = translate(
        {
            "vocabulary": {"type": "empty"},
            "dataset_reader": {"type": "declutr", "num_anchors": 2, "sampling_strategy": "subsuming"},
            "model": {
                "type": "declutr",
                "feedforward": {
                    "input_dim": 768,
                    "num_layers": 2,
                    "hidden_dims": 128,
                    "activations": {"type": "relu"},
                    "dropout": [0.1, 0.1],
                },
                "loss": {"type": "nt_xent"},
            },
            "trainer": {
                "num_gradient_accumulation_steps": 2,
                "learning_rate_scheduler": {"type": "slanted_triangular", "num_epochs": 1, "num_steps_per_epoch": 9},
            },
            "distributed": {"cuda_devices": [0, 1]},
            "numpy_seed": 1,
            "pytorch_seed": 1,
            "random_seed": 1,
        }
    )
    assert config["dataset_reader"]["span_sampler"] == {"type": "declutr", "num_anchors": 2, "strategy": "subsuming"}
    assert config["model"]["feedforward"] == {"hidden_dims": [128, 128], "activations": "relu", "dropout": 0.1}
    assert config["trainer"] == {
        "gradient_accumulation_steps": 2,
        "learning_rate_scheduler": {"type": "slanted_triangular"},
    }
    assert config["distributed"] == {"cuda_devices": [0, 1]} and config["random_seed"] == 1
    assert "numpy_seed" not in config and "pytorch_seed" not in config
    starts(
        messages,
        [
            "dataset_reader.sampling_strategy -> dataset_reader.span_sampler.strategy",
            "model.feedforward.input_dim -> dropped",
            "model.feedforward.num_layers 2 -> dropped",
            "trainer.num_gradient_accumulation_steps -> trainer.gradient_accumulation_steps",
            "trainer.learning_rate_scheduler.num_steps_per_epoch -> dropped",
            "numpy_seed -> dropped",
        ],
    )


def test_config_command_prints_the_translation(reference_files):
    result = CliRunner().invoke(
        main,
        [
            "config",
            str(reference_files["declutr"]),
            "--ext-var",
            "TRANSFORMER_MODEL=m",
            "--overrides",
            '{"distributed": {"cuda_devices": [0, 1, 2, 3]}}',
        ],
    )
    assert result.exit_code == 0, result.output
    printed = [
        line.removeprefix("translated: ") for line in result.stderr.splitlines() if line.startswith("translated: ")
    ]
    starts(printed, PAPER_LINES)
    config = json.loads(result.stdout)
    assert config["distributed"] == {"cuda_devices": [0, 1, 2, 3]}
    assert config["trainer"]["optimizer"]["type"] == "adamw" and "vocabulary" not in config


def test_unknown_reference_keys_are_reported_with_their_path(reference_files, tmp_path):
    text = VARIANTS["declutr"].replace(
        '"scale_fix": false,', '"scale_fix": false, "miner": { "type": "multi_similarity" },'
    )
    text = text.replace('"lazy": true,', '"lazy": true, "max_instances": 10,')
    path = tmp_path / "unknown.jsonnet"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        resolve_experiment(str(path), None, ("TRANSFORMER_MODEL=m",))
    problems = info.value.problems
    assert any(p.startswith('model: unexpected key "miner"') for p in problems), problems
    assert any(p.startswith('dataset_reader: unexpected key "max_instances"') for p in problems), problems
    result = CliRunner().invoke(
        main, ["train", str(path), "-s", str(tmp_path / "run"), "--ext-var", "TRANSFORMER_MODEL=m"]
    )
    assert result.exit_code == 1 and "miner" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_train_a_reference_file(name, reference_files, tiny_roberta, documents_file, tmp_path):
    overrides = {
        "train_data_path": str(documents_file),
        "dataset_reader.span_sampler.min_span_len": 8,
        "dataset_reader.span_sampler.max_span_len": 32,
        "data_loader.num_workers": 0,
        "trainer.max_steps": 2,
        "trainer.show_progress": False,
        "trainer.log_every": 1,
    }
    if name == "transformer_cls":
        overrides = {}
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(reference_files[name]),
            "-s",
            str(run),
            "--ext-var",
            f"TRANSFORMER_MODEL={tiny_roberta}",
            "--overrides",
            json.dumps(overrides),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "translated: dataset_reader.lazy -> dropped" in result.stderr
    saved = json.loads((run / "config.json").read_text())
    assert "vocabulary" not in saved and saved["model"]["encoder"]["model_name"] == str(tiny_roberta)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == (0 if name == "transformer_cls" else 2)
    assert (run / "model" / "config.json").is_file()
