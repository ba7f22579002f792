"""The ``declutr`` command line: one module per subcommand, imported only when used.

Each module in this package defines a click command named ``command``. Plugins add their own
with :func:`declutr.core.plugins.register_command`. Every command takes ``--include-package``;
the group imports plugins before dispatch, so plugin subcommands exist too.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

import click

from declutr.core.errors import DeclutrError
from declutr.core.plugins import discover, registered_commands
from declutr.version import VERSION

BUILTIN = ("train", "evaluate", "embed", "merge", "config", "components", "tokenizer", "index", "checkpoints")


def _included_packages(args: list[str]) -> list[str]:
    packages = []
    for index, arg in enumerate(args):
        if arg == "--include-package" and index + 1 < len(args):
            packages.append(args[index + 1])
        elif arg.startswith("--include-package="):
            packages.append(arg.split("=", 1)[1])
    return packages


#: set to 1 (or pass ``declutr --traceback``) to see the stack of any error
TRACEBACK_VARIABLE = "DECLUTR_TRACEBACK"
TRACEBACK_HINT = f"declutr --traceback ... or {TRACEBACK_VARIABLE}=1 shows the stack"


def tracebacks_wanted() -> bool:
    return os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report(error: DeclutrError) -> None:
    """A user mistake: one line per problem (and the stack of what caused it when asked for)."""
    if tracebacks_wanted():
        traceback.print_exception(error)
    for line in str(error).splitlines() or [type(error).__name__]:
        click.echo(f"{error.prefix}{line}", err=True)
    cause = error.__cause__  # a missing module's stack says no more than its name
    if (
        isinstance(cause, Exception)
        and not isinstance(cause, (DeclutrError, ModuleNotFoundError))
        and not tracebacks_wanted()
    ):
        click.echo(f"Error: (raised as {type(cause).__name__}; {TRACEBACK_HINT})", err=True)


def report_unexpected(error: Exception) -> None:
    """Anything else is a bug, in declutr, a plugin or a library: one line, the stack on request."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    click.echo(f"Error: {type(error).__name__}: {lines[0] if lines else ''} (unexpected; {TRACEBACK_HINT})", err=True)


class DeclutrGroup(click.Group):
    def _discover(self, ctx: click.Context, args: list[str]) -> None:
        if ctx.meta.get("declutr.plugins"):
            return
        ctx.meta["declutr.plugins"] = True
        try:
            discover(_included_packages(args))
        except DeclutrError as error:
            report(error)
            ctx.exit(1)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self._discover(ctx, args)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._discover(ctx, sys.argv[1:])
        builtin = [name for name in BUILTIN if importlib.util.find_spec(f"declutr.commands.{name}") is not None]
        return sorted(set(builtin) | set(registered_commands()))

    def get_command(self, ctx: click.Context, name: str):
        self._discover(ctx, sys.argv[1:])
        if name in BUILTIN and importlib.util.find_spec(f"declutr.commands.{name}") is not None:
            return importlib.import_module(f"declutr.commands.{name}").command
        command = registered_commands().get(name)
        if command is not None and not any(p.name == "include_packages" for p in command.params):
            command.params.append(_include_package_param(hidden=True))
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DeclutrError as error:
            report(error)
            ctx.exit(error.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if tracebacks_wanted():
                raise
            report_unexpected(error)
            ctx.exit(1)


def _include_package_param(hidden: bool = False) -> click.Option:
    return click.Option(
        ["--include-package", "include_packages"],
        multiple=True,
        metavar="PACKAGE",
        expose_value=False,
        hidden=hidden,
        help="Import PACKAGE and its submodules so their components register (repeatable).",
    )


def _traceback_param() -> click.Option:
    def enable(ctx, param, value):
        if value:  # through the environment, so spawned training processes see it too
            os.environ[TRACEBACK_VARIABLE] = "1"

    return click.Option(
        ["--traceback"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=enable,
        help=f"Show the full stack of an error (also: {TRACEBACK_VARIABLE}=1).",
    )


@click.group(
    cls=DeclutrGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=[_include_package_param(), _traceback_param()],
)
@click.version_option(VERSION, prog_name="declutr")
def main() -> None:
    """Learn sentence embeddings without labels (DeCLUTR, SimCSE, IS-BERT)."""


def include_package_option(function):
    """``--include-package`` (repeatable): a package whose components should register.

    The group has imported them already (it must, to find plugin subcommands); the option is
    declared on every command so it shows in ``--help`` and is accepted anywhere."""
    return click.option(
        "--include-package",
        "include_packages",
        multiple=True,
        metavar="PACKAGE",
        help="Import PACKAGE and its submodules so their components register (repeatable).",
    )(function)


def config_options(function):
    """The options every command that reads an experiment file shares."""
    function = click.option(
        "-o",
        "--overrides",
        default=None,
        metavar="JSON",
        help='A JSON/JSONnet object deep-merged into the config; dotted keys allowed: {"trainer.num_epochs": 2}.',
    )(function)
    function = click.option(
        "--ext-var",
        "ext_vars",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a JSONnet std.extVar (repeatable; the environment is also visible).",
    )(function)
    return include_package_option(function)


def precision_option(function):
    """``--precision``: the Encoder's forward-pass arithmetic (``Encoder(precision=...)``)."""
    from declutr.inference.encoder import PRECISIONS

    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="auto = bf16 autocast on CUDA (fp16 without bf16), float32 elsewhere; float32 = never autocast "
        "(CUDA then matches the CPU); bfloat16 = autocast on CUDA and CPU; float16 = autocast on CUDA.",
    )(function)
