"""The CLI as a user runs it: plugins by all three routes, components, config dry runs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.declutr_process import run_declutr

PLUGIN_ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "plugin_pkg"


def declutr(*args, cwd=None, extra_path=(), env=None):
    return run_declutr(*args, cwd=cwd, extra_path=extra_path, env=env, timeout=300)


def test_version_and_help():
    result = declutr("--version")
    assert result.returncode == 0 and "declutr" in result.stdout
    result = declutr("--help")
    assert result.returncode == 0
    for name in ("train", "config", "components"):
        assert name in result.stdout


def test_plugin_by_include_package(tmp_path):
    result = declutr(
        "components", "callback", "--include-package", "declutr_test_plugin", cwd=tmp_path, extra_path=[PLUGIN_ROOT]
    )
    assert result.returncode == 0, result.stderr
    assert "plugin_heartbeat" in result.stdout and "every: int = 1" in result.stdout
    result = declutr(
        "plugin-hello",
        "--name",
        "x",
        "--include-package",
        "declutr_test_plugin",
        cwd=tmp_path,
        extra_path=[PLUGIN_ROOT],
    )
    assert result.returncode == 0, result.stderr
    assert "hello x from declutr_test_plugin" in result.stdout
    assert "plugin_heartbeat" not in declutr("components", "callback", cwd=tmp_path).stdout


def test_plugin_by_plugins_file(tmp_path):
    (tmp_path / ".declutr_plugins").write_text("# my plugins\ndeclutr_test_plugin\n")
    result = declutr("plugin-hello", cwd=tmp_path, extra_path=[PLUGIN_ROOT])
    assert result.returncode == 0, result.stderr
    assert "hello world" in result.stdout
    assert "plugin_heartbeat" in declutr("components", "callback", cwd=tmp_path, extra_path=[PLUGIN_ROOT]).stdout


def test_plugin_by_entry_point(tmp_path):
    dist = tmp_path / "site" / "declutr_test_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: declutr-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[declutr.plugins]\ntest = declutr_test_plugin.components\n")
    result = declutr("plugin-hello", cwd=tmp_path, extra_path=[tmp_path / "site", PLUGIN_ROOT])
    assert result.returncode == 0, result.stderr
    assert "hello world" in result.stdout


def test_plugin_that_fails_to_import_is_named(tmp_path):
    result = declutr("components", "--include-package", "no_such_plugin_xyz", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --include-package: cannot import plugin \"no_such_plugin_xyz\": ModuleNotFoundError: No module named 'no_such_plugin_xyz'"
    ]


def test_components_lists_every_kind_with_parameters(tmp_path):
    result = declutr("components", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert {"optimizer", "learning_rate_scheduler", "trainer", "callback"} <= set(described)
    adamw = {p["name"]: p for p in described["optimizer"]["adamw"]["parameters"]}
    assert adamw["correct_bias"] == {"name": "correct_bias", "type": "bool", "default": True}
    assert "model_parameters" not in adamw  # injected at run time, not a config key
    result = declutr("components", "optimiser", cwd=tmp_path)
    assert result.returncode == 1 and 'did you mean "optimizer"?' in result.stderr


def test_config_errors_are_one_line_each_with_location(tmp_path):
    config = tmp_path / "bad.jsonnet"
    config.write_text('{\n  trainer: {\n    num_epoch: 1,\n    optimizer: { type: "adamw", lr: "fast" },\n  },\n}\n')
    result = declutr("config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("Error: ") for line in lines)
    assert any(
        f'trainer: unexpected key "num_epoch" (did you mean "num_epochs"?) ({config}:3)' in line for line in lines
    )
    assert any(f'trainer.optimizer.lr: expected float, got "fast" ({config}:4)' in line for line in lines)
    assert "Traceback" not in result.stderr


def test_jsonnet_syntax_error_from_the_cli(tmp_path):
    config = tmp_path / "broken.jsonnet"
    config.write_text("{\n  model: {,\n}\n")
    result = declutr("config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{config}:2" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", [[], ["--overrides", "{not json"]])
def test_bad_overrides_or_missing_file(tmp_path, flag):
    config = tmp_path / "x.jsonnet"
    if flag:
        config.write_text("{}")
    result = declutr("config", str(config), *flag, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_error_from_overrides_says_so(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text("{\n  // trainer: { num_epochs: 1 } is the default\n  trainer: {},\n}\n")
    result = declutr("config", str(config), "--overrides", '{"trainer.num_epochs": "two"}', cwd=tmp_path)
    assert result.returncode == 1
    assert 'Error: trainer.num_epochs: expected int, got "two" (from --overrides)' in result.stderr.splitlines()


def test_config_checks_the_values_of_lazily_built_components(tmp_path):
    config = tmp_path / "exp.jsonnet"
    config.write_text(
        '{\n  dataset_reader: { type: "declutr", tokenizer: { model_name: "m" } },\n'
        '  model: { type: "declutr", encoder: { model_name: "m" } },\n  trainer: {},\n'
        "  data_loader: {\n    batch_size: 0,\n  },\n}\n"
    )
    result = declutr("config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: data_loader.batch_size: must be at least 1, got 0 ({config}:6)"
    ]
