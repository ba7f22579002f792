"""The import graph users rely on: light entry points, and every kind listed."""

import json
import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)


def test_importing_declutr_and_its_cli_loads_no_torch():
    code = (
        "import sys, declutr, declutr.commands; print(sorted(m for m in sys.modules if m in ('torch', 'transformers')))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_evaluation_loads_no_torch():
    result = run_python("import sys, declutr.evaluation; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_callbacks_do_not_import_the_loop():
    from pathlib import Path

    import declutr

    package = Path(declutr.__file__).parent
    for module in ("training/callbacks.py", "evaluation/callback.py"):
        assert "declutr.training.trainer" not in (package / module).read_text(encoding="utf-8"), module


def test_components_lists_every_kind_including_the_evaluation_tasks():
    from declutr.commands.components import describe_all

    described = describe_all()
    assert "STSBenchmark" in described["senteval_task"]
    assert described["callback"]["senteval"]["class"] == "declutr.evaluation.callback.SentEvalEvaluation"
    json.dumps(described)


def test_importing_the_main_module_does_not_run_the_cli():
    result = run_python("import declutr.__main__; print('imported')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
