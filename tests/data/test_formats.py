"""Corpora as users have them: Parquet, Hugging Face datasets (saved, and the Hub path on a local
folder), zstd; the index built by several processes, byte for byte as by one; and the errors."""

from __future__ import annotations

import filecmp
import json
import multiprocessing
import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.core import DeclutrError, build
from declutr.data import DocumentSource
from declutr.data import compression as compression_module
from declutr.data import index as index_module
from declutr.data.index import CorpusIndex, build_index, load_or_build_index
from declutr.data.sources import EMPTY, OK, AutoFormat, JsonLines
from declutr.data.tokenizer import TransformerTokenizer
from tests.data.datahelpers import write_jsonl, write_lines

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstandard = pytest.importorskip("zstandard")
datasets = pytest.importorskip("datasets")


def texts_of(config, path):
    return [r.texts[0] if r.texts else None for r in build(DocumentSource, config).read(path)]


def write_parquet(path, texts, row_group_size=3, **columns):
    table = pa.table({"text": texts, "id": list(range(len(texts))), **columns})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_parquet_row_groups_directory_nulls_and_auto(tmp_path, documents):
    folder = tmp_path / "shards"
    folder.mkdir()
    write_parquet(folder / "a.parquet", documents[:7], row_group_size=3)
    write_parquet(folder / "b.parquet", [documents[7], None, "  ", documents[8]], row_group_size=2)
    expected = [" ".join(d.split()) for d in documents[:8]] + [None, None, " ".join(documents[8].split())]
    assert texts_of({}, folder) == expected  # auto: by suffix, every row group, in order
    assert texts_of({"type": "parquet"}, str(folder / "*.parquet")) == expected
    source = AutoFormat()
    parts = source.parts(folder)
    records = list(source.read_parts(parts))
    assert [(r.file, r.line, r.status) for r in records[6:9]] == [(0, 7, OK), (1, 1, OK), (1, 2, EMPTY)]
    assert parts[1].location(2) == f"{folder / 'b.parquet'} row 2"
    # a Parquet file without the suffix is recognised by its magic number
    os.rename(folder / "a.parquet", tmp_path / "exported.bin")
    assert texts_of({}, tmp_path / "exported.bin") == expected[:7]
    assert AutoFormat().parts(tmp_path / "exported.bin")[0].location(4) == f"{tmp_path / 'exported.bin'} row 4"


def test_parquet_errors_name_the_file_and_the_columns(tmp_path):
    path = write_parquet(tmp_path / "docs.parquet", ["one", "two"], body=["x", "y"])
    with pytest.raises(DeclutrError, match=r"docs\.parquet: no column content \(columns: text, id, body\)"):
        texts_of({"type": "parquet", "fields": "content"}, path)
    with pytest.raises(DeclutrError, match=r"docs\.parquet: column id holds int64, not text"):
        texts_of({"type": "parquet", "fields": "id"}, path)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DeclutrError, match=r"broken\.parquet: not a readable Parquet file"):
        texts_of({"type": "parquet"}, tmp_path / "broken.parquet")
    assert texts_of({"type": "parquet", "fields": "body"}, path) == ["x", "y"]


def test_zstd_equals_plain_across_frames_and_by_magic_number(tmp_path, documents):
    plain = write_jsonl(tmp_path / "docs.jsonl", documents)
    data = plain.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    (tmp_path / "docs.jsonl.zst").write_bytes(compressor.compress(data[:half]) + compressor.compress(data[half:]))
    (tmp_path / "docs.txt").write_bytes(compressor.compress(b"one\ntwo\n"))  # zstd without the suffix
    assert texts_of({}, tmp_path / "docs.jsonl.zst") == texts_of({}, plain)
    assert texts_of({"type": "text"}, tmp_path / "docs.txt") == ["one", "two"]


