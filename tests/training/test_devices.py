"""Devices a config asks for that the machine lacks: one line naming the key, before anything spawns or loads."""

from __future__ import annotations

import json

import pytest
import torch

from declutr.core.errors import ConfigurationError
from declutr.training import devices
from declutr.training.experiment import DistributedConfig
from tests.fixtures.declutr_process import run_declutr

CONFIG = """
local m = std.extVar("M");
{
  dataset_reader: { type: "declutr", tokenizer: { model_name: m },
                    span_sampler: { num_anchors: 2, num_positives: 2, min_span_len: 8, max_span_len: 32 } },
  train_data_path: std.extVar("DATA"),
  data_loader: { batch_size: 2, drop_last: true },
  model: { type: "declutr", encoder: { model_name: m }, loss: { type: "nt_xent", temperature: 0.05 } },
  trainer: { num_epochs: 1, optimizer: { type: "adamw", lr: 1e-3 }, show_progress: false },
  random_seed: 3,
}
"""


def test_cuda_devices_the_machine_lacks_are_one_line_before_any_spawn(documents_file, tmp_path):
    from declutr.testing import make_tiny_model

    model = make_tiny_model(tmp_path / "model", "roberta")
    (tmp_path / "exp.jsonnet").write_text(CONFIG)
    missing = torch.cuda.device_count() if torch.cuda.is_available() else 0
    overrides = {"distributed": {"cuda_devices": [missing, missing + 1]}}
    result = run_declutr(
        "train", tmp_path / "exp.jsonnet", "-s", tmp_path / "run",
        "--ext-var", f"M={model}", "--ext-var", f"DATA={documents_file}", "--overrides", json.dumps(overrides),
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"distributed.cuda_devices[0]: CUDA device {missing} is not available; this machine has" in result.stderr
    assert f"distributed.cuda_devices[1]: CUDA device {missing + 1} is not available" in result.stderr
    assert not (tmp_path / "run").exists()  # checked before the run directory, processes or weights


def settings(config: dict) -> tuple[DistributedConfig | None, int | None]:
    """What ``check_devices`` receives of an experiment with these keys."""
    distributed = DistributedConfig(**config["distributed"]) if "distributed" in config else None
    return distributed, config.get("trainer", {}).get("cuda_device")


@pytest.mark.parametrize(
    ("config", "machine", "nccl", "expected"),
    [
        ({"distributed": {"cuda_devices": [0, 1]}}, (0, "this machine has no CUDA device"), False,
         [("distributed.cuda_devices[0]: CUDA device 0 is not available; this machine has no CUDA device; "
           "use -1 for CPU processes (gloo)"),
          ("distributed.cuda_devices[1]: CUDA device 1 is not available; this machine has no CUDA device; "
           "use -1 for CPU processes (gloo)"),
          "distributed.cuda_devices: the nccl backend is not built into this torch; use gloo (cuda_devices -1)"]),
        ({"distributed": {"cuda_devices": [0, 1, 2]}}, (2, "this machine has 2 CUDA devices (0..1)"), True,
         ["distributed.cuda_devices[2]: CUDA device 2 is not available; this machine has 2 CUDA devices (0..1)"]),
        ({"distributed": {"cuda_devices": [0, 1], "backend": "nccl"}}, (2, "2 devices"), False,
         ["distributed.backend: the nccl backend is not built into this torch; use gloo (cuda_devices -1)"]),
        ({"distributed": {"cuda_devices": [-1, -1], "backend": "nccl"}}, (0, "no CUDA"), False,
         ["distributed.backend: the nccl backend is not built into this torch; use gloo (cuda_devices -1)"]),
        ({"trainer": {"cuda_device": 3}}, (1, "this machine has 1 CUDA device (0..0)"), True,
         ["trainer.cuda_device: CUDA device 3 is not available; this machine has 1 CUDA device (0..0)"]),
    ],
)  # fmt: skip
def test_each_missing_device_is_named_by_its_key(monkeypatch, config, machine, nccl, expected):
    monkeypatch.setattr(devices, "_machine", lambda: machine)
    monkeypatch.setattr(devices, "_nccl_built", lambda: nccl)
    with pytest.raises(ConfigurationError) as error:
        devices.check_devices(*settings(config))
    assert error.value.problems == expected


@pytest.mark.parametrize(
    "config",
    [
        {"distributed": {"cuda_devices": [-1, -1]}},
        {"distributed": {"cuda_devices": [0, 1]}, "trainer": {"cuda_device": -1}},
        {"trainer": {"cuda_device": None}},
        {},
    ],
)
def test_devices_the_machine_has_pass(monkeypatch, config):
    monkeypatch.setattr(devices, "_machine", lambda: (2, "this machine has 2 CUDA devices (0..1)"))
    monkeypatch.setattr(devices, "_nccl_built", lambda: True)
    devices.check_devices(*settings(config))
