"""Fixtures for the data tests: readers and loaders built from config dicts, as an experiment
file would give them."""

from __future__ import annotations

import pytest

from declutr.core import build
from declutr.data import DataLoader, DatasetReader
from tests.data.datahelpers import SMALL_SAMPLER


@pytest.fixture
def make_reader(tiny_roberta, tmp_path):
    def make(model=None, **config) -> DatasetReader:
        config.setdefault("type", "declutr")
        config.setdefault("tokenizer", {"model_name": str(model or tiny_roberta), "max_length": None})
        if config["type"] == "declutr":
            config.setdefault("span_sampler", dict(SMALL_SAMPLER))
        config.setdefault("cache_directory", str(tmp_path / "cache"))
        return build(DatasetReader, config, path="dataset_reader")

    return make


@pytest.fixture
def make_loader():
    def make(reader, data_path, seed=13, rank=0, world_size=1, **config) -> DataLoader:
        config.setdefault("progress", False)
        extras = {"reader": reader, "data_path": str(data_path), "seed": seed, "rank": rank, "world_size": world_size}
        return build(DataLoader, config, path="data_loader", extras=extras)

    return make
