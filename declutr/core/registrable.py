"""One ``Registrable`` base per kind of component; subclasses register under public names.

    class Pooler(Registrable):            # a kind
        default_implementation = "mean"

    @Pooler.register("mean")              # a component of that kind
    class MeanPooler(Pooler): ...

Registered names are public API (configs refer to them by ``"type"``). Building a component
from a config is ``declutr.core.build(Pooler, {"type": "mean"})`` (``core/construct.py``, which
imports this module; this module imports no builder).
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from collections.abc import Callable
from typing import ClassVar, TypeVar

from declutr.core.errors import ConfigurationError, closest

T = TypeVar("T", bound="Registrable")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Registrable:
    """Base of every component kind. Direct subclasses are kinds; their subclasses are components."""

    _registry: ClassVar[dict[type, dict[str, tuple[type, str | None]]]] = defaultdict(dict)
    _kinds: ClassVar[list[type]] = []
    #: the name used when a config omits ``"type"`` (``None``: ``"type"`` is required)
    default_implementation: ClassVar[str | None] = None
    #: constructor arguments a ``Lazy`` of this kind receives at run time, not from the config
    runtime_args: ClassVar[tuple[str, ...]] = ()
    #: the kind's name in messages and ``declutr components`` (``Pooler`` -> ``pooler``)
    kind_name: ClassVar[str] = "component"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if Registrable in cls.__bases__:
            cls.kind_name = cls.__dict__.get("kind_name", _snake_case(cls.__name__))
            Registrable._kinds.append(cls)

    @classmethod
    def kind(cls) -> type:
        """The kind (direct ``Registrable`` subclass) this class belongs to."""
        for klass in cls.__mro__:
            if Registrable in klass.__bases__:
                return klass
        raise TypeError(f"{cls.__name__} is not a component kind")

    @classmethod
    def register(
        cls, name: str, constructor: str | None = None, exist_ok: bool = False
    ) -> Callable[[type[T]], type[T]]:
        """Register a subclass under ``name``; ``constructor`` names an alternative classmethod."""
        registry = Registrable._registry[cls.kind()]

        def decorate(subclass: type[T]) -> type[T]:
            if not (isinstance(subclass, type) and issubclass(subclass, cls)):
                raise TypeError(f"cannot register {subclass!r} as a {cls.kind_name}: not a subclass of {cls.__name__}")
            if name in registry and not exist_ok and registry[name][0] is not subclass:
                taken = registry[name][0]
                raise ValueError(
                    f'{cls.kind_name} name "{name}" is already registered to '
                    f"{taken.__module__}.{taken.__qualname__}; pass exist_ok=True to replace it"
                )
            if constructor is not None and not callable(getattr(subclass, constructor, None)):
                raise TypeError(f"{subclass.__name__} has no constructor method {constructor!r}")
            registry[name] = (subclass, constructor)
            return subclass

        return decorate

    @classmethod
    def resolve(cls, name: str, path: str = "type") -> tuple[type, str | None]:
        """The class and constructor name registered as ``name`` (or a dotted ``pkg.mod.Class``)."""
        kind = cls.kind()
        registry = Registrable._registry[kind]
        if name in registry:
            return registry[name]
        if "." in name:
            module_name, _, class_name = name.rpartition(".")
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                raise ConfigurationError(
                    f'{path}: cannot import module "{module_name}" for {kind.kind_name} "{name}": {error}'
                ) from None
            subclass = getattr(module, class_name, None)
            if not isinstance(subclass, type):
                raise ConfigurationError(f'{path}: module "{module_name}" has no class "{class_name}"')
            if not issubclass(subclass, kind):
                raise ConfigurationError(
                    f'{path}: "{name}" is not a {kind.kind_name} (not a subclass of {kind.__name__})'
                )
            return subclass, None
        available = sorted(registry)
        suggestion = closest(name, available)
        hint = f'; did you mean "{suggestion}"?' if suggestion else ""
        raise ConfigurationError(
            f'{path}: unknown {kind.kind_name} "{name}"{hint} available: {", ".join(available) or "none registered"}'
        )

    @classmethod
    def by_name(cls, name: str) -> Callable[..., T]:
        """The class (or alternative constructor) registered as ``name``."""
        subclass, constructor = cls.resolve(name)
        return subclass if constructor is None else getattr(subclass, constructor)

    @classmethod
    def list_available(cls) -> list[str]:
        """Registered names of this kind, the default implementation first."""
        names = sorted(Registrable._registry[cls.kind()])
        default = cls.kind().default_implementation
        if default in names:
            names.remove(default)
            names.insert(0, default)
        return names
