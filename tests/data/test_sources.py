"""Document sources: formats, gzip, directories and globs, and the bad-input policies."""

from __future__ import annotations

import gzip

import pytest

from declutr.core import ConfigurationError, DeclutrError, build
from declutr.data import DocumentSource
from declutr.data.sources import EMPTY, OK, UNDECODABLE
from tests.data.datahelpers import write_jsonl, write_lines


def read(config, path):
    return list(build(DocumentSource, config).read(path))


def test_text_lines_collapse_whitespace_and_count_empty(tmp_path):
    path = write_lines(tmp_path / "docs.txt", ["  Hello \t  World ", "", "   ", "Second\u00a0doc\r"])
    records = read({"type": "text"}, path)
    assert [r.status for r in records] == [OK, EMPTY, EMPTY, OK]
    assert records[0].texts == ("Hello World",)
    assert records[3].texts == ("Second doc",)
    assert [r.line for r in records] == [1, 2, 3, 4]


def test_undecodable_line_is_skipped_or_named(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good one\nbad \xff\xfe bytes\nthird\n")
    assert [r.status for r in read({"type": "text"}, path)] == [OK, UNDECODABLE, OK]
    with pytest.raises(DeclutrError, match=r"bad\.txt:2: not valid UTF-8"):
        read({"type": "text", "undecodable": "error"}, path)
    with pytest.raises(DeclutrError, match=r"bad\.txt:2: empty document"):
        read({"type": "text", "empty": "error"}, write_lines(tmp_path / "bad.txt", ["x", " "]))


def test_jsonl_field_and_errors(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", ["one", "two"], field="body")
    assert [r.texts for r in read({"type": "jsonl", "fields": "body"}, path)] == [("one",), ("two",)]
    with pytest.raises(DeclutrError, match=r'docs\.jsonl:1: the object has no text field "text" \(keys: id, body\)'):
        read({"type": "jsonl"}, path)
    broken = write_lines(tmp_path / "broken.jsonl", ['{"text": "fine"}', '{"text": '])
    with pytest.raises(DeclutrError, match=r"broken\.jsonl:2: not a JSON object"):
        read({"type": "jsonl"}, broken)


def test_gzip_directory_glob_and_auto_format(tmp_path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    write_lines(tmp_path / "corpus" / "a.txt.gz", ["alpha", "beta"])
    write_jsonl(tmp_path / "corpus" / "sub" / "b.jsonl.gz", ["gamma"])
    (tmp_path / "corpus" / "c.csv").write_text('text,label\n"delta, with comma",1\n', encoding="utf-8")
    (tmp_path / "corpus" / "notes.md").write_text("ignored\n", encoding="utf-8")
    texts = [r.texts[0] for r in read({}, tmp_path / "corpus")]
    assert texts == ["alpha", "beta", "delta, with comma", "gamma"]  # sorted paths: a.txt.gz, c.csv, sub/b.jsonl.gz
    assert [r.texts[0] for r in read({}, str(tmp_path / "corpus" / "**" / "*.gz"))] == ["alpha", "beta", "gamma"]
    # a gzip file without the suffix is recognised by its magic number
    (tmp_path / "plain_name.txt").write_bytes(gzip.compress(b"hidden gzip\n"))
    assert read({"type": "text"}, tmp_path / "plain_name.txt")[0].texts == ("hidden gzip",)


def test_csv_triplets_and_multiline_rows(tmp_path):
    path = tmp_path / "nli.csv"
    path.write_text('sent0,sent1,hard_neg\nA man sleeps.,"A person\nrests.",A man runs.\nx,,z\n', encoding="utf-8")
    records = read({"type": "csv", "fields": ["sent0", "sent1", "hard_neg"]}, path)
    assert records[0].texts == ("A man sleeps.", "A person rests.", "A man runs.")
    assert (records[1].line, records[1].status) == (4, EMPTY)
    with pytest.raises(DeclutrError, match=r"nli\.csv:1: no column premise"):
        read({"type": "csv", "fields": ["premise"]}, path)


def test_missing_paths_and_bad_arguments(tmp_path):
    with pytest.raises(DeclutrError, match="no such file or directory"):
        read({}, tmp_path / "nope.txt")
    with pytest.raises(DeclutrError, match="no file matches"):
        read({}, str(tmp_path / "*.jsonl"))
    with pytest.raises(ConfigurationError, match='empty: expected one of "skip", "error"'):
        build(DocumentSource, {"type": "text", "empty": "ignore"})
