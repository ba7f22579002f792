"""The registry and construction from typed signatures, including every error message."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from declutr.core import ConfigurationError, Lazy, Registrable, build, validate
from declutr.core.construct import AtLeast, type_name


class Shape(Registrable):
    default_implementation = "square"


@Shape.register("square")
@Shape.register("box")  # one class under several names
class Square(Shape):
    def __init__(self, side: float = 1.0):
        self.side = side


@Shape.register("circle", constructor="from_diameter")
class Circle(Shape):
    def __init__(self, radius: float):
        self.radius = radius

    @classmethod
    def from_diameter(cls, diameter: float) -> Circle:
        return cls(diameter / 2)


@Shape.register("group")
class Group(Shape):
    def __init__(self, members: list[Shape], named: dict[str, Shape] | None = None, pair: tuple[int, str] = (0, "")):
        self.members, self.named, self.pair = members, named or {}, pair


class Tool(Registrable):
    runtime_args = ("handle",)


@Tool.register("hammer")
class Hammer(Tool):
    def __init__(self, handle, weight: float, material: Literal["steel", "wood"] = "steel"):
        self.handle, self.weight, self.material = handle, weight, material


@Tool.register("brush")
class Brush(Tool):
    def __init__(self, handle, canvas, width: int = 1):
        self.handle, self.canvas, self.width = handle, canvas, width


class Easel:
    def __init__(self, canvas):
        self.canvas = canvas


@Shape.register("drawing")
class Drawing(Shape):
    def __init__(self, tool: Lazy[Tool], canvas=None, scale: int | str = 1, note: str | None = None):
        self.tool, self.canvas, self.scale, self.note = tool, canvas, scale, note


def problems(config, annotation=Shape, path="shape"):
    with pytest.raises(ConfigurationError) as info:
        build(annotation, config, path)
    return info.value.problems


def test_register_lookup_and_aliases():
    assert Shape.by_name("square") is Square and Shape.by_name("box") is Square
    assert Shape.list_available()[0] == "square"
    assert set(Shape.list_available()) >= {"square", "box", "circle", "group", "drawing"}
    assert Shape.by_name("circle") == Circle.from_diameter


def test_reregistering_requires_exist_ok():
    with pytest.raises(ValueError, match='shape name "square" is already registered'):
        Shape.register("square")(type("Other", (Shape,), {}))
    other = Shape.register("square", exist_ok=True)(type("Other", (Shape,), {}))
    assert Shape.by_name("square") is other
    Shape.register("square", exist_ok=True)(Square)


def test_build_nested_collections_defaults_and_promotion():
    group = build(
        Shape,
        {
            "type": "group",
            "members": [{"type": "circle", "diameter": 4}, {}, "box"],
            "named": {"a": {"side": 3}},
            "pair": [2, "x"],
        },
    )
    first, second, third = group.members
    assert isinstance(first, Circle) and first.radius == 2.0
    assert isinstance(second, Square) and second.side == 1.0  # default implementation
    assert isinstance(third, Square)  # a bare name is shorthand for {"type": name}
    assert group.named["a"].side == 3.0 and isinstance(group.named["a"].side, float)  # int promoted
    assert group.pair == (2, "x")


def test_lazy_gets_runtime_args_and_extras_are_injected():
    drawing = build(
        Shape, {"type": "drawing", "tool": {"type": "hammer", "weight": 2}, "scale": "big"}, extras={"canvas": "CANVAS"}
    )
    assert drawing.canvas == "CANVAS" and drawing.scale == "big" and drawing.note is None
    hammer = drawing.tool.construct(handle="HANDLE")
    assert (hammer.handle, hammer.weight, hammer.material) == ("HANDLE", 2.0, "steel")


def test_deferred_values_are_validated_as_given_and_reach_only_lazy_components():
    drawing = build(Shape, {"type": "drawing", "tool": {"type": "brush"}}, deferred=("canvas",))
    assert drawing.canvas is None  # built now: its default, never a placeholder
    brush = drawing.tool.construct(handle="HANDLE", canvas="CANVAS")
    assert (brush.handle, brush.canvas, brush.width) == ("HANDLE", "CANVAS", 1)
    with pytest.raises(ConfigurationError) as info:
        drawing.tool.construct(handle="HANDLE")
    assert info.value.problems == ['tool: missing required key "canvas" (any)']
    with pytest.raises(ConfigurationError) as info:
        build(Easel, {}, "easel", deferred=("canvas",))
    assert info.value.problems == ['easel: missing required key "canvas" (any)']


def test_dotted_type_path():
    shape = build(Shape, {"type": f"{__name__}.Square", "side": 5})
    assert isinstance(shape, Square) and shape.side == 5


def test_error_messages_name_the_key_path():
    assert problems({"type": "circle", "diameter": "abc"}) == ['shape.diameter: expected float, got "abc"']
    assert problems({"type": "sqaure"})[0].startswith(
        'shape.type: unknown shape "sqaure"; did you mean "square"? available: box, circle'
    )
    assert problems({"type": "square", "sid": 2}) == ['shape: unexpected key "sid" (did you mean "side"?)']
    assert problems({"type": "circle"}) == ['shape: missing required key "diameter" (float)']
    assert problems({"type": "drawing", "tool": {"type": "hammer", "weight": 1, "material": "gold"}}) == [
        'shape.tool.material: expected one of "steel", "wood", got "gold"'
    ]
    assert problems({"type": "group", "members": [{"type": "circle", "diameter": True}]}) == [
        "shape.members[0].diameter: expected float, got true"
    ]
    assert problems({"type": "group", "members": [], "pair": [1]}) == ["shape.pair: expected a list of 2 items, got 1"]
    assert problems({"type": "nonexistent.module.Thing"})[0].startswith(
        'shape.type: cannot import module "nonexistent.module"'
    )


def test_every_problem_is_reported_at_once():
    found = problems({"type": "group", "members": [{"type": "circle", "diameter": "x"}, {"type": "maen"}], "extra": 1})
    assert len(found) == 3
    assert any(p.startswith("shape.members[0].diameter") for p in found)
    assert any(p.startswith("shape.members[1].type") for p in found)
    assert any('unexpected key "extra"' in p for p in found)


def test_validate_builds_nothing():
    built = []

    class Probe(Registrable):
        pass

    @Probe.register("probe")
    class Recording(Probe):
        def __init__(self, size: int):
            built.append(size)

    assert validate(Probe, {"type": "probe", "size": 3}) == []
    assert built == []
    assert validate(Probe, {"type": "probe", "size": "3"}) == ['size: expected int, got "3"']


def test_value_errors_from_constructors_carry_the_path():
    class Checked(Registrable):
        pass

    @Checked.register("positive")
    class Positive(Checked):
        def __init__(self, value: float):
            if value <= 0:
                raise ValueError(f"value must be positive, got {value}")

    with pytest.raises(ConfigurationError, match=r"^model.thing: value must be positive, got -1.0$"):
        build(Checked, {"type": "positive", "value": -1}, "model.thing")


class Sized:
    runtime_args = ("data",)

    def __init__(self, data, batch_size: Annotated[int, AtLeast(1)] = 4):
        self.batch_size = batch_size


class HasLazy:
    def __init__(self, loader: Lazy[Sized]):
        self.loader = loader


def test_a_bound_is_checked_in_a_dry_run_even_for_a_lazy_component():
    assert validate(HasLazy, {"loader": {"batch_size": 0}}) == ["loader.batch_size: must be at least 1, got 0"]
    assert validate(HasLazy, {"loader": {"batch_size": "x"}}) == ['loader.batch_size: expected int, got "x"']
    assert validate(HasLazy, {"loader": {"batch_size": 2}}) == []
    assert type_name(Annotated[int, AtLeast(1)]) == "int (>= 1)"
