"""``declutr train CONFIG -s DIR``: train an experiment into a run directory."""

from __future__ import annotations

import click

from declutr.commands import config_options


@click.command("train")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option(
    "-s",
    "--serialization-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="The run directory (config.json, out.log, metrics.jsonl, checkpoints/, model/).",
)
@click.option("-r", "--recover", is_flag=True, help="Continue the run in DIR from its latest checkpoint.")
@click.option("-f", "--force", is_flag=True, help="Delete DIR's contents and start over.")
@config_options
def command(config_file, serialization_dir, recover, force, overrides, ext_vars, include_packages):
    """Train the experiment in CONFIG (JSONnet or JSON) into DIR."""
    from declutr.training.experiment import Experiment
    from declutr.training.run import train_model

    experiment = Experiment.from_file(config_file, overrides, ext_vars)
    for message in experiment.messages:
        click.echo(message, err=True)
    metrics = train_model(experiment, serialization_dir, recover=recover, force=force)
    if metrics:
        shown = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in metrics.items()
            if k.endswith("loss") or k in ("step", "epoch")
        }
        skipped = ""
        if any(v for k, v in metrics.items() if k.startswith("documents_skipped_")):
            from declutr.data.loader import skipped_summary

            skipped = f"; documents skipped {skipped_summary(metrics, int(metrics.get('documents', 0)))}"
        click.echo(f"done: {shown}{skipped}; model in {serialization_dir}/model", err=True)
