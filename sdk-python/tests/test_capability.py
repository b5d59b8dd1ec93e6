"""@capability without a bridge: schemas from hints, decorator-time errors, call-time
conversion (INVALID_PARAMS with a JSON pointer, TOOL_ERROR), and the pydantic path."""

from __future__ import annotations

import asyncio
import functools
import enum
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, TypedDict, Union

import pytest

import loom
from loom import CallInfo, capability, definition_of


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Item:
    name: str
    qty: int = 1


@dataclass
class Order:
    """An order of items."""

    id: str
    items: List[Item]
    color: Color = Color.RED
    note: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)


class Point(TypedDict):
    x: float
    y: float


@capability
def area(width: float, height: float = 1.0) -> float:
    """Area of a rectangle.

    Args:
        width: the width
    """
    return width * height


@capability(
    "orders.total",
    version="2.1.0",
    tags=["orders", "math"],
    cost_hint=0.5,
    latency_hint_ms=20,
    max_concurrency=4,
)
async def total(order: Order) -> Dict[str, int]:
    return {"count": sum(i.qty for i in order.items)}


@capability
async def shapes(
    kind: Literal["circle", "square"],
    sizes: List[int],
    where: Point,
    mode: Union[int, str] = 0,
    pair: Tuple[int, str] = (0, ""),
    color: Optional[Color] = None,
    ctx: Optional[loom.Context] = None,
    info: Optional[CallInfo] = None,
) -> List[str]:
    return [kind] * len(sizes)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def call(fn: Any, payload: Any) -> Any:
    bound = definition_of(fn).bind()  # type: ignore[union-attr]
    info = CallInfo("c1", "x", "1.0.0", "caller")
    return json.loads(run(bound.invoke(json.dumps(payload).encode(), None, info)))


def test_decorator_returns_the_function_with_its_definition() -> None:
    assert area(2, 3) == 6  # still the plain function
    d = definition_of(area)
    assert d is not None and d.name == "area" and d.version == "1.0.0"
    assert d.description == "Area of a rectangle."
    assert d.input_schema == {
        "type": "object",
        "properties": {"width": {"type": "number"}, "height": {"type": "number"}},
        "additionalProperties": False,
        "required": ["width"],
    }
    assert d.output_schema == {"type": "number"}


