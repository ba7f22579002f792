"""``Experiment``: the one place that wires a run, usable from Python with the CLI's checks."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from declutr.core.errors import ConfigurationError
from declutr.testing import tiny_declutr_config
from declutr.training import Experiment
from declutr.training.run import train_model
from tests.fixtures.declutr_process import run_declutr


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.fixture
def experiment_file(tmp_path, tiny_roberta, documents_file):
    config = tiny_declutr_config("MODEL", "DATA", max_steps=3)
    text = json.dumps(config, indent=2).replace('"MODEL"', 'std.extVar("M")').replace('"DATA"', 'std.extVar("D")')
    path = tmp_path / "exp.jsonnet"
    path.write_text(text)
    return path, {"M": str(tiny_roberta), "D": str(documents_file)}


def test_the_python_equivalent_of_declutr_train_trains_the_same_run(experiment_file, tmp_path):
    path, variables = experiment_file
    experiment = Experiment.from_file(path, overrides={"trainer.log_every": 1}, ext_vars=variables)
    metrics = train_model(experiment, tmp_path / "python")
    ext_vars = [arg for key, value in variables.items() for arg in ("--ext-var", f"{key}={value}")]
    result = run_declutr("train", path, "-s", tmp_path / "cli", "--overrides", '{"trainer.log_every": 1}', *ext_vars)
    assert result.returncode == 0, result.stderr
    assert metrics["step"] == 3 and (tmp_path / "python" / "model" / "model.safetensors").is_file()
    assert losses(tmp_path / "python") == pytest.approx(losses(tmp_path / "cli"), rel=1e-6)
    assert json.loads((tmp_path / "python" / "config.json").read_text()) == experiment.config


def test_from_file_applies_the_checks_of_the_cli(experiment_file):
    path, variables = experiment_file
    with pytest.raises(ConfigurationError) as caught:
        Experiment.from_file(path, overrides={"trainer.num_epoch": 1, "model.mlm_weight": "x"}, ext_vars=variables)
    assert sorted(caught.value.problems) == [
        'model.mlm_weight: expected float, got "x" (from --overrides)',
        'trainer: unexpected key "num_epoch" (did you mean "num_epochs"?) (from --overrides)',
    ]


def test_the_device_is_a_run_time_argument(experiment_file, tmp_path):
    path, variables = experiment_file
    experiment = Experiment.from_file(path, overrides={"trainer.cuda_device": 7}, ext_vars=variables)
    trainer = experiment.build(tmp_path / "run", device=-1)  # the process's own device wins over the key
    assert trainer.device == torch.device("cpu") and experiment.config["trainer"]["cuda_device"] == 7
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="trainer.cuda_device: CUDA device 7 is not available"):
            experiment.build(tmp_path / "run")


def test_the_top_level_is_built_from_the_schema_without_loading_anything():
    config = tiny_declutr_config("no/such/model", "no/such/data")  # nothing is read before build()
    del config["random_seed"]
    experiment = Experiment(config)
    assert experiment.random_seed == 13 and experiment.distributed is None  # the schema's defaults
    assert experiment.trains and experiment.cuda_device is None
    trainer = {**config["trainer"], "cuda_device": -1}
    experiment = Experiment({**config, "trainer": trainer, "distributed": {"cuda_devices": [-1, -1]}})
    assert experiment.distributed.backend == "gloo" and experiment.distributed.backend_is_default
    assert experiment.cuda_device == -1
    assert not Experiment({**config, "trainer": {"type": "no_op"}}).trains
    copy = pickle.loads(pickle.dumps(experiment))  # how a spawned process receives it
    assert copy.config == experiment.config and copy.distributed.cuda_devices == [-1, -1]


def test_from_file_validates_once(experiment_file, monkeypatch):
    from declutr.core import construct

    calls = []
    validate = construct.validate
    monkeypatch.setattr(construct, "validate", lambda *args, **kwargs: calls.append(1) or validate(*args, **kwargs))
    path, variables = experiment_file
    Experiment.from_file(path, ext_vars=variables)
    assert len(calls) == 1
