"""Finding user code so its components register: three routes, all idempotent.

1. ``--include-package PKG`` (any command): imports PKG and every submodule under it.
2. A ``.declutr_plugins`` file in the working directory: one module per line (``#`` comments).
3. Installed distributions exposing the entry-point group ``declutr.plugins``.

A plugin may also add CLI subcommands with :func:`register_command`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from declutr.core.errors import DeclutrError

#: the built-in packages whose components register on import (AllenNLP's default plugins); the
#: ``senteval`` callback is a module of its own so that importing evaluation never imports torch
COMPONENT_PACKAGES = (
    "declutr.data",
    "declutr.modules",
    "declutr.losses",
    "declutr.models",
    "declutr.training",
    "declutr.evaluation",
    "declutr.evaluation.callback",
)
ENTRY_POINT_GROUP = "declutr.plugins"
PLUGINS_FILE = ".declutr_plugins"
_commands: dict[str, object] = {}
_imported: set[str] = set()


def register_command(command):
    """Add a click command to the ``declutr`` CLI (usable as a decorator on a click command)."""
    _commands[command.name] = command
    return command


def registered_commands() -> dict[str, object]:
    return dict(_commands)


def imported_plugins() -> list[str]:
    """The plugin modules imported so far (for a spawned process to import them too)."""
    return sorted(_imported)


def import_plugins(names: list[str]) -> None:
    """Import plugin modules another process had imported (:func:`imported_plugins`)."""
    for name in names:
        import_module_and_submodules(name, "plugin")


def import_components() -> None:
    """Import every built-in component package so all names register."""
    for name in COMPONENT_PACKAGES:
        importlib.import_module(name)


def import_module_and_submodules(name: str, origin: str) -> None:
    """Import ``name`` and, if it is a package, all modules under it."""
    if name in _imported:
        return
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(name)
        _imported.add(name)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}."):
            if info.name not in _imported:
                importlib.import_module(info.name)
                _imported.add(info.name)
    except Exception as error:  # any failure inside user code is reported as the plugin's
        raise DeclutrError(f'{origin}: cannot import plugin "{name}": {type(error).__name__}: {error}') from error


def discover(include_packages: tuple[str, ...] | list[str] = ()) -> None:
    """Import every plugin reachable by the three routes."""
    for package in include_packages:
        import_module_and_submodules(package, "--include-package")
    plugins_file = Path(PLUGINS_FILE)
    if plugins_file.is_file():
        for number, line in enumerate(plugins_file.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.split("#", 1)[0].strip()
            if name:
                import_module_and_submodules(name, f"{PLUGINS_FILE}:{number}")
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value in _imported:
            continue
        try:
            entry_point.load()
            _imported.add(entry_point.value)
        except Exception as error:
            dist = entry_point.dist.name if entry_point.dist else "?"
            raise DeclutrError(
                f'entry point "{entry_point.name}" of {dist} (group {ENTRY_POINT_GROUP}): cannot import plugin '
                f'"{entry_point.value}": {type(error).__name__}: {error}'
            ) from error