def test_arguments_and_hints() -> None:
    d = definition_of(total)
    assert d is not None
    assert (d.name, d.version, d.tags, d.cost_hint, d.latency_hint_ms, d.max_concurrency) == (
        "orders.total",
        "2.1.0",
        ("orders", "math"),
        0.5,
        20,
        4,
    )
    schema = d.input_schema  # a single dataclass parameter is the whole input
    assert schema["type"] == "object" and schema["required"] == ["id", "items"]
    assert schema["properties"]["items"]["items"]["properties"]["qty"] == {"type": "integer"}
    assert schema["properties"]["color"] == {"title": "Color", "enum": ["red", "blue"]}
    assert schema["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["tags"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert schema["description"] == "An order of items."
    desc = d.descriptor()
    assert (
        desc.name == "orders.total"
        and json.loads(desc.input_schema_json) == schema
        and list(desc.tags) == ["orders", "math"]
    )


def test_literal_typeddict_union_tuple_and_context_params() -> None:
    d = definition_of(shapes)
    assert d is not None and d.context_param == "ctx" and d.info_param == "info"
    props = d.input_schema["properties"]
    assert set(props) == {"kind", "sizes", "where", "mode", "pair", "color"}
    assert props["kind"] == {"enum": ["circle", "square"]}
    assert props["where"]["required"] == ["x", "y"]
    assert props["mode"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert d.input_schema["required"] == ["kind", "sizes", "where"]
    assert call(shapes, {"kind": "circle", "sizes": [1, 2], "where": {"x": 1, "y": 2}}) == [
        "circle",
        "circle",
    ]


def test_call_time_conversion_and_paths() -> None:
    assert call(total, {"id": "o1", "items": [{"name": "a", "qty": 2}, {"name": "b"}]}) == {"count": 3}
    cases = [
        ({"id": "o1", "items": [{"name": "a"}, {"name": "b", "qty": "x"}]}, "/items/1/qty"),
        ({"id": "o1", "items": [{"qty": 1}]}, "/items/0/name"),
        ({"id": "o1", "items": [], "color": "green"}, "/color"),
        ({"id": "o1", "items": [], "extra": 1}, "/extra"),
        ({"items": []}, "/id"),
    ]
    for payload, path in cases:
        with pytest.raises(loom.InvalidParamsError) as info:
            call(total, payload)
        assert info.value.path == path, (payload, info.value)
    with pytest.raises(loom.InvalidParamsError) as info2:
        call(shapes, {"kind": "hexagon", "sizes": [], "where": {"x": 0, "y": 0}})
    assert info2.value.path == "/kind" and "circle" in info2.value.message


def test_sync_function_exception_is_a_tool_error() -> None:
    @capability(run_in_thread=False)
    def explode(x: int) -> int:
        raise RuntimeError(f"cannot handle {x}")

    with pytest.raises(loom.ToolError) as info:
        call(explode, {"x": 3})
    assert info.value.message == "cannot handle 3" and info.value.code is loom.ErrorCode.TOOL_ERROR

    @capability
    def threaded(x: int) -> int:
        return x * 2

    assert call(threaded, {"x": 21}) == 42


def test_methods_are_bound_through_their_agent() -> None:
    class Calc(loom.Agent):
        name = "calc"
        factor = 3

        @capability("calc.mul")
        async def mul(self, x: int) -> int:
            return x * self.factor

        @capability
        def plain(self, text: str) -> str:
            return text.upper()

    found = loom._capability.collect(Calc())
    assert set(found) == {"calc.mul", "plain"}
    assert "self" not in found["calc.mul"].definition.input_schema["properties"]
    assert (
        json.loads(run(found["calc.mul"].invoke(b'{"x": 5}', None, CallInfo("c", "calc.mul", "1.0.0", "me"))))
        == 15
    )


@pytest.mark.parametrize(
    "make, fragment, path",
    [
        (lambda: capability(functools.partial(area, 1.0)), "applies to functions", ""),
        (lambda: capability("bad name!")(lambda: None), "name", "/name"),
        (lambda: capability("ok", version="one")(area), "semver", "/version"),
        (lambda: capability("ok", tags="x")(area), "tags", "/tags"),
        (lambda: capability("ok", cost_hint=-1)(area), "cost_hint", "/cost_hint"),
    ],
)
def test_decorator_argument_errors(make: Any, fragment: str, path: str) -> None:
    with pytest.raises(loom.SchemaError) as info:
        make()
    assert fragment in info.value.message and info.value.path == path


def test_decorator_type_errors_say_what_is_wrong() -> None:
    def unannotated(x):  # type: ignore[no-untyped-def]
        return x

    def takes_bytes(data: bytes) -> None:
        ...

    def int_keys(m: Dict[int, str]) -> None:
        ...

    def varargs(*items: int) -> None:
        ...

    class Opaque:
        pass

    def opaque(o: Opaque) -> None:
        ...

    def bad_return() -> bytes:
        return b""

    for fn, words, path in [
        (unannotated, "no type annotation", "/properties/x"),
        (takes_bytes, "bytes cannot travel in JSON", "/properties/data"),
        (int_keys, "dict[str, ...]", "/properties/m"),
        (varargs, "*args", "/properties/items"),
        (opaque, "has no JSON Schema", "/properties/o"),
        (bad_return, "return type", "/output"),
    ]:
        with pytest.raises(loom.SchemaError) as info:
            capability(fn)
        assert words in info.value.message, info.value.message
        assert info.value.path == path, (fn.__name__, info.value.path)
        assert fn.__name__ in info.value.message or "return" in info.value.message


def test_recursive_dataclass_is_refused() -> None:
    @dataclass
    class Node:
        value: int
        children: List["Node"]

    with pytest.raises(loom.SchemaError):
        capability(lambda_free_node_fn(Node))


def lambda_free_node_fn(node_type: Any) -> Any:
    def fn(node: Any) -> None:
        ...

    fn.__annotations__ = {"node": node_type, "return": None}
    return fn


class FakeModel:
    """Duck-typed like a pydantic v2 model (pydantic is not installed here)."""

    def __init__(self, city: str) -> None:
        self.city = city

    @classmethod
    def model_json_schema(cls) -> Dict[str, Any]:
        return {
            "type": "object",
            "properties": {"city": {"$ref": "#/$defs/City"}},
            "required": ["city"],
            "$defs": {"City": {"type": "string"}},
        }

    @classmethod
    def model_validate(cls, value: Any) -> "FakeModel":
        if not isinstance(value, dict) or not isinstance(value.get("city"), str):
            raise ValueErrorWithErrors([{"loc": ("city",), "msg": "Field required"}])
        return cls(value["city"])

    def model_dump(self, mode: str = "python") -> Dict[str, Any]:
        return {"city": self.city}


class ValueErrorWithErrors(ValueError):
    def __init__(self, errors: List[Mapping[str, Any]]) -> None:
        super().__init__("validation error")
        self._errors = errors

    def errors(self) -> List[Mapping[str, Any]]:
        return self._errors


def test_pydantic_style_models_without_pydantic() -> None:
    @capability
    async def weather(query: FakeModel) -> FakeModel:
        return FakeModel(query.city.upper())

    d = definition_of(weather)
    assert d is not None and d.whole_input is not None
    assert d.input_schema["$defs"] == {"City": {"type": "string"}}  # hoisted so refs resolve
    assert d.input_schema["properties"]["city"] == {"$ref": "#/$defs/City"}
    assert call(weather, {"city": "oslo"}) == {"city": "OSLO"}
    with pytest.raises(loom.InvalidParamsError) as info:
        call(weather, {"town": "x"})
    assert info.value.path == "/city"


def test_real_pydantic_when_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Query(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        city: str
        days: int = 1

    @capability
    async def forecast(q: Query) -> Query:
        return q

    d = definition_of(forecast)
    assert d is not None and d.input_schema["properties"]["days"]["type"] == "integer"
    assert call(forecast, {"city": "x", "days": 2}) == {"city": "x", "days": 2}
    with pytest.raises(loom.InvalidParamsError) as info:
        call(forecast, {"city": "x", "days": "many"})
    assert info.value.path == "/days"
