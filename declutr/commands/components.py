"""``declutr components [KIND]``: every registered component with its parameters and defaults."""

from __future__ import annotations

import inspect
import json

import click

from declutr.commands import include_package_option


def describe_all() -> dict[str, dict[str, dict]]:
    """``{kind: {name: {"class", "doc", "parameters": [{name, type, default}]}}}`` from type hints."""
    from declutr.core.construct import parameters, type_name
    from declutr.core.registrable import Registrable
    from declutr.training.experiment import INJECTED, import_components

    import_components()
    result: dict[str, dict[str, dict]] = {}
    for kind in Registrable._kinds:
        entries = {}
        for name in kind.list_available():
            subclass, constructor = kind.resolve(name)
            function = None if constructor is None else getattr(subclass, constructor)
            injected = set(kind.runtime_args)
            params = [
                {"name": p, "type": type_name(t), **({} if d is inspect.Parameter.empty else {"default": _jsonable(d)})}
                for p, t, d in parameters(subclass, function)
                if p not in injected and p not in INJECTED
            ]
            doc = inspect.getdoc(function or subclass) or ""
            entries[name] = {
                "class": f"{subclass.__module__}.{subclass.__qualname__}",
                "doc": doc.split("\n\n")[0].replace("\n", " "),
                "parameters": params,
            }
        result[kind.kind_name] = entries
    return result


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


@click.command("components")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@include_package_option
def command(kind, as_json, include_packages):
    """List registered components of every KIND (or one), with parameters, types and defaults."""
    from declutr.core.errors import DeclutrError, closest

    described = describe_all()
    if kind is not None:
        if kind not in described:
            suggestion = closest(kind, described)
            hint = f'; did you mean "{suggestion}"?' if suggestion else ""
            raise DeclutrError(f'unknown component kind "{kind}"{hint} available: {", ".join(sorted(described))}')
        described = {kind: described[kind]}
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for kind_name, entries in sorted(described.items()):
        click.secho(kind_name, bold=True)
        for name, entry in entries.items():
            click.echo(f"  {name}  ({entry['class']})")
            if entry["doc"]:
                click.echo(f"      {entry['doc']}")
            for p in entry["parameters"]:
                default = f" = {json.dumps(p['default'])}" if "default" in p else "  (required)"
                click.echo(f"      {p['name']}: {p['type']}{default}")
        click.echo()
