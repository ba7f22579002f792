"""How errors reach the user: a mistake is one line with its key path; a bug is one line that
says how to see its stack (``declutr --traceback`` or ``DECLUTR_TRACEBACK=1``), which then shows it."""

from __future__ import annotations

import textwrap

import pytest

from declutr.core.construct import build
from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.core.registrable import Registrable
from tests.fixtures.declutr_process import run_declutr

PLUGIN = """
from declutr.core.errors import DeclutrError
from declutr.training.callbacks import Callback


@Callback.register("boom")
class Boom(Callback):
    def __init__(self, how: str):
        if how == "bug":
            raise RuntimeError("a genuine bug in the plugin")
        if how == "value":
            raise ValueError("how must not be value")
        if how == "mistake":
            raise DeclutrError("the folder xyz does not exist")
"""

CONFIG = """
local m = std.extVar("M");
{
  dataset_reader: { type: "declutr", tokenizer: { model_name: m },
                    span_sampler: { num_anchors: 1, num_positives: 1, min_span_len: 8, max_span_len: 16 } },
  train_data_path: std.extVar("DATA"),
  data_loader: { batch_size: 2 },
  model: { type: "declutr", encoder: { model_name: m } },
  trainer: { max_steps: 1, show_progress: false, callbacks: [{ type: "boom", how: std.extVar("HOW") }] },
}
"""


class Thing(Registrable):
    pass


@Thing.register("checks")
class Checks(Thing):
    def __init__(self, folder: str):
        raise DeclutrError(f"{folder}: does not exist")


def test_the_builder_prefixes_a_component_error_with_its_key_path():
    with pytest.raises(ConfigurationError) as caught:
        build(Thing, {"type": "checks", "folder": "/nowhere"}, "trainer.callbacks[0]")
    assert caught.value.problems == ["trainer.callbacks[0]: /nowhere: does not exist"]


@pytest.fixture(scope="module")
def boom(tmp_path_factory, tiny_roberta, documents_file):
    root = tmp_path_factory.mktemp("boom")
    (root / "boom_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (root / "exp.jsonnet").write_text(CONFIG)

    def train(how: str, *flags: str, env: dict | None = None):
        run_dir = root / f"run-{how}-{len(flags)}-{bool(env)}"
        return run_declutr(
            *flags,
            "train",
            root / "exp.jsonnet",
            "-s",
            run_dir,
            "--include-package",
            "boom_plugin",
            "--ext-var",
            f"M={tiny_roberta}",
            "--ext-var",
            f"DATA={documents_file}",
            "--ext-var",
            f"HOW={how}",
            extra_path=[root],
            env={"DECLUTR_TRACEBACK": "", **(env or {})},
        )

    return train


def test_a_user_mistake_is_one_line_with_its_key_path(boom):
    result = boom("mistake")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: trainer.callbacks[0]: the folder xyz does not exist"
    assert "Traceback" not in result.stderr


def test_an_unexpected_error_is_one_line_that_says_how_to_see_the_stack(boom):
    result = boom("bug")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: RuntimeError: a genuine bug in the plugin (unexpected;")
    assert "--traceback" in last and "DECLUTR_TRACEBACK=1" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("switch", ["flag", "environment"])
def test_the_switch_shows_the_stack(boom, switch):
    result = boom("bug", "--traceback") if switch == "flag" else boom("bug", env={"DECLUTR_TRACEBACK": "1"})
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'boom_plugin.py", line' in result.stderr and "RuntimeError: a genuine bug in the plugin" in result.stderr


def test_a_value_error_from_a_constructor_keeps_its_cause_behind_the_switch(boom):
    quiet = boom("value")
    assert quiet.returncode == 1
    lines = quiet.stderr.strip().splitlines()
    assert lines[-2:] == [
        "Error: trainer.callbacks[0]: how must not be value",
        "Error: (raised as ValueError; declutr --traceback ... or DECLUTR_TRACEBACK=1 shows the stack)",
    ]
    loud = boom("value", env={"DECLUTR_TRACEBACK": "1"})
    assert 'boom_plugin.py", line' in loud.stderr and "ValueError: how must not be value" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == "Error: trainer.callbacks[0]: how must not be value"
