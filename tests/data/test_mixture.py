"""Weighted mixtures of data paths: exact counts, the same batches with workers and after a
resume, a single path unchanged, one-line errors with key paths, and a tiny ``declutr train``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.core import build
from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.data import DataLoader
from declutr.data.mixture import MixtureComponent, allocate, component_names, interleave
from declutr.testing import tiny_declutr_config
from declutr.training import Experiment
from tests.data.datahelpers import write_jsonl, write_lines
from tests.data.test_loader import assert_batches_equal


def make_mixture(reader, components, seed=13, rank=0, world_size=1, **config) -> DataLoader:
    """A loader of ``components`` (config dicts, as an experiment file gives them)."""
    config.setdefault("progress", False)
    extras = {"reader": reader, "data_path": components, "seed": seed, "rank": rank, "world_size": world_size}
    return build(DataLoader, config, path="data_loader", extras=extras)


@pytest.fixture
def corpora(tmp_path, documents):
    """3 "domain" documents (JSON lines) and 9 "general" ones (text lines)."""
    return write_jsonl(tmp_path / "domain.jsonl", documents[:3]), write_lines(tmp_path / "general.txt", documents[3:])


@pytest.fixture
def seventy_thirty(corpora):
    domain, general = corpora
    return [{"path": str(domain), "weight": 0.7}, {"path": str(general), "weight": 0.3}]


def sources_of(loader, slots) -> list[int]:
    return loader.corpus_of(np.asarray(slots)).tolist()


def test_largest_remainder_counts():
    assert allocate([0.7, 0.3], 10) == [7, 3]  # the decimals written, not their binary approximations
    assert allocate([0.7, 0.3], 12) == [8, 4]  # 8.4, 3.6: the larger remainder gets the 12th
    assert allocate([1, 1], 5) == [3, 2]  # a tie goes to the earlier component
    assert allocate([1, 1, 1], 10) == [4, 3, 3]
    assert allocate([2, 0, 1], 7) == [5, 0, 2]
    counts = allocate([0.1, 0.25, 0.65], 1001)
    assert sum(counts) == 1001 and counts == [100, 250, 651]
    assert component_names([{"path": "a/docs.txt"}, {"path": "b/docs.txt.gz"}, {"path": "x", "name": "docs_2"}]) == [
        "docs",
        "docs_3",
        "docs_2",
    ]
    assert component_names([{"path": "data/owt-*.txt.gz"}, {"path": "data/wiki/"}]) == ["owt", "wiki"]
    with pytest.raises(ValueError, match="weight must be a finite number of at least 0, got -1"):
        MixtureComponent("a.txt", weight=-1)  # from Python, without a config


def test_each_epoch_draws_exactly_the_target_counts(make_reader, seventy_thirty):
    """12 usable records: 0.7 * 12 = 8.4 -> 8 draws from 3 domain documents (upsampled, each
    drawn 2 or 3 times), 3.6 -> 4 distinct draws of the 9 general ones (subsampled)."""
    loader = make_mixture(make_reader(), seventy_thirty, batch_size=5)
    assert [s.name for s in loader.corpora] == ["domain", "general"]
    assert [(s.usable, s.count) for s in loader.corpora] == [(3, 8), (9, 4)]
    assert len(loader) == 3 and loader.stats()["documents_used"] == 12
    seen_general = set()
    for epoch in range(3):
        slots = np.concatenate(loader.plan(epoch))
        assert sorted(slots.tolist()) == list(range(12))  # every draw slot once
        assert np.bincount(sources_of(loader, slots)).tolist() == [8, 4]
        domain, general = loader.draws(epoch)
        assert sorted(np.bincount(domain, minlength=3).tolist()) == [2, 3, 3]
        assert len(set(general.tolist())) == 4 and set(general.tolist()) <= set(range(9))
        seen_general |= set(general.tolist())
        loader.set_epoch(epoch)
        batches = list(loader)
        stats = loader.stats()
        assert stats["mixture_domain"] == pytest.approx(8 / 12) and stats["mixture_general"] == pytest.approx(4 / 12)
        assert sum(b["anchors"]["input_ids"].shape[0] for b in batches) == 12 * 2  # 2 anchors a record
    assert len(seen_general) > 4  # another epoch, other general documents
    # the ranks split the slots and agree on the realised proportions
    ranks = [make_mixture(make_reader(), seventy_thirty, rank=r, world_size=2, batch_size=2) for r in range(2)]
    plans = [np.concatenate(r.plan(0)) for r in ranks]
    assert sorted(np.concatenate(plans).tolist()) == list(range(12))
    for loader in ranks:
        next(iter(loader))
    assert ranks[0].stats() == ranks[1].stats()
    handed = sources_of(ranks[0], ranks[0].order(0)[:4])
    assert ranks[0].stats()["mixture_domain"] == pytest.approx(handed.count(0) / 4)


def test_without_shuffle_the_sources_are_interleaved_evenly(make_reader, seventy_thirty):
    assert "".join("DG"[s] for s in np.repeat([0, 1], [8, 4])[interleave([8, 4])]) == "DGDDGDDGDDGD"
    loader = make_mixture(make_reader(), seventy_thirty, batch_size=4, shuffle=False)
    assert sources_of(loader, np.concatenate(loader.plan(3))) == [0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_mixture_batches_do_not_depend_on_workers_and_resume_exactly(make_reader, seventy_thirty, num_workers):
    reader = make_reader()
    uninterrupted = make_mixture(reader, seventy_thirty, batch_size=2, seed=4)
    uninterrupted.set_epoch(1)
    expected = list(uninterrupted)
    parallel = make_mixture(reader, seventy_thirty, batch_size=2, seed=4, num_workers=num_workers)
    parallel.set_epoch(1)
    assert_batches_equal(list(parallel), expected)

    interrupted = make_mixture(reader, seventy_thirty, batch_size=2, seed=4)
    interrupted.set_epoch(1)
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(2)]
    state, shares = interrupted.state_dict(), interrupted.shares()
    resumed = make_mixture(make_reader(), seventy_thirty, batch_size=2, seed=4, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert resumed.shares() == shares
    assert_batches_equal(seen + list(resumed), expected)
    # a record drawn twice in an epoch gets other spans the second time: anchors of its two slots
    domain = uninterrupted.draws(1)[0]
    twice = np.flatnonzero(domain == domain[0])[:2]  # slot j of the first corpus is slot j
    dealt = np.concatenate(uninterrupted.plan(1)).tolist()
    first_anchors = []
    for place in (dealt.index(int(j)) for j in twice):
        anchors, row = expected[place // 2]["anchors"], 2 * (place % 2)  # 2 anchors a record
        first_anchors.append(anchors["input_ids"][row][anchors["attention_mask"][row] == 1].tolist())
    assert first_anchors[0] != first_anchors[1]


def test_a_single_path_gives_the_batches_it_gave_before(make_reader, make_loader, tmp_path, documents):
    """The plan is the permutation of ``(seed, epoch, 0x5EED)`` (pinned), each record's spans come
    from ``default_rng((seed, epoch, record))``: the batches of a checkpoint made before mixtures."""
    reader = make_reader()
    path = write_lines(tmp_path / "docs.txt", documents)
    loader = make_loader(reader, path, batch_size=5)
    assert np.concatenate(loader.plan(1)).tolist() == [9, 0, 7, 5, 2, 3, 1, 4, 11, 8, 6, 10]
    loader.set_epoch(1)
    order = np.random.default_rng((13, 1, 0x5EED)).permutation(np.arange(12))
    expected = [
        reader.collate([reader.example(loader.index, int(r), np.random.default_rng((13, 1, int(r)))) for r in chunk])
        for chunk in np.array_split(order, [5, 10])
    ]
    assert_batches_equal(list(loader), expected)
    assert not any(key.startswith("mixture_") for key in loader.stats())


def test_components_read_by_their_own_source_and_index_workers(make_reader, tmp_path, documents, monkeypatch):
    from declutr.data import readers

    calls = []
    original = readers.load_or_build_index
    monkeypatch.setattr(readers, "load_or_build_index", lambda *a, **kw: calls.append((a[1], kw)) or original(*a, **kw))
    other = write_jsonl(tmp_path / "other.jsonl", documents[:4], field="content")
    plain = write_lines(tmp_path / "plain.txt", documents[4:6])
    components = [
        {"path": str(other), "name": "content", "document_source": {"type": "jsonl", "fields": "content"}},
        {"path": str(plain), "weight": 2},
        {"path": str(tmp_path / "never-read.txt"), "weight": 0},
    ]
    loader = make_mixture(make_reader(), components, index_workers=1)
    assert [(s.name, s.usable, s.count) for s in loader.corpora] == [("content", 4, 2), ("plain", 2, 4)]
    assert [kw["workers"] for _, kw in calls] == [1, 1]
    assert calls[0][0].fields == ["content"] and calls[1][0] is loader.reader.source
    assert loader.left_out == ["never-read"]
    assert "never-read left out (weight 0)" in loader.mixture_summary()

    from declutr.training.run import RESUMABLE_KEYS

    assert {"data_loader.index_workers", "validation_data_loader.index_workers"} <= RESUMABLE_KEYS


def test_the_mixture_is_logged_when_built_and_at_each_epoch_end(make_reader, seventy_thirty, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("declutr"), "propagate", True)  # off after an in-process declutr train
    with caplog.at_level(logging.INFO, logger="declutr.data.loader"):
        loader = make_mixture(make_reader(), seventy_thirty, batch_size=4)
        list(loader)
    assert (
        "mixture of 2 sources, 12 records per epoch: domain 66.7% (8 drawn from 3 usable, 2.67 passes), "
        "general 33.3% (4 drawn from 9 usable, 0.44 passes)"
    ) in caplog.messages
    assert "epoch 0 of the mixture of 2 sources done: 3 batches; domain 66.7%, general 33.3%" in caplog.messages


def test_a_component_without_usable_records_is_named(make_reader, corpora, tmp_path):
    short = write_lines(tmp_path / "short.txt", ["far too short", "also short"])
    components = [{"path": str(corpora[0])}, {"path": str(short), "name": "tiny"}]
    with pytest.raises(DeclutrError) as caught:
        make_mixture(make_reader(), components)
    assert str(caught.value) == (
        f'data_loader: mixture component "tiny" ({short}): no usable records (2 of 2 (100.0%): short 2); '
        "remove it or set its weight to 0"
    )
    make_mixture(make_reader(), [components[0], {**components[1], "weight": 0}])  # left out: no error


MIXTURE_CONFIG = """
{
  dataset_reader: { tokenizer: { model_name: "%(model)s" },
                    span_sampler: { num_anchors: 1, num_positives: 1, min_span_len: 8, max_span_len: 32 } },
  train_data_path: [ { path: "%(domain)s", weight: 0.7, name: "domain" }, { path: "%(general)s", weight: 0.3 } ],
  data_loader: { batch_size: 2, num_workers: 0 },
  model: { encoder: { model_name: "%(model)s" } },
  trainer: { num_epochs: 1, optimizer: { type: "adamw", lr: 1e-3 }, log_every: 2, show_progress: false },
}
"""


@pytest.fixture
def mixture_config(tmp_path, tiny_roberta, corpora):
    path = tmp_path / "mixture.jsonnet"
    path.write_text(MIXTURE_CONFIG % {"model": tiny_roberta, "domain": corpora[0], "general": corpora[1]})
    return path


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"train_data_path": [{"path": "a.txt"}, {"path": "b.txt", "weight": -0.3}]},
            "train_data_path[1].weight: must be at least 0, got -0.3",
        ),
        (
            {"train_data_path": [{"path": "a.txt", "weight": 0}, {"path": "b.txt", "weight": 0.0}]},
            "train_data_path: the weights of the mixture sum to 0; give at least one component a positive weight",
        ),
        ({"train_data_path": []}, 'train_data_path: an empty mixture; list at least one component ({"path": ...'),
        (
            {"validation_data_path": [{"path": "a.txt", "name": "x"}, {"path": "b.txt", "name": "x"}]},
            'validation_data_path[1].name: "x" is also the name of validation_data_path[0]; names must be unique',
        ),
        (
            {"train_data_path": [{"path": "a.txt"}, {"path": "b.txt", "wieght": 2}]},
            'train_data_path[1]: unexpected key "wieght" (did you mean "weight"?)',
        ),
        (
            {"train_data_path": [{"path": "a.txt", "name": "two words"}]},
            "train_data_path[0]: name must be letters, digits, _ . or - (it names the metric mixture_<name>)",
        ),
    ],
)
def test_mixture_config_errors_are_one_line_with_the_key_path(mixture_config, overrides, error):
    result = CliRunner().invoke(main, ["config", str(mixture_config), "--overrides", json.dumps(overrides)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {error}"), result.stderr


def test_build_data_checks_every_component_path_before_the_tokenizer(tiny_roberta, corpora, tmp_path):
    config = tiny_declutr_config("no/such/model", corpora[0])
    config["train_data_path"] = [{"path": str(corpora[0])}, {"path": str(tmp_path / "missing.txt")}]
    with pytest.raises(DeclutrError) as caught:
        Experiment(config).build_data(tmp_path / "run")
    assert str(caught.value) == f"train_data_path[1].path: {tmp_path / 'missing.txt'}: no such file or directory"
    # the readers and loaders alone: the model (here a name that does not exist) is never loaded
    config["dataset_reader"]["tokenizer"]["model_name"] = str(tiny_roberta)
    config["train_data_path"] = [{"path": str(corpora[0]), "name": "domain"}, {"path": str(corpora[1])}]
    config["validation_data_path"] = str(corpora[1])
    reader, train, validation = Experiment(config).build_data(tmp_path / "run")
    assert [s.name for s in train.corpora] == ["domain", "general"] and validation.data_path == str(corpora[1])
    assert validation.reader is reader
    with pytest.raises(ConfigurationError):
        Experiment({**config, "train_data_path": [{"path": str(corpora[0]), "weight": "x"}]})


def test_declutr_train_on_a_mixture_logs_its_proportions(mixture_config, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(mixture_config), "-s", str(run)])
    assert result.exit_code == 0, result.output
    log = (run / "out.log").read_text()
    # 0.7 * 12 = 8.4 -> 8 (domain), 3.6 -> 4: the general source's larger remainder takes the 12th
    assert (
        "mixture of 2 sources, 12 records per epoch: domain 66.7% (8 drawn from 3 usable, 2.67 passes), "
        "general 33.3% (4 drawn from 9 usable, 0.44 passes)"
    ) in log
    assert "epoch 0 of the mixture of 2 sources done: 6 batches; domain 66.7%, general 33.3%" in log
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "lr" in r]
    assert [r["step"] for r in logged] == [2, 4, 6]
    assert all(r["mixture_domain"] + r["mixture_general"] == pytest.approx(1.0) for r in logged)
    (end,) = [r for r in records if r.get("event") == "epoch_end"]
    assert end["mixture_domain"] == pytest.approx(8 / 12) and end["documents_used"] == 12
