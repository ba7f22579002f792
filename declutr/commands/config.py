"""``declutr config``: print the resolved experiment and check that every component can be built."""

from __future__ import annotations

import json

import click

from declutr.commands import config_options


def resolve_experiment(config_file: str, overrides: str | None, ext_vars: tuple[str, ...]) -> dict:
    """Load an experiment file (translating a reference AllenNLP file when needed) and validate it.

    A file in the reference implementation's schema (AllenNLP 1.1; docs/configs.md) is translated
    to declutr's first, one line per translated key on stderr; ``--overrides`` are in declutr's
    schema and merged after the translation. Every problem is reported at once, each with its
    key path and, when found, file and line.
    """
    from declutr.core.config import evaluate_file, locate, merge, parse_ext_vars, parse_overrides
    from declutr.core.errors import ConfigurationError
    from declutr.training.experiment import validate_experiment
    from declutr.training.legacy import is_reference_config, translate

    variables = parse_ext_vars(ext_vars)
    config = evaluate_file(config_file, variables)
    if is_reference_config(config):
        config, messages = translate(config)
        click.echo(f"{config_file}: the reference's AllenNLP 1.1 schema; translated to declutr's:", err=True)
        for message in messages:
            click.echo(f"translated: {message}", err=True)
    config = merge(config, parse_overrides(overrides, variables))
    try:
        validate_experiment(config)
    except ConfigurationError as error:
        raise ConfigurationError([locate(problem, config_file) for problem in error.problems]) from None
    return config


@click.command("config")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@config_options
def command(config_file, overrides, ext_vars, include_packages):
    """Print CONFIG resolved as JSON and check every component in it can be built.

    A dry run: no model weights are loaded and no data is read."""
    config = resolve_experiment(config_file, overrides, ext_vars)
    click.echo(json.dumps(config, indent=2))
    click.echo("config OK: every component can be built", err=True)
