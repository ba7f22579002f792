"""A model with its own training step is one class in a plugin package: the example of
docs/plugins.md, taken from the page, computes the gradient of its plain step and trains through
``declutr train --include-package``."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch

from declutr.core.construct import build
from declutr.core.registrable import Registrable
from declutr.models import Model
from declutr.testing import tiny_declutr_config, write_documents
from tests.fixtures.declutr_process import run_declutr
from tests.models.modelhelpers import make_batch

PAGE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def example_source() -> str:
    """The code block of docs/plugins.md that starts with ``# my_plugin/models.py``."""
    (source,) = re.findall(r"```python\n(# my_plugin/models\.py\n.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    return source


@pytest.fixture
def plugin_package(tmp_path) -> Path:
    """The page's example as the package ``my_plugin`` under the returned folder."""
    package = tmp_path / "plugins" / "my_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from my_plugin import models  # noqa: F401\n")
    (package / "models.py").write_text(example_source())
    return package.parent


@pytest.fixture
def chunked_mlm(plugin_package):
    """The example's class, registered in this process for the test only."""
    spec = importlib.util.spec_from_file_location("my_plugin_models", plugin_package / "my_plugin" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.ChunkedMaskedLM
    del Registrable._registry[Model]["chunked_mlm"]


def test_the_example_step_has_the_gradient_of_the_plain_step(chunked_mlm, tiny_roberta, roberta_tokenizer):
    torch.manual_seed(0)
    model = build(Model, {"type": "chunked_mlm", "encoder": {"model_name": str(tiny_roberta)}, "rows_per_pass": 1})
    model = model.double().eval()  # no dropout: the chunks compute the network of the whole batch
    batch = make_batch(roberta_tokenizer)
    assert len(model.sub_batches(batch["anchors"])) == len(batch["anchors"]["input_ids"])

    output = model(batch)
    output["loss"].backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    calls = []
    stepped = model.training_step(batch, lambda loss: (calls.append(loss), loss.backward()))

    assert len(calls) == len(batch["anchors"]["input_ids"])  # one backward per chunk
    torch.testing.assert_close(stepped["loss"], output["loss"].detach())
    assert len(expected) > 10
    for name, parameter in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-10, atol=1e-12, msg=name)


def test_the_example_trains_through_declutr_train_include_package(plugin_package, tiny_roberta, tmp_path):
    config = tiny_declutr_config(tiny_roberta, write_documents(tmp_path / "documents.jsonl"), max_steps=3)
    config["model"] = {"type": "chunked_mlm", "encoder": {"model_name": str(tiny_roberta)}, "rows_per_pass": 1}
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(config))

    result = run_declutr(
        "train", path, "-s", tmp_path / "run", "--include-package", "my_plugin", extra_path=[plugin_package]
    )

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [record for record in records if "mlm_loss" in record]
    assert [record["step"] for record in steps] == [1, 2, 3]
    assert all(math.isfinite(record["mlm_loss"]) and record["loss"] == record["mlm_loss"] for record in steps)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
