"""``declutr checkpoints RUN_DIR``: a run's checkpoints with their step, size and status.

Status is ``ok`` (matches its manifest), ``unverified`` (an earlier release's checkpoint, without
manifest, complete as far as its headers show), or ``damaged`` with what is wrong. The one
``--recover`` would continue from is marked ``<- resume``. Exit status 1 when a checkpoint is damaged.
"""

from __future__ import annotations

from pathlib import Path

import click

from declutr.commands import include_package_option


@click.command("checkpoints")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False))
@click.option("--no-checksums", is_flag=True, help="Compare sizes only (skip reading every file).")
@include_package_option
def command(run_dir, no_checksums, include_packages):
    """List the checkpoints of the run in RUN_DIR, newest first, and verify them."""
    from declutr.core.errors import DeclutrError
    from declutr.training.checkpoint import list_checkpoints

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DeclutrError(f"{run_dir} is not a directory")
    statuses = list_checkpoints(run_dir, checksums=not no_checksums)
    if not statuses:
        click.echo(f"no checkpoints in {run_dir / 'checkpoints'}")
        return
    resume = next((s for s in statuses if s.usable and not s.folder.name.startswith("damaged_")), None)
    click.echo(f"{'checkpoint':<26} {'step':>9} {'size':>10}  status")
    for status in statuses:
        step = "?" if status.step is None else str(status.step)
        note = f": {status.problem}" if status.problem else ""
        mark = "  <- resume" if status is resume else ""
        click.echo(f"{status.folder.name:<26} {step:>9} {_size(status.bytes):>10}  {status.status}{note}{mark}")
    if any(not s.usable for s in statuses):
        raise click.exceptions.Exit(1)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)
