"""Build objects from config dicts, driven by constructor type hints (the constructor is the schema).

``build(Pooler, {"type": "mean"}, path="model.pooler")`` looks up the registered class, matches
config keys to the typed keyword arguments of its constructor, recursively builds nested
components, and checks primitives. The whole config is validated first and every problem is
reported at once, one line each, each starting with its key path.

Values the builder injects rather than reading from the config ("extras") are passed by
keyword and reach every constructor below that names them (e.g. ``tokenizer``). ``Lazy[T]``
defers construction until run-time arguments exist (``T.runtime_args``, e.g. an optimizer's
``model_parameters``).
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import os
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from declutr.core.errors import ConfigurationError, DeclutrError, closest
from declutr.core.registrable import Registrable

T = TypeVar("T")


class Lazy(Generic[T]):
    """A component whose construction waits for run-time arguments: ``lazy.construct(**kwargs)``."""

    def __init__(self, factory: Callable[..., T], config: Any = None):
        self._factory = factory
        self.config = config

    def construct(self, **runtime_args) -> T:
        return self._factory(**runtime_args)

    def __repr__(self) -> str:
        return f"Lazy({self.config!r})"


class AtLeast:
    """A lower bound the validation checks: ``batch_size: Annotated[int, AtLeast(1)]``, so a dry
    run (``declutr config``) catches a bad value even of a component built later (``Lazy``)."""

    def __init__(self, minimum: float):
        self.minimum = minimum

    def problem(self, value: Any) -> str | None:
        return None if value >= self.minimum else f"must be at least {self.minimum}, got {_show(value)}"

    def __repr__(self) -> str:
        return f">= {self.minimum}"


class _Invalid:
    """Returned in place of a value that failed validation (its error is already recorded)."""


class _Placeholder:
    """Stands for an injected or validated value during a dry run, and for a deferred value (given
    later, by ``Lazy.construct``) while building."""

    def __repr__(self) -> str:
        return "<validated>"


INVALID = _Invalid()
PLACEHOLDER = _Placeholder()
_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def type_name(annotation: Any) -> str:
    """A readable name for a type hint, as shown in errors and ``declutr components``."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any"
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(_show(a) for a in args)
    if origin is Lazy:
        return type_name(args[0])
    if origin is Annotated:
        bounds = [repr(m) for m in annotation.__metadata__ if isinstance(m, AtLeast)]
        return f"{type_name(args[0])} ({', '.join(bounds)})" if bounds else type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        if issubclass(annotation, Registrable) and annotation.kind() is annotation:
            return annotation.kind_name
        return annotation.__name__
    return str(annotation)


def parameters(cls: type, constructor: Callable | None = None) -> list[tuple[str, Any, Any]]:
    """``(name, type hint, default)`` for each keyword argument a constructor takes from a config.

    ``constructor`` is an alternative classmethod (default: ``cls.__init__``). An ``__init__``
    taking ``**kwargs`` also accepts the arguments of the next ``__init__`` up the class
    hierarchy (as in AllenNLP), so a subclass need not repeat its parent's.
    """
    owners = (
        [None] if constructor is not None else [c for c in cls.__mro__ if "__init__" in c.__dict__ and c is not object]
    )
    result: list[tuple[str, Any, Any]] = []
    for owner in owners:
        function = constructor if owner is None else owner.__dict__["__init__"]
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception:  # noqa: BLE001  (unresolvable forward references of any kind: fall back to "any")
            hints = {}
        var_keyword = False
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD:
                var_keyword = True
            elif (
                parameter.kind is not parameter.VAR_POSITIONAL
                and name not in ("self", "cls")
                and all(name != seen for seen, _, _ in result)
            ):
                result.append((name, hints.get(name, Any), parameter.default))
        if not var_keyword:
            break
    return result


