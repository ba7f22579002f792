"""``declutr config``: print the resolved experiment and check that every component can be built."""

from __future__ import annotations

import json

import click

from declutr.commands import config_options


def resolve_experiment(config_file: str, overrides: str | None, ext_vars: tuple[str, ...]) -> dict:
    """:func:`declutr.training.experiment.resolve_config`, its messages printed on stderr."""
    from declutr.training.experiment import resolve_config

    config, messages = resolve_config(config_file, overrides, ext_vars)
    for message in messages:
        click.echo(message, err=True)
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