def test_corrupt_compressed_data_names_the_file_and_byte_offset(tmp_path, documents, tiny_roberta):
    data = "".join(json.dumps({"text": d}) + "\n" for d in documents * 4).encode()
    first = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    second = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(data))
    second[len(second) // 2] ^= 0xFF
    (tmp_path / "bad.jsonl.zst").write_bytes(first + bytes(second))
    with pytest.raises(DeclutrError, match=rf"bad\.jsonl\.zst: corrupt zstd frame starting at byte {len(first):,}"):
        texts_of({}, tmp_path / "bad.jsonl.zst")
    (tmp_path / "cut.jsonl.zst").write_bytes(first[: len(first) // 2])
    with pytest.raises(DeclutrError, match=r"cut\.jsonl\.zst: truncated zstd frame starting at byte 0"):
        texts_of({}, tmp_path / "cut.jsonl.zst")
    gz = write_lines(tmp_path / "cut.txt.gz", documents)
    gz.write_bytes(gz.read_bytes()[:-40])
    with pytest.raises(DeclutrError, match=r"cut\.txt\.gz: corrupt gzip data near compressed byte"):
        texts_of({}, gz)
    args = ["--tokenizer", str(tiny_roberta), "--cache-directory", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(main, ["index", str(tmp_path / "bad.jsonl.zst"), *args, "--workers", "2"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {tmp_path / 'bad.jsonl.zst'}: corrupt zstd frame starting at byte {len(first):,}: ")
    assert [p.name for p in (tmp_path / "cache" / "index").iterdir() if not p.name.endswith(".lock")] == []


def test_saved_dataset_dataset_dict_and_hub_path(tmp_path, documents):
    rows = {"text": documents[:5] + [None], "id": list(range(6))}
    dataset = datasets.Dataset.from_dict(rows)
    dataset.save_to_disk(str(tmp_path / "saved"), max_shard_size="2KB")  # several Arrow files
    expected = [" ".join(d.split()) for d in documents[:5]] + [None]
    assert texts_of({}, tmp_path / "saved") == expected
    assert texts_of({"type": "hf_dataset"}, tmp_path / "saved") == expected
    datasets.DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(str(tmp_path / "dict"))
    assert texts_of({"split": "test"}, tmp_path / "dict") == expected[:1]
    with pytest.raises(DeclutrError, match=r"dict: a saved DatasetDict without a split 'dev' \(splits: train, test\)"):
        texts_of({"type": "hf_dataset", "split": "dev"}, tmp_path / "dict")
    with pytest.raises(DeclutrError, match=r"plain: not a saved Hugging Face dataset \(no state\.json"):
        (tmp_path / "plain").mkdir()
        texts_of({"type": "hf_dataset"}, tmp_path / "plain")
    with pytest.raises(DeclutrError, match=r"saved: no column body \(columns: text, id\)"):
        texts_of({"type": "hf_dataset", "fields": "body"}, tmp_path / "saved")
    # a Hub name (here a local folder of data files, as load_dataset takes it): prepared or streamed
    repo = tmp_path / "repo"
    repo.mkdir()
    write_jsonl(repo / "train.jsonl", documents[:4])
    hub = f"hf:{repo}"
    for streaming in (False, True):
        source = build(DocumentSource, {"type": "hf_dataset", "streaming": streaming})
        assert [r.texts[0] for r in source.read(hub)] == expected[:4]
        assert source.parts(hub)[0].location(3) == f"hf:{repo} row 3"


def test_a_hub_dataset_pinned_to_a_commit_needs_no_network_to_find_its_index():
    commit = "0123456789abcdef0123456789abcdef01234567"
    pinned = build(DocumentSource, {"type": "hf_dataset", "revision": commit})
    (part,) = pinned.parts("hf:someone/corpus")  # no lookup on the Hub
    assert (part.name, part.commit, part.rows) == ("hf:someone/corpus", commit, True)
    branch = build(DocumentSource, {"type": "hf_dataset", "revision": "main"})
    assert branch.fingerprint() == pinned.fingerprint()  # the commit, in the part, keys the index


@pytest.fixture
def tokenizer(tiny_roberta):
    return TransformerTokenizer(str(tiny_roberta))


def test_index_is_the_same_byte_for_byte_with_one_or_two_workers(tmp_path, documents, tokenizer, monkeypatch):
    monkeypatch.setattr(compression_module, "CHUNK_BYTES", 6000)  # many chunks from a small corpus
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", documents + ["", "short one"])
    compressed = zstandard.ZstdCompressor().compress(("\n".join(documents[::-1]) + "\n").encode())
    (folder / "b.txt.zst").write_bytes(compressed)
    write_parquet(folder / "c.parquet", documents[:6], row_group_size=2)
    source = AutoFormat()
    parts = source.parts(folder)
    assert len(list(source.chunks(parts[0], 0))) > 4
    built = {}
    for unit in ("subword", "whitespace"):
        for workers in (1, 2):
            built[unit, workers] = directory = tmp_path / f"index-{unit}-{workers}"
            build_index(parts, source, tokenizer, unit, directory, progress=False, workers=workers)
        one, two = built[unit, 1], built[unit, 2]
        assert sorted(os.listdir(one)) == sorted(os.listdir(two))
        assert all(filecmp.cmp(one / name, two / name, shallow=False) for name in os.listdir(one))
    index = CorpusIndex(built["subword", 2])
    records = list(source.read_parts(parts))
    assert len(index) == len(records) and index.location(len(documents) + 1) == f"{parts[0].name}:{len(documents) + 2}"
    for number, record in enumerate(records):
        if record.status == OK:
            expected = tokenizer.encode_batch([record.texts[0]])[0].ids
            assert index.tokens(number).tolist() == expected
    assert list(index.status[len(documents) : len(documents) + 2]) == [EMPTY, OK]
    assert CorpusIndex(built["subword", 1]).rows == [False, False, True]


class _KillsItsWorker(JsonLines):
    """Dies (SIGKILL, as the kernel's out-of-memory killer would) reading its third chunk in a worker."""

    def records(self, chunk):
        if multiprocessing.parent_process() is not None and chunk.first >= 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().records(chunk)


def test_a_worker_that_dies_fails_the_build_and_leaves_nothing(tmp_path, documents, tokenizer, monkeypatch):
    monkeypatch.setattr(compression_module, "CHUNK_BYTES", 6000)
    path = write_jsonl(tmp_path / "docs.jsonl", documents)
    cache = tmp_path / "cache"
    with pytest.raises(DeclutrError, match=r"indexing failed: a worker process died .* nothing was kept") as error:
        load_or_build_index(path, _KillsItsWorker(), tokenizer, cache_directory=cache, progress=False, workers=2)
    assert "\n" not in str(error.value)
    leftovers = [p.name for p in (cache / "index").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []  # no index, no staging folder
    # the same corpus builds afterwards (in one process the source does not kill itself)
    index = load_or_build_index(path, _KillsItsWorker(), tokenizer, cache_directory=cache, progress=False, workers=1)
    assert len(index) == len(documents)


def test_a_half_built_index_is_never_used(tmp_path, documents, tokenizer):
    path = write_jsonl(tmp_path / "docs.jsonl", documents)
    source = AutoFormat()
    directory = index_module.index_directory(source.parts(path), source, tokenizer, "subword", tmp_path / "cache")
    directory.mkdir(parents=True)
    (directory / "tokens.bin").write_bytes(b"\0" * 10)  # a build that died, without meta.json
    index = load_or_build_index(path, source, tokenizer, cache_directory=tmp_path / "cache", progress=False)
    assert len(index) == len(documents) and (directory / "meta.json").is_file()
    assert sorted(p.name for p in directory.parent.iterdir() if not p.name.endswith(".lock")) == [directory.name]
    # another builder finishing first: its complete index stays, this one's copy is dropped
    staging = tmp_path / "cache" / "index" / "staging"
    staging.mkdir()
    index_module._move_into_place(staging, directory)
    assert (directory / "meta.json").is_file()


def test_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def without(name, *args):
        if name.split(".")[0] in ("pyarrow", "zstandard"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without)
    write_parquet(tmp_path / "docs.parquet", ["one"])
    with pytest.raises(DeclutrError, match=r"needs the optional package pyarrow: pip install 'declutr\[parquet\]'"):
        texts_of({}, tmp_path / "docs.parquet")
    (tmp_path / "docs.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(b"one\n"))
    with pytest.raises(DeclutrError, match=r"needs the optional package zstandard: pip install 'declutr\[zstd\]'"):
        texts_of({}, tmp_path / "docs.txt.zst")


def test_declutr_index_command_builds_what_training_reads(tmp_path, documents, tiny_roberta):
    corpus = write_parquet(tmp_path / "docs.parquet", documents, row_group_size=4)
    cache = tmp_path / "cache"
    args = ["index", str(corpus), "--tokenizer", str(tiny_roberta), "--cache-directory", str(cache), "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert f"{len(documents)} records" in result.output
    built = [p for p in (cache / "index").iterdir() if p.is_dir()]
    assert len(built) == 1
    # a reader configured as training would be finds this very index (no rebuild)
    tokenizer = TransformerTokenizer(str(tiny_roberta))
    index = load_or_build_index(corpus, AutoFormat(), tokenizer, cache_directory=cache, workers=1, progress=False)
    assert index.directory == built[0]
    missing = CliRunner().invoke(main, [*args[:4], "--field", "body", "--no-progress"])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [f"Error: {corpus}: no column body (columns: text, id)"]
    assert np.asarray(index.lengths).min() > 0


def test_review_cases_slices_big_row_groups_text_with_braces_and_long_lines(tmp_path, documents, monkeypatch):
    monkeypatch.setattr(compression_module, "CHUNK_BYTES", 6000)
    repo = tmp_path / "repo"
    repo.mkdir()
    write_jsonl(repo / "train.jsonl", documents[:6])
    sliced = build(DocumentSource, {"type": "hf_dataset", "split": "train[:3]"})
    assert len(list(sliced.read(f"hf:{repo}"))) == 3  # a sliced split is not its whole files
    # a row group far larger than a chunk is read in batches here: the same records
    one_group = write_parquet(tmp_path / "big.parquet", documents, row_group_size=len(documents))
    source = AutoFormat()
    (part,) = source.parts(one_group)
    chunks = list(source.chunks(part, 0))
    assert len(chunks) > 1 and chunks[0].first == 1
    assert [r.texts[0] for c in chunks for r in c.source.records(c)] == [" ".join(d.split()) for d in documents]
    # plain text whose first line starts with "{" but is not JSON stays text
    raw = write_lines(tmp_path / "corpus.raw", ["{{Infobox}} is a template", "second line"])
    assert texts_of({}, raw) == ["{{Infobox}} is a template", "second line"]
    # a line longer than many chunks is one record
    long = " ".join(documents) * 8
    assert texts_of({"type": "text"}, write_lines(tmp_path / "long.txt", ["a", long, "b"])) == ["a", long, "b"]


def test_corrupt_parquet_page_is_one_line(tmp_path, documents):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": documents * 4}), path, compression="snappy", row_group_size=len(documents) * 4)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(DeclutrError, match=r"docs\.parquet: corrupt Parquet data in row group 0 \(rows from 1\)"):
        texts_of({}, path)


def test_auto_and_hf_dataset_share_an_index_and_file_keys_are_unchanged(tmp_path, documents, tokenizer):
    datasets.Dataset.from_dict({"text": documents}).save_to_disk(str(tmp_path / "saved"))
    auto, explicit = AutoFormat(), build(DocumentSource, {"type": "hf_dataset", "streaming": True})
    where = [index_module.index_directory(s.parts(tmp_path / "saved"), s, tokenizer) for s in (auto, explicit)]
    assert where[0] == where[1]
    # the key of a file corpus read by auto is what earlier releases computed: their indexes stay valid
    assert auto.fingerprint() == {"type": "AutoFormat", "empty": "skip", "undecodable": "skip", "fields": ["text"]}
    assert index_module.default_workers(0) == index_module.default_workers(1 << 40)  # unknown size: every core


def test_a_killed_builder_leaves_no_worker_lock_or_staging_behind(tmp_path, documents, tiny_roberta):
    import subprocess
    import sys
    import time

    corpus = write_jsonl(tmp_path / "docs.jsonl", documents * 250)  # about 12 MB: several chunks
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "declutr", "index", str(corpus), "--tokenizer", str(tiny_roberta)]
    command += ["--cache-directory", str(cache), "--workers", "2", "--no-progress"]
    builder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[int]:
        children = []
        for entry in os.scandir("/proc"):
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == builder.pid:
                children.append(int(entry.name))
        return children

    deadline = time.monotonic() + 120
    while len(workers()) < 2 and builder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    forked = workers()
    assert len(forked) == 2, "the build ended before its workers could be seen"
    builder.send_signal(signal.SIGTERM)
    builder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in forked) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in forked)  # the workers died with the builder
    assert [p for p in (cache / "index").iterdir() if p.is_dir() and not p.name.startswith(".")] == []
    again = subprocess.run(
        [*command[:-3], "--workers", "1", "--no-progress"], check=False, capture_output=True, timeout=300
    )
    assert again.returncode == 0, again.stderr  # the lock was released: no wait
    entries = list((cache / "index").iterdir())
    assert [p.name for p in entries if p.name.startswith(".")] == []  # the killed build's staging is gone
    assert [(p / "meta.json").is_file() for p in entries if p.is_dir()] == [True]


def test_index_ahead_then_train_on_a_parquet_and_zstd_mixture(tmp_path, documents, tiny_roberta):
    """The issue's workflow end to end: domain documents exported as Parquet (text in "body"),
    general text as zstd JSON lines; `declutr index --config` builds both indexes in 2 processes,
    `declutr train` finds them (builds nothing) and logs the mixture."""
    (tmp_path / "domain").mkdir()
    write_parquet(tmp_path / "domain" / "part-0.parquet", documents[:2], row_group_size=1, body=documents[:2])
    write_parquet(tmp_path / "domain" / "part-1.parquet", documents[2:4], row_group_size=1, body=documents[2:4])
    general = tmp_path / "general.jsonl.zst"
    general.write_bytes(
        zstandard.ZstdCompressor().compress(write_jsonl(tmp_path / "g.jsonl", documents[4:]).read_bytes())
    )
    config = tmp_path / "exp.jsonnet"
    config.write_text(
        json.dumps(
            {
                "dataset_reader": {
                    "tokenizer": {"model_name": str(tiny_roberta)},
                    "span_sampler": {"num_anchors": 1, "num_positives": 1, "min_span_len": 8, "max_span_len": 32},
                    "cache_directory": str(tmp_path / "cache"),
                },
                "train_data_path": [
                    {"path": str(tmp_path / "domain"), "weight": 0.5, "name": "domain",
                     "document_source": {"type": "parquet", "fields": "body"}},
                    {"path": str(general), "weight": 0.5, "name": "general"},
                ],
                "data_loader": {"batch_size": 2, "index_workers": 1},
                "model": {"encoder": {"model_name": str(tiny_roberta)}},
                "trainer": {"num_epochs": 1, "optimizer": {"type": "adamw", "lr": 1e-3}, "show_progress": False},
            }
        )
    )  # fmt: skip
    ahead = CliRunner().invoke(main, ["index", "--config", str(config), "--workers", "2", "--no-progress"])
    assert ahead.exit_code == 0, ahead.output
    assert "train_data_path domain: 4 records" in ahead.output and "train_data_path general: 8 records" in ahead.output
    built = sorted(p.name for p in (tmp_path / "cache" / "index").iterdir() if p.is_dir())
    assert len(built) == 2
    trained = CliRunner().invoke(main, ["train", str(config), "-s", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    assert sorted(p.name for p in (tmp_path / "cache" / "index").iterdir() if p.is_dir()) == built
    log = (tmp_path / "run" / "out.log").read_text()
    assert "mixture of 2 sources, 12 records per epoch: domain 50.0% (6 drawn from 4 usable" in log
