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


def strip_comments(text: str) -> str:
    """``text`` with its JSONnet comments (``//``, ``#``, ``/* */``) blanked; strings and line
    numbers are kept."""
    out, index, quote = [], 0, None
    while index < len(text):
        char = text[index]
        if quote:
            out.append(char)
            if char == "\\" and index + 1 < len(text):
                out.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
            out.append(char)
        elif char == "#" or text.startswith("//", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            end = len(text) if end < 0 else end + 2
            out.append("".join(c if c == "\n" else " " for c in text[index:end]))
            index = end
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _config_files(path: Path, seen: set[Path] | None = None) -> list[Path]:
    """``path`` and, recursively, the files it imports (relative imports only)."""
    seen = set() if seen is None else seen
    path = path.resolve()
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    files = [path]
    text = strip_comments(path.read_text(encoding="utf-8"))
    for name in re.findall(r'\bimport(?:str)?\s+["\']([^"\']+)["\']', text):
        files += _config_files(path.parent / name, seen)
    return files


def _in_overrides(keys: list[str | int], overrides: Any) -> bool:
    for key in keys:
        in_object = isinstance(overrides, dict) and isinstance(key, str) and key in overrides
        in_list = isinstance(overrides, list) and isinstance(key, int) and key < len(overrides)
        if not (in_object or in_list):
            return False
        overrides = overrides[key]
    return True


def locate(problem: str, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> str:
    """Add where a ``key.path: message`` problem's key was written, when that is certain.

    ``(from --overrides)`` when the key path is in ``overrides``; ``(file:line)`` when the
    innermost key occurs once, outside comments, in ``path`` and the files it imports; ``(from
    file)`` when it occurs only in one imported file, several times; otherwise nothing (no
    location beats a wrong one).
    """
    key_path, sep, message = problem.partition(": ")
    if not sep:
        return problem
    parts = [int(k) if k.isdigit() else k for k in re.split(r"[.\[\]]", key_path) if k and k != "config"]
    named = re.match(r'unexpected key "([^"]+)"', message)
    if named:
        parts.append(named.group(1))
    if not parts:
        return problem
    if overrides and _in_overrides(parts, overrides):
        return f"{problem} (from --overrides)"
    key = next((k for k in reversed(parts) if isinstance(k, str)), None)
    if key is None:
        return problem
    pattern = re.compile(rf'(^|[\s{{,])["\']?{re.escape(key)}["\']?\s*\+?:{{1,3}}')
    try:
        files = _config_files(Path(path))
    except (OSError, UnicodeDecodeError):
        return problem
    found = [
        (file, number)
        for file in files
        for number, line in enumerate(strip_comments(file.read_text(encoding="utf-8")).splitlines(), start=1)
        if pattern.search(line)
    ]
    if len(found) == 1:
        file, number = found[0]
        shown = path if file == Path(path).resolve() else _shown(file, Path(path))
        return f"{problem} ({shown}:{number})"
    imported = {file for file, _ in found}
    if len(imported) == 1 and found[0][0] != Path(path).resolve():
        return f"{problem} (from {_shown(found[0][0], Path(path))})"
    return problem


def _shown(file: Path, origin: Path) -> str:
    """An imported file's name as the user would type it: relative to the experiment file's folder."""
    try:
        return str(Path(origin).parent / file.relative_to(Path(origin).resolve().parent))
    except ValueError:
        return str(file)
