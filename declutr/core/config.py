"""Experiment files: JSONnet (or plain JSON) evaluated with ext vars, then overrides merged in."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from declutr.core.errors import ConfigurationError

#: an ext code the loader always defines: an object of every ext var (the environment, then
#: ``--ext-var``), so a file can give a default, e.g. ``training_config/lib/declutr.libsonnet``'s
#: ``extVarOr("TRANSFORMER_MODEL", "roberta-base")`` (jsonnet's ``std.extVar`` has none)
EXT_VARS_OBJECT = "DECLUTR_EXT_VARS"


def _jsonnet_error(error: Exception, origin: str) -> ConfigurationError:
    """Turn a jsonnet failure into one line: ``file:line:col: message``."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[0] if lines else str(error)
    message = re.sub(r"^(STATIC ERROR|RUNTIME ERROR):\s*", "", message)
    location = next((line for line in lines[1:] if re.match(r"^\S+:\d+:\d+", line)), None)
    if location and not re.match(r"^\S+:\d+:\d+", message):
        message = f"{location.split()[0].rstrip(':')}: {message}"
    return ConfigurationError(f"{origin}: {message}")


def parse_ext_vars(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` from ``--ext-var`` into a dict."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f'--ext-var: expected KEY=VALUE, got "{pair}"')
        result[key] = value
    return result


def _jsonnet_variables(ext_vars: dict[str, str] | None) -> dict[str, Any]:
    """The ``ext_vars`` and ``ext_codes`` arguments of a jsonnet evaluation: the environment and
    ``ext_vars`` (which win), plus ``EXT_VARS_OBJECT`` holding all of them as one object."""
    variables = {**os.environ, **(ext_vars or {})}
    variables.pop(EXT_VARS_OBJECT, None)
    return {"ext_vars": variables, "ext_codes": {EXT_VARS_OBJECT: json.dumps(variables)}}


def evaluate_file(path: str | os.PathLike, ext_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """Evaluate a JSONnet/JSON file; imports resolve relative to it; ``std.extVar`` reads
    the environment and ``ext_vars`` (which win); ``std.extVar("DECLUTR_EXT_VARS")`` is all
    of them as one object (for defaults)."""
    import _jsonnet

    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such experiment file")
    try:
        text = _jsonnet.evaluate_file(str(path), **_jsonnet_variables(ext_vars))
    except RuntimeError as error:
        raise _jsonnet_error(error, str(path)) from None
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ConfigurationError(f"{path}: an experiment file must evaluate to an object, got {type(config).__name__}")
    return config


def parse_overrides(overrides: str | dict | None, ext_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """``--overrides`` as a dict: a JSON or JSONnet object; dotted keys become nested keys."""
    if not overrides:
        return {}
    if isinstance(overrides, str):
        import _jsonnet

        try:
            overrides = json.loads(_jsonnet.evaluate_snippet("overrides", overrides, **_jsonnet_variables(ext_vars)))
        except RuntimeError as error:
            raise _jsonnet_error(error, "--overrides") from None
    if not isinstance(overrides, dict):
        raise ConfigurationError('--overrides: expected an object such as {"trainer.num_epochs": 2}')
    return unflatten(overrides)


def unflatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a": {"c.d": 2}}`` -> ``{"a": {"b": 1, "c": {"d": 2}}}``."""
    result: dict[str, Any] = {}
    for key, value in overrides.items():
        value = unflatten(value) if isinstance(value, dict) else value
        *parents, last = key.split(".")
        target = result
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigurationError(f'--overrides: "{key}" conflicts with another override')
        if isinstance(value, dict) and isinstance(target.get(last), dict):
            target[last] = merge(target[last], value)
        else:
            target[last] = value
    return result


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: objects merge key by key; any other override value replaces the base value."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def load_config(
    path: str | os.PathLike, overrides: str | dict | None = None, ext_vars: dict[str, str] | None = None
) -> dict[str, Any]:
    """The resolved experiment: the file evaluated, then ``overrides`` deep-merged into it."""
    return merge(evaluate_file(path, ext_vars), parse_overrides(overrides, ext_vars))


def locate(problem: str, path: str | os.PathLike) -> str:
    """Add ``(file:line)`` to a ``key.path: message`` problem when the key can be found in the file.

    Best effort: the line of the innermost named key (the unexpected key itself when the
    message names one), searched for in the order of the key path.
    """
    key_path, sep, message = problem.partition(": ")
    if not sep:
        return problem
    keys = [k for k in re.split(r"[.\[\]]", key_path) if k and not k.isdigit() and k != "config"]
    named = re.match(r'unexpected key "([^"]+)"', message)
    if named:
        keys.append(named.group(1))
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return problem
    line_number, start = None, 0
    for key in keys:
        pattern = re.compile(rf'(^|[\s{{,])["\']?{re.escape(key)}["\']?\s*:')
        for index in range(start, len(lines)):
            if pattern.search(lines[index]):
                line_number, start = index + 1, index
                break
        else:
            break
    return f"{problem} ({path}:{line_number})" if line_number else problem