class _Builder:
    """One walk over a config: ``building=False`` only validates and records every problem."""

    def __init__(self, building: bool):
        self.building = building
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> _Invalid:
        self.problems.append(f"{path or 'config'}: {message}")
        return INVALID

    # -- values --------------------------------------------------------------------------
    def value(self, annotation: Any, value: Any, path: str, extras: dict) -> Any:
        if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
            return value
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (Union, types.UnionType):
            return self.union(args, value, path, extras)
        if origin is Annotated:
            built = self.value(args[0], value, path, extras)
            if isinstance(built, (int, float)) and not isinstance(built, bool):
                for bound in annotation.__metadata__:
                    message = bound.problem(built) if isinstance(bound, AtLeast) else None
                    if message:
                        return self.fail(path, message)
            return built
        if origin is Literal:
            if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
                return value
            return self.fail(path, f"expected one of {', '.join(_show(a) for a in args)}, got {_show(value)}")
        if origin is Lazy or annotation is Lazy:
            return self.lazy(args[0] if args else Any, value, path, extras)
        if annotation is type(None) or annotation is None:
            return None if value is None else self.fail(path, f"expected null, got {_show(value)}")
        if origin is not None:
            return self.collection(annotation, origin, args, value, path, extras)
        if annotation in (list, tuple, dict, set):
            return self.collection(annotation, annotation, (), value, path, extras)
        if annotation is bool:
            return value if isinstance(value, bool) else self.fail(path, f"expected bool, got {_show(value)}")
        if annotation is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return value if ok else self.fail(path, f"expected int, got {_show(value)}")
        if annotation is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return float(value) if ok else self.fail(path, f"expected float, got {_show(value)}")
        if annotation is str or annotation is os.PathLike:
            ok = isinstance(value, str) or (annotation is os.PathLike and isinstance(value, os.PathLike))
            return value if ok else self.fail(path, f"expected string, got {_show(value)}")
        if isinstance(annotation, type):
            if isinstance(value, annotation) and not isinstance(value, dict):
                return value  # an object built in Python and passed in directly
            if value is PLACEHOLDER:
                return value
            if issubclass(annotation, Registrable):
                return self.component(annotation, value, path, extras)
            if isinstance(value, dict) and annotation.__init__ is not object.__init__:
                return self.call(annotation, annotation, value, path, extras)
            return self.fail(path, f"expected {type_name(annotation)}, got {_show(value)}")
        return value  # a hint we cannot check (TypeVar, Protocol, ...)

    def union(self, members: tuple, value: Any, path: str, extras: dict) -> Any:
        if value is None and type(None) in members:
            return None
        candidates = [m for m in members if m is not type(None)]
        for member in candidates:
            trial = _Builder(building=False)
            trial.value(member, value, path, extras)
            if not trial.problems:
                return self.value(member, value, path, extras)
        # Nothing fits: explain the failure of the one member the value was evidently meant for.
        shaped = [m for m in candidates if _accepts_shape(m, value)]
        if len(candidates) == 1 or len(shaped) == 1:
            return self.value(shaped[0] if shaped else candidates[0], value, path, extras)
        return self.fail(path, f"expected {' | '.join(type_name(m) for m in members)}, got {_show(value)}")

    def collection(self, annotation, origin, args, value, path, extras) -> Any:
        if origin in _MAPPINGS:
            if not isinstance(value, dict):
                return self.fail(path, f"expected a mapping, got {_show(value)}")
            value_type = args[1] if len(args) == 2 else Any
            return {k: self.value(value_type, v, join(path, k), extras) for k, v in value.items()}
        if not isinstance(value, (list, tuple)):
            return self.fail(path, f"expected a list, got {_show(value)}")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis or not args:
                item_types = [args[0] if args else Any] * len(value)
            elif len(args) != len(value):
                return self.fail(path, f"expected a list of {len(args)} items, got {len(value)}")
            else:
                item_types = list(args)
            return tuple(self.value(t, v, join(path, i), extras) for i, (t, v) in enumerate(zip(item_types, value)))
        if origin in _SEQUENCES or origin in (set, frozenset, collections.abc.Set):
            item_type = args[0] if args else Any
            items = [self.value(item_type, v, join(path, i), extras) for i, v in enumerate(value)]
            return set(items) if origin in (set, frozenset, collections.abc.Set) and self.building else items
        return value

    def lazy(self, inner: Any, value: Any, path: str, extras: dict) -> Any:
        runtime = getattr(inner, "runtime_args", ()) if isinstance(inner, type) else ()
        if not self.building:  # build() validated everything before this building pass
            self.value(inner, value, path, {**extras, **{name: PLACEHOLDER for name in runtime}})
            return PLACEHOLDER

        def factory(**runtime_args):
            return build(inner, value, path=path, extras={**extras, **runtime_args})

        return Lazy(factory, value)

    # -- components ------------------------------------------------------------------------
    def component(self, base: type, value: Any, path: str, extras: dict) -> Any:
        kind = base.kind()
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            return self.fail(path, f'expected a {kind.kind_name} (an object with "type"), got {_show(value)}')
        config = dict(value)
        name = config.pop("type", None) or kind.default_implementation
        if name is None:
            if (
                base is not kind
                and not inspect.isabstract(base)
                and base not in (c for c, _ in Registrable._registry[kind].values())
            ):
                return self.call(base, base, config, path, extras)
            available = ", ".join(kind.list_available()) or "none registered"
            return self.fail(path, f'missing "type" (a {kind.kind_name}: one of {available})')
        if not isinstance(name, str):
            return self.fail(join(path, "type"), f"expected string, got {_show(name)}")
        try:
            subclass, constructor = kind.resolve(name, path=join(path, "type"))
        except ConfigurationError as error:
            self.problems.extend(error.problems)
            return INVALID
        if not issubclass(subclass, base):
            return self.fail(join(path, "type"), f'"{name}" is a {kind.kind_name} but not a {base.__name__}')
        function = subclass if constructor is None else getattr(subclass, constructor)
        return self.call(subclass, function, config, path, extras)

    def call(self, cls: type, function: Callable, config: dict, path: str, extras: dict) -> Any:
        params = parameters(cls, None if function is cls else function)
        known = {name for name, _, _ in params}
        kwargs, failed = {}, False
        for name, annotation, default in params:
            key_path = join(path, name)
            if name in config:
                built = self.value(annotation, config[name], key_path, extras)
            elif name in extras and not (self.building and extras[name] is PLACEHOLDER):  # PLACEHOLDER: deferred
                built = extras[name]
            elif default is not inspect.Parameter.empty:
                continue
            else:
                built = self.fail(path, f'missing required key "{name}" ({type_name(annotation)})')
            failed |= built is INVALID
            kwargs[name] = built
        refused = getattr(cls, "refused_keys", {})
        for key in config:
            if key in refused and key not in known:  # a key users expect here, refused with the reason
                self.fail(join(path, key), refused[key])
                failed = True
            elif key not in known:
                suggestion = closest(key, known)
                hint = (
                    f' (did you mean "{suggestion}"?)'
                    if suggestion
                    else f" (allowed: {', '.join(sorted(known)) or 'none'})"
                )
                self.fail(path, f'unexpected key "{key}"{hint}')
                failed = True
        if failed:
            return INVALID
        if not self.building:
            return PLACEHOLDER
        try:
            return function(**kwargs)
        except DeclutrError as error:  # a user mistake found by the component: give it this key path
            raise ConfigurationError(_with_path(path, error)) from error
        except ValueError as error:  # components raise ValueError for bad argument values
            # The cause (and its traceback) stays attached: ``--traceback`` shows it.
            raise ConfigurationError(f"{path or 'config'}: {error}") from error


