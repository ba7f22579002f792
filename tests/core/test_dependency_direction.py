"""The import graph users rely on: light entry points, every kind listed, no cycles, small files."""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: the most lines a Python file of the library or of ``bin/`` may have
MAX_LINES = 600


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


def import_graph() -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """``(files, graph)``: each module of ``declutr/`` and its file, and for each module the other
    ``declutr`` modules it imports anywhere (at module level, in a function, under
    ``TYPE_CHECKING``), each with the line of its first import there. ``from package import name``
    is an import of the submodule ``package.name`` when there is one, else of the package."""
    files = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted((REPO / "declutr").rglob("*.py"))
    }
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imports = graph[module] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                source = ".".join(part for part in (base, node.module) if part)
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            for target in targets:
                if target in files and target != module:
                    imports.setdefault(target, node.lineno)
    return files, graph


def test_no_two_modules_import_each_other():
    files, graph = import_graph()
    assert graph["declutr.commands.train"]  # the walk sees function-local imports
    cycles = [
        f"{files[a].relative_to(REPO)}:{graph[a][b]} <-> {files[b].relative_to(REPO)}:{graph[b][a]}"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if a < b and a in graph[b]
    ]
    assert cycles == []


def python_files() -> list[Path]:
    """The library's Python files, and ``bin/``'s: ``*.py`` and extension-less python scripts."""
    scripts = [
        path
        for path in sorted((REPO / "bin").iterdir())
        if path.is_file() and not path.suffix and b"python" in path.open("rb").readline()
    ]
    return sorted((REPO / "declutr").rglob("*.py")) + sorted((REPO / "bin").glob("*.py")) + scripts


def test_no_python_file_is_over_the_line_limit():
    files = python_files()
    assert any(path.parent.name == "bin" and not path.suffix for path in files)  # the scripts are seen
    long = {
        str(path.relative_to(REPO)): count
        for path in files
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
