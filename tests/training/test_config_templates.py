"""The shipped templates (training_config/lib/declutr.libsonnet) refuse hyperparameters they do
not know, so a misspelt knob is an error rather than a silent default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.declutr_process import run_declutr

CONFIGS = Path(__file__).resolve().parents[2] / "training_config"


@pytest.mark.parametrize(
    ("experiment", "template"),
    [
        ("declutr_base", "declutr"),
        ("simcse_unsup", "simcse"),
        ("isbert", "isbert"),
        ("transformer_mean", "transformer"),
    ],
)
def test_an_unknown_hyperparameter_is_an_error_naming_it_and_the_file(tmp_path, experiment, template):
    config = tmp_path / "exp.jsonnet"
    config.write_text(f'(import "{CONFIGS / experiment}.jsonnet") + {{ hyperparameters+:: {{ mlm_weigth: 0 }} }}\n')
    result = run_declutr("config", config)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "lib/declutr.libsonnet:" in lines[0]
    assert f"unknown hyperparameters of the {template} template: mlm_weigth (known: " in lines[0]


def test_a_known_hyperparameter_changes_the_final_key(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text(f'(import "{CONFIGS}/declutr_base.jsonnet") + {{ hyperparameters+:: {{ mlm_weight: 0 }} }}\n')
    result = run_declutr("config", config)
    assert result.returncode == 0, result.stderr
    assert '"mlm_weight": 0' in result.stdout


def test_hyperparameters_share_the_final_keys_names_and_old_names_say_so(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text(
        f'(import "{CONFIGS}/declutr_base.jsonnet") + {{ hyperparameters+:: {{ model_name: "m", strategy: "subsuming", unit: "whitespace" }} }}\n'
    )
    result = run_declutr("config", config)
    assert result.returncode == 0, result.stderr
    for key in ('"model_name": "m"', '"strategy": "subsuming"', '"unit": "whitespace"'):
        assert key in result.stdout
    config.write_text(
        f'(import "{CONFIGS}/declutr_base.jsonnet") + {{ hyperparameters+:: {{ span_unit: "whitespace" }} }}\n'
    )
    result = run_declutr("config", config)
    assert result.returncode == 1
    assert "unknown hyperparameters of the declutr template: span_unit (renamed unit) (known: " in result.stderr