def _with_path(path: str, error: DeclutrError) -> list[str]:
    """The problems of ``error``, each starting with a key path: ``path`` unless it has one below it."""
    problems = error.problems if isinstance(error, ConfigurationError) else str(error).splitlines() or [repr(error)]
    if not path:
        return problems
    return [p if p == path or p.startswith((f"{path}.", f"{path}[", f"{path}:")) else f"{path}: {p}" for p in problems]


def _accepts_shape(annotation: Any, value: Any) -> bool:
    """Whether ``value`` has the JSON shape ``annotation`` takes (an object, a list, a scalar)."""
    origin = typing.get_origin(annotation) or annotation
    if origin is Lazy or origin is Annotated:
        return _accepts_shape(typing.get_args(annotation)[0], value)
    is_class = isinstance(origin, type) and origin not in (str, int, float, bool, list, tuple, dict, set)
    if isinstance(value, dict):
        return origin in _MAPPINGS or is_class
    if isinstance(value, list):
        return origin in _SEQUENCES or origin in (tuple, set)
    return not is_class or (isinstance(origin, type) and issubclass(origin, Registrable) and isinstance(value, str))


def validate(annotation: Any, config: Any, path: str = "", extras: dict | None = None) -> list[str]:
    """Every problem in ``config`` for ``annotation``, one line each; builds nothing."""
    builder = _Builder(building=False)
    builder.value(annotation, config, path, {name: PLACEHOLDER for name in (extras or {})})
    return builder.problems


def build(
    annotation: Any, config: Any, path: str = "", extras: dict | None = None, deferred: tuple[str, ...] = ()
) -> Any:
    """Validate ``config`` against ``annotation`` (reporting every problem at once), then build it.

    ``extras`` reach every constructor below that names them. ``deferred`` names values that only
    the ``Lazy`` components below receive, from ``lazy.construct(...)``: validation counts them as
    given; a component built now does not get them (its default applies, or it is an error).
    """
    extras = {**dict.fromkeys(deferred, PLACEHOLDER), **(extras or {})}
    problems = validate(annotation, config, path, extras)
    if problems:
        raise ConfigurationError(problems)
    builder = _Builder(building=True)
    built = builder.value(annotation, config, path, extras)
    if builder.problems:
        raise ConfigurationError(builder.problems)
    return built
