"""The preprocessing scripts on small archives and raw files made here."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path

from declutr.data.preprocess import wikitext_documents

BIN = Path(__file__).resolve().parents[2] / "bin"


def tar_bytes(files: dict[str, bytes], mode: str = "w:xz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    """The script as a user runs it, in a fresh interpreter."""
    command = [sys.executable, str(BIN / script), *args, "--no-progress"]
    return subprocess.run(command, check=False, capture_output=True, text=True)


def run_here(script: str, *args: str, capsys) -> tuple[int, str, str]:
    """The script's ``main`` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), BIN / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    code = module.main([*args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_openwebtext_nested_archives(tmp_path, tiny_roberta, documents, capsys):
    subset_a = tar_bytes({"0001.txt": b"First  doc\n\nwith   paragraphs.\n", "0002.txt": documents[0].encode()})
    subset_b = tar_bytes({"0003.txt": b"   \n", "0004.txt": "Caf\u00e9 CLOSED\ttoday".encode()})
    archive = tmp_path / "openwebtext.tar.xz"
    archive.write_bytes(
        tar_bytes({"openwebtext/urlsf_subset00-1_data.xz": subset_a, "openwebtext/urlsf_subset00-2_data.xz": subset_b})
    )
    output = tmp_path / "out" / "owt.txt"
    result = run("preprocess_openwebtext.py", str(archive), str(output), "--lowercase")
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8").splitlines() == [
        "first doc with paragraphs.",
        " ".join(documents[0].split()).lower(),
        "caf\u00e9 closed today",
    ]
    assert "3 documents written, 0 too short, 1 empty" in result.stdout
    # the minimum length is counted in the named tokenizer's subword tokens
    code, _, err = run_here(
        "preprocess_openwebtext.py",
        str(archive),
        str(output),
        "--min-length",
        "50",
        "--tokenizer",
        str(tiny_roberta),
        capsys=capsys,
    )
    assert code == 0, err
    assert output.read_text(encoding="utf-8").splitlines() == [" ".join(documents[0].split())]
    code, _, err = run_here("preprocess_openwebtext.py", str(tmp_path / "missing.tar.xz"), str(output), capsys=capsys)
    assert code == 1 and "no such file" in err


def test_wikitext_articles(tmp_path, capsys):
    raw = tmp_path / "wiki.train.raw"
    raw.write_text(
        " \n = Valkyria Chronicles = \n \n Senjō no Valkyria 3 @-@ a game , 1 @,@ 000 copies @.@ \n"
        " = = Gameplay = = \n \n Battles are fought . \n \n = Tower Building = \n \n The tower is tall . \n",
        encoding="utf-8",
    )
    articles = list(wikitext_documents(raw, restore_markers=True))
    assert len(articles) == 3  # the leading blank line, then two articles
    assert " ".join(articles[1].split()) == (
        "= Valkyria Chronicles = Senjō no Valkyria 3-a game , 1,000 copies. = = Gameplay = = Battles are fought ."
    )
    output = tmp_path / "wiki.txt"
    code, out, err = run_here(
        "preprocess_wikitext103.py", str(raw), str(output), "--min-length", "10", "--unit", "whitespace", capsys=capsys
    )
    assert code == 0, err
    lines = output.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and lines[0].startswith("= Valkyria Chronicles = Senjō no Valkyria 3 @-@ a game")
    assert "1 documents written, 1 too short, 1 empty" in out
