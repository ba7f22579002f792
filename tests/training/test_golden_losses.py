"""Golden losses (as torchtune's recipe tests): the first five logged losses of a tiny DeCLUTR run
are pinned, so a numeric change that shifts every run alike (which the resume and distributed
equality tests cannot see) fails here. A deliberate change of the numerics updates these values
and says why in its commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from declutr.testing import make_tiny_model, tiny_declutr_config, train_tiny, write_documents

# declutr.testing.make_tiny_model(seed=0, "roberta") + make_documents() + tiny_declutr_config, CPU
GOLDEN = {
    "mlm_loss": [6.000845432281494, 5.965777397155762, 5.950145244598389, 5.986657619476318, 5.937470436096191],
    "contrastive_loss": [
        1.0071160793304443,
        0.9315646290779114,
        1.3089981079101562,
        1.0729496479034424,
        1.0209143161773682,
    ],
    "loss": [7.007961273193359, 6.897342205047607, 7.259143352508545, 7.05960750579834, 6.9583845138549805],
}


def test_the_first_five_losses_of_a_tiny_declutr_run(tmp_path):
    model = make_tiny_model(tmp_path / "model", "roberta")
    data = write_documents(tmp_path / "documents.jsonl")
    records = train_tiny(tiny_declutr_config(model, data, max_steps=5), tmp_path / "run")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    for key, expected in GOLDEN.items():
        assert [r[key] for r in steps] == pytest.approx(expected, rel=1e-4), key


def test_the_golden_losses_do_not_depend_on_the_thread_count(tmp_path):
    """The same five steps on one thread, in another process (a guard that the pins are not an
    accident of this machine's parallelism)."""
    code = (
        "import json, sys; from pathlib import Path; from declutr.testing import *; p = Path(sys.argv[1]); "
        "m = make_tiny_model(p / 'model'); d = write_documents(p / 'documents.jsonl'); "
        "print(json.dumps([r['loss'] for r in train_tiny(tiny_declutr_config(m, d), p / 'run') if 'loss' in r]))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == pytest.approx(GOLDEN["loss"], rel=1e-4)
