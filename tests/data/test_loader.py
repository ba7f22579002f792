"""Readers and the data loader: batch layout, id slicing, policies, sharding, epochs, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from declutr.core import DeclutrError
from declutr.data import index as index_module
from tests.data.datahelpers import write_jsonl, write_lines


def assert_batches_equal(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], dict):
                assert a[key].keys() == b[key].keys()
                for name in a[key]:
                    torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)
            else:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.fixture
def corpus(tmp_path, documents):
    return write_lines(tmp_path / "docs.txt", documents)


def test_declutr_batch_layout(make_reader, make_loader, corpus):
    reader = make_reader()
    from transformers import PreTrainedTokenizerFast

    assert isinstance(reader.tokenizer, PreTrainedTokenizerFast) and reader.mlm
    loader = make_loader(reader, corpus, batch_size=3)
    assert len(loader) == 4
    batch = next(iter(loader))
    anchors, positives = batch["anchors"], batch["positives"]
    assert anchors["input_ids"].shape[0] == 3 * 2 and positives["input_ids"].shape[0] == 3 * 2 * 2
    assert batch["positive_anchor_index"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert "mlm_labels" in anchors and "mlm_labels" not in positives
    for group in (anchors, positives):
        assert all(t.dtype == torch.long for k, t in group.items() if k != "lengths")
        lengths = group["attention_mask"].sum(1)
        assert group["lengths"] == lengths.tolist()  # host-side, for sub-batch plans without a device read
        assert group["attention_mask"].shape[1] == lengths.max()  # dynamic padding
        assert (group["input_ids"][:, 0] == reader.tokenizer.bos_token_id).all()
        rows = torch.arange(len(lengths))
        assert (group["input_ids"][rows, lengths - 1] == reader.tokenizer.eos_token_id).all()
        assert (group["special_tokens_mask"][group["attention_mask"] == 0] == 1).all()
    labels = anchors["mlm_labels"]
    assert ((labels != -100) <= (anchors["special_tokens_mask"] == 0)).all()
    assert (labels != -100).any()


def test_spans_are_slices_of_the_document_tokens(make_reader, make_loader, corpus, documents):
    reader = make_reader(mlm_probability=None)
    loader = make_loader(reader, corpus, batch_size=1, shuffle=False)
    hf = reader.tokenizer
    for record, batch in enumerate(loader):
        ids = hf(documents[record], add_special_tokens=False)["input_ids"]
        text = " ".join(map(str, ids))
        for group in ("anchors", "positives"):
            for row, mask in zip(batch[group]["input_ids"], batch[group]["special_tokens_mask"]):
                content = row[mask == 0].tolist()
                assert 8 <= len(content) <= 64
                assert " ".join(map(str, content)) in text  # a contiguous slice, no re-encoding


def test_whitespace_unit_spans_are_whole_words(tiny_bert, make_reader, make_loader, corpus, documents):
    reader = make_reader(
        model=tiny_bert,
        mlm_probability=None,
        span_sampler={
            "num_anchors": 1,
            "num_positives": 1,
            "min_span_len": 5,
            "max_span_len": 30,
            "unit": "whitespace",
        },
    )
    loader = make_loader(reader, corpus, batch_size=1, shuffle=False, seed=3)
    hf = reader.tokenizer
    for record, batch in zip(range(3), loader):
        words = documents[record].split()
        spans = reader.sampler.sample(len(words), np.random.default_rng((3, 0, record)))
        for spans_of_group, group in zip(spans, ("anchors", "positives")):
            ((start, end),) = spans_of_group
            expected = hf(" ".join(words[start:end]), add_special_tokens=False)["input_ids"]
            row, mask = batch[group]["input_ids"][0], batch[group]["special_tokens_mask"][0]
            assert row[mask == 0].tolist() == expected[: reader._tokenizer.max_content]


def test_truncation_to_the_model_maximum(tiny_roberta, make_reader, make_loader, corpus):
    reader = make_reader(
        tokenizer={"model_name": str(tiny_roberta), "max_length": 20},
        span_sampler={"min_span_len": 30, "max_span_len": 60},
    )
    batch = next(iter(make_loader(reader, corpus, batch_size=2)))
    assert batch["anchors"]["input_ids"].shape[1] == 20
    assert batch["anchors"]["attention_mask"].all()


def test_short_and_empty_documents_are_counted_or_named(make_reader, make_loader, tmp_path, documents):
    path = write_jsonl(tmp_path / "mixed.jsonl", [documents[0], "too short to sample", "  ", documents[1]])
    loader = make_loader(make_reader(), path, batch_size=1)
    stats = loader.stats()
    assert (stats["documents"], stats["documents_used"]) == (4, 2)
    assert (stats["documents_skipped_short"], stats["documents_skipped_empty"]) == (1, 1)
    assert len(loader) == 2
    with pytest.raises(
        DeclutrError, match=r"mixed\.jsonl:2: document of \d+ subword tokens, shorter than the minimum 256"
    ):
        make_loader(make_reader(short_documents="error"), path)


def test_sharding_covers_each_record_once_and_ranks_agree(make_reader, make_loader, corpus):
    reader = make_reader()
    for world_size, batch_size, drop_last in [(2, 3, False), (3, 2, False), (2, 5, True), (4, 1, False)]:
        loaders = [
            make_loader(reader, corpus, rank=r, world_size=world_size, batch_size=batch_size, drop_last=drop_last)
            for r in range(world_size)
        ]
        assert len({len(loader) for loader in loaders}) == 1
        plans = [np.concatenate(loader.plan(epoch=1)) for loader in loaders]
        seen = np.concatenate(plans)
        for rank_plan, loader in zip(plans, loaders):
            assert len(loader.plan(epoch=1)) == len(loader)
        if drop_last:
            assert len(seen) == len(np.unique(seen)) == (12 // (world_size * batch_size)) * world_size * batch_size
        else:
            assert sorted(seen.tolist()) == list(range(12))
    # a remainder that the ranks do not divide is padded by wrapping around (equal batch counts)
    loaders = [make_loader(reader, corpus, rank=r, world_size=5, batch_size=2) for r in range(5)]
    plans = [loader.plan(0) for loader in loaders]
    assert {len(p) for p in plans} == {2} and {len(p[-1]) for p in plans} == {1}
    assert set(np.concatenate([np.concatenate(p) for p in plans]).tolist()) == set(range(12))


def test_epochs_reshuffle_deterministically(make_reader, make_loader, corpus):
    reader = make_reader()
    loader, again = make_loader(reader, corpus, seed=5), make_loader(reader, corpus, seed=5)
    orders = {}
    for epoch in range(3):
        loader.set_epoch(epoch)
        again.set_epoch(epoch)
        assert_batches_equal(list(loader), list(again))
        orders[epoch] = np.concatenate(loader.plan(epoch)).tolist()
    assert len({tuple(o) for o in orders.values()}) == 3
    assert all(sorted(o) == list(range(12)) for o in orders.values())
    other_seed = make_loader(reader, corpus, seed=6)
    assert np.concatenate(other_seed.plan(0)).tolist() != orders[0]
    unshuffled = make_loader(reader, corpus, shuffle=False)
    assert np.concatenate(unshuffled.plan(4)).tolist() == list(range(12))
    # a revisited document gets new spans and masks in a new epoch
    loader.set_epoch(0)
    first = next(iter(loader))["anchors"]["input_ids"]
    loader.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))["anchors"]["input_ids"])


def test_workers_give_the_same_batches_in_the_same_order(make_reader, make_loader, corpus):
    reader = make_reader()
    serial = make_loader(reader, corpus, batch_size=2, seed=9)
    parallel = make_loader(reader, corpus, batch_size=2, seed=9, num_workers=2)
    serial.set_epoch(2)
    parallel.set_epoch(2)
    assert_batches_equal(list(serial), list(parallel))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_with_the_next_unseen_batch(make_reader, make_loader, corpus, num_workers):
    reader = make_reader()
    uninterrupted = make_loader(reader, corpus, batch_size=2, seed=4)
    uninterrupted.set_epoch(1)
    expected = list(uninterrupted)
    interrupted = make_loader(reader, corpus, batch_size=2, seed=4)
    interrupted.set_epoch(1)
    iterator = iter(interrupted)
    seen = [next(iterator), next(iterator)]
    state = interrupted.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    resumed = make_loader(reader, corpus, batch_size=2, seed=4, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert_batches_equal(seen + list(resumed), expected)
    assert resumed.state_dict()["position"] == len(resumed)
    assert len(list(resumed)) == len(resumed)  # the next pass is a whole epoch again


def test_index_is_cached_and_gzip_equals_plain(make_reader, make_loader, tmp_path, documents, monkeypatch):
    reader = make_reader()
    plain = write_lines(tmp_path / "docs.txt", documents)
    compressed = write_lines(tmp_path / "docs.txt.gz", documents)
    expected = list(make_loader(reader, plain, batch_size=4))

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached index was rebuilt")

    fresh_reader = make_reader()  # a new reader finds the index on disk
    monkeypatch.setattr(index_module, "build_index", no_rebuild)
    assert_batches_equal(list(make_loader(fresh_reader, plain, batch_size=4)), expected)
    monkeypatch.undo()
    assert_batches_equal(list(make_loader(reader, compressed, batch_size=4)), expected)


def test_clearer_names_and_the_first_names_build_the_same_components():
    from declutr.data import DataLoader, DatasetReader, DocumentDataLoader, SentenceReader

    assert DatasetReader.resolve("sentences")[0] is DatasetReader.resolve("isbert")[0] is SentenceReader
    assert DataLoader.resolve("sharded")[0] is DataLoader.resolve("default")[0] is DocumentDataLoader
    assert DataLoader.list_available()[0] == "sharded"  # a config without "type"


def test_simcse_and_isbert_readers(make_reader, make_loader, tmp_path):
    sentences = ["A man is playing a guitar.", "The river was cold that winter morning.", "", "She wrote a letter."]
    path = write_lines(tmp_path / "sentences.txt", sentences)
    loader = make_loader(make_reader(type="simcse_unsupervised"), path, batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert loader.stats()["documents_skipped_empty"] == 1
    torch.testing.assert_close(batch["anchors"]["input_ids"], batch["positives"]["input_ids"])
    assert batch["positive_anchor_index"].tolist() == [0, 1, 2]
    assert "mlm_labels" not in batch["anchors"]
    batch = next(iter(make_loader(make_reader(type="isbert"), path, batch_size=3, shuffle=False)))
    assert set(batch) == {"anchors"} and batch["anchors"]["input_ids"].shape[0] == 3


def test_simcse_unsupervised_refuses_mlm_probability(make_reader, tmp_path):
    """SimCSE's auxiliary MLM masks a separate copy of the inputs; masking the views is refused."""
    from pathlib import Path

    from click.testing import CliRunner

    from declutr.commands import main
    from declutr.core.errors import ConfigurationError

    with pytest.raises(
        ConfigurationError, match=r"^dataset_reader\.mlm_probability: the simcse_unsupervised reader does not mask"
    ):
        make_reader(type="simcse_unsupervised", mlm_probability=0.15)
    config = Path(__file__).resolve().parents[2] / "training_config" / "simcse_unsup.jsonnet"
    result = CliRunner().invoke(
        main, ["config", str(config), "--overrides", '{"dataset_reader.mlm_probability": 0.15}']
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "Error: dataset_reader.mlm_probability: the simcse_unsupervised reader"
    )


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_nli_triplets(make_reader, make_loader, tmp_path, suffix):
    rows = [("A man sleeps.", "A person rests.", "A man runs."), ("Two dogs play.", "Animals play.", "No dogs.")]
    if suffix == "csv":
        path = write_lines(tmp_path / "nli.csv", ["sent0,sent1,hard_neg"] + [",".join(r) for r in rows])
    else:
        import json

        path = write_lines(
            tmp_path / "nli.jsonl", [json.dumps(dict(zip(["sent0", "sent1", "hard_neg"], r))) for r in rows]
        )
    reader = make_reader(type="simcse_supervised")
    batch = next(iter(make_loader(reader, path, batch_size=2, shuffle=False)))
    decoded = {
        g: reader.tokenizer.batch_decode(batch[g]["input_ids"], skip_special_tokens=True)
        for g in ("anchors", "positives", "negatives")
    }
    assert decoded == {
        "anchors": [rows[0][0], rows[1][0]],
        "positives": [rows[0][1], rows[1][1]],
        "negatives": [rows[0][2], rows[1][2]],
    }
    assert batch["positive_anchor_index"].tolist() == [0, 1]


def test_gutenberg_corpus(shared_data, make_reader, make_loader):
    path = shared_data / "gutenberg_docs" / "valid.jsonl"
    reader = make_reader(span_sampler={"min_span_len": 32, "max_span_len": 512})
    loader = make_loader(reader, path, batch_size=4, drop_last=True)
    stats = loader.stats()
    assert stats["documents"] == 163
    assert stats["documents_used"] + stats["documents_skipped_short"] == 163
    assert len(loader) == stats["documents_used"] // 4
    batch = next(iter(loader))
    assert batch["anchors"]["input_ids"].shape[0] == 8 and batch["positives"]["input_ids"].shape[0] == 16
    assert batch["anchors"]["input_ids"].shape[1] <= reader._tokenizer.max_length
