"""``declutr index``: build a corpus index ahead of training (e.g. once, on a shared file system,
before a multi-node launch), in several processes.

``declutr index DATA --tokenizer MODEL`` indexes one data path; ``declutr index --config CONFIG``
builds every index the experiment's ``declutr train`` would use (its training and validation
data, every component of a mixture), under the same cache keys, so the training processes find
them ready. Either way the index is the same, byte for byte, whatever the number of workers.
"""

from __future__ import annotations

import time

import click

from declutr.commands import config_options


@click.command("index")
@click.argument("data_path", metavar="DATA", required=False)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Build every index this experiment uses."
)
@click.option("--tokenizer", "model_name", help="With DATA: the model (or tokenizer folder) whose tokenizer to use.")
@click.option("--max-length", type=click.IntRange(min=2), help="With DATA: the tokenizer's max_length, as configured.")
@click.option("--format", "source_type", default="auto", show_default=True, help="With DATA: the document_source type.")
@click.option("--field", "fields", multiple=True, help="With DATA: the text field(s) or column(s) [text].")
@click.option("--split", default=None, help="With DATA: the split of a saved DatasetDict or Hub dataset [train].")
@click.option("--subset", default=None, help="With DATA: a Hub dataset's configuration.")
@click.option("--revision", default=None, help="With DATA: a Hub dataset's branch, tag or commit.")
@click.option("--streaming", is_flag=True, help="With DATA: stream a Hub dataset instead of preparing it.")
@click.option(
    "--unit", type=click.Choice(["subword", "whitespace"]), default="subword", show_default=True,
    help="With DATA: the span sampler's unit (whitespace also stores word starts).",
)  # fmt: skip
@click.option("--cache-directory", type=click.Path(file_okay=False), help="With DATA: dataset_reader.cache_directory.")
@click.option(
    "-w", "--workers", type=click.IntRange(min=1), help="Processes that tokenize [one per 16 MB, up to all cores]."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@config_options
def command(
    data_path,
    config_file,
    model_name,
    max_length,
    source_type,
    fields,
    split,
    subset,
    revision,
    streaming,
    unit,
    cache_directory,
    workers,
    no_progress,
    overrides,
    ext_vars,
    include_packages,
):
    """Build the corpus index of DATA (a file, folder, glob, saved dataset or hf:NAME), or with
    --config every index an experiment uses. An index already built is reused, not rebuilt."""
    from declutr.core.errors import DeclutrError

    if (data_path is None) == (config_file is None):
        raise DeclutrError("give either DATA (with --tokenizer) or --config CONFIG, not both")
    started = time.perf_counter()
    if config_file is not None:
        loaders = _config_indexes(config_file, overrides, ext_vars, workers, not no_progress)
        for key, loader in loaders:
            for corpus in loader.corpora:
                _report(f"{key} {corpus.name}" if len(loader.corpora) > 1 else key, corpus.index)
    else:
        if model_name is None:
            raise DeclutrError("DATA needs --tokenizer MODEL (the model whose tokenizer training uses)")
        dataset = {"split": split, "subset": subset, "revision": revision, "streaming": streaming or None}
        settings = {"type": source_type, **{key: value for key, value in dataset.items() if value is not None}}
        if fields:
            settings["fields"] = list(fields) if len(fields) > 1 else fields[0]
        index = _data_index(data_path, model_name, max_length, settings, unit, cache_directory, workers, no_progress)
        _report(data_path, index)
    click.echo(f"done in {time.perf_counter() - started:.1f}s", err=True)


def _data_index(data_path, model_name, max_length, settings, unit, cache_directory, workers, quiet):
    from declutr.core.construct import build
    from declutr.data import DocumentSource
    from declutr.data.index import load_or_build_index
    from declutr.data.tokenizer import TransformerTokenizer

    source = build(DocumentSource, settings, "--format")
    tokenizer = TransformerTokenizer(model_name, max_length)
    return load_or_build_index(data_path, source, tokenizer, unit, cache_directory, not quiet, workers)


def _config_indexes(config_file, overrides, ext_vars, workers, progress):
    """``(config key, loader)`` for the experiment's data loaders, built as ``declutr train``
    builds them (which builds their indexes), with ``index_workers`` set to ``workers``."""
    import tempfile

    from declutr.commands.config import resolve_experiment
    from declutr.training.experiment import Experiment

    config = resolve_experiment(config_file, overrides, ext_vars)
    for key in ("data_loader", "validation_data_loader"):
        if workers is not None and (key == "data_loader" or config.get(key) is not None):
            config[key] = {**(config.get(key) or {}), "index_workers": workers}
        if config.get(key) is not None and not progress:
            config[key]["progress"] = False
    experiment = Experiment(config)
    with tempfile.TemporaryDirectory(prefix="declutr-index-") as run_dir:
        _, train, validation = experiment.build_data(run_dir)
    return [
        (key, loader) for key, loader in (("train_data_path", train), ("validation_data_path", validation)) if loader
    ]


def _report(what, index) -> None:
    size = sum(path.stat().st_size for path in index.directory.iterdir() if path.is_file())
    tokens = int(index.token_offsets[-1])
    click.echo(f"{what}: {len(index):,} records, {tokens:,} tokens, {size / 1e6:,.1f} MB index in {index.directory}")
    for name, commit in zip(index.files, index.commits):
        if commit:
            click.echo(f"  {name} at commit {commit} (set document_source.revision to it to train offline)")
