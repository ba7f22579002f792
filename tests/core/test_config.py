"""Experiment files: JSONnet, ext vars, overrides, error locations."""

from __future__ import annotations

import pytest

from declutr.core.config import evaluate_file, locate, merge, parse_ext_vars, parse_overrides, unflatten
from declutr.core.errors import ConfigurationError


def test_jsonnet_imports_ext_vars_and_overrides(tmp_path, monkeypatch):
    (tmp_path / "common.libsonnet").write_text("{ trainer: { num_epochs: 1, optimizer: { lr: 5e-5 } } }")
    (tmp_path / "exp.jsonnet").write_text(
        'local common = import "common.libsonnet";\n'
        'common + { model: { name: std.extVar("MODEL") }, seed: std.parseInt(std.extVar("SEED")) }\n'
    )
    monkeypatch.setenv("SEED", "7")
    overrides = parse_overrides('{"trainer.optimizer.lr": 1e-4, "trainer": {"grad_norm": 1}}')
    config = merge(evaluate_file(tmp_path / "exp.jsonnet", {"MODEL": "m"}), overrides)
    assert config == {
        "trainer": {"num_epochs": 1, "optimizer": {"lr": 1e-4}, "grad_norm": 1},
        "model": {"name": "m"},
        "seed": 7,
    }


def test_plain_json_and_jsonnet_overrides(tmp_path):
    (tmp_path / "exp.json").write_text('{"a": {"b": 1, "c": [1, 2]}}')
    config = merge(evaluate_file(tmp_path / "exp.json"), parse_overrides("{a+: {c: [3]}}"))
    assert config == {"a": {"b": 1, "c": [3]}}


def test_syntax_error_shows_file_and_line(tmp_path):
    (tmp_path / "bad.jsonnet").write_text("{\n  a: 1,\n  b: ,\n}\n")
    with pytest.raises(ConfigurationError) as info:
        evaluate_file(tmp_path / "bad.jsonnet")
    message = str(info.value)
    assert "\n" not in message and "bad.jsonnet:3" in message


def test_missing_file_and_bad_ext_var(tmp_path):
    with pytest.raises(ConfigurationError, match="no such experiment file"):
        evaluate_file(tmp_path / "nope.jsonnet")
    with pytest.raises(ConfigurationError, match="expected KEY=VALUE"):
        parse_ext_vars(["NOVALUE"])
    (tmp_path / "e.jsonnet").write_text('{ m: std.extVar("UNSET_VARIABLE_XYZ") }')
    with pytest.raises(ConfigurationError, match="UNSET_VARIABLE_XYZ"):
        evaluate_file(tmp_path / "e.jsonnet")


def test_unflatten_dotted_keys():
    assert unflatten({"a.b.c": 1, "a.b.d": 2, "e": {"f.g": 3}}) == {"a": {"b": {"c": 1, "d": 2}}, "e": {"f": {"g": 3}}}


def test_locate_finds_the_line_of_the_key(tmp_path):
    path = tmp_path / "exp.jsonnet"
    path.write_text(
        '{\n  model: {\n    loss: {\n      temperature: "abc",\n    },\n  },\n  trainer: { num_epoch: 2 },\n}\n'
    )
    assert locate('model.loss.temperature: expected float, got "abc"', path).endswith(f"({path}:4)")
    assert locate('trainer: unexpected key "num_epoch" (did you mean "num_epochs"?)', path).endswith(f"({path}:7)")


def test_locate_ignores_comments_and_claims_a_line_only_for_a_key_written_once(tmp_path):
    path = tmp_path / "exp.jsonnet"
    path.write_text(
        "// train_data_path: set it with --overrides\n"
        "/* lr: a block comment */\n"
        '{\n  train_data_path: "x",  # lr: also a comment\n'
        "  a: { lr: 1 },\n  b: { lr: 2 },\n}\n"
    )
    assert locate("train_data_path: no such file", path) == f"train_data_path: no such file ({path}:4)"
    assert locate("b.lr: expected float", path) == "b.lr: expected float"  # two lr keys: no guess


def test_locate_names_overrides_and_imported_files(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.libsonnet").write_text(
        "{\n  model: { mlm_weight: 1 },\n  trainer: { log_every: 1 },\n}\n"
    )
    (tmp_path / "more.libsonnet").write_text("{ a: { log_every: 2 } }\n")
    path = tmp_path / "exp.jsonnet"
    path.write_text('local lib = import "lib/base.libsonnet";\nlib + (import "more.libsonnet") + { x: 1 }\n')
    base = tmp_path / "lib" / "base.libsonnet"
    assert locate("model.mlm_weight: expected float", path) == f"model.mlm_weight: expected float ({base}:2)"
    assert locate("trainer.log_every: bad", path) == "trainer.log_every: bad"  # in two files
    overrides = {"model": {"mlm_weight": "x"}, "trainer": {"callbacks": [{"type": "senteval"}]}}
    assert locate("model.mlm_weight: expected float", path, overrides).endswith("(from --overrides)")
    assert locate("trainer.callbacks[0].type: unknown", path, overrides).endswith("(from --overrides)")
    assert locate("model.x: bad", path, overrides) == f"model.x: bad ({path}:2)"
    assert locate("model.y: bad", path, overrides) == "model.y: bad"
