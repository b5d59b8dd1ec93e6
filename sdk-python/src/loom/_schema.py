"""JSON Schema from type hints, and JSON values converted to (and from) those types.

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, ``list``/``Sequence``/
``set``/``frozenset``, ``tuple`` (fixed and ``tuple[T, ...]``), ``dict``/``Mapping`` with ``str``
keys, ``Optional``/``Union`` (also ``X | Y``), ``Literal``, ``Enum``, dataclasses, ``TypedDict``,
``Annotated`` (string metadata becomes the description), ``NewType``, and pydantic models (v1 and
v2, when pydantic is installed; detected by their methods, so pydantic is never imported here).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from collections import abc
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from ._errors import InvalidParamsError, SchemaError

try:  # typing.is_typeddict exists from 3.10
    _is_typeddict: Callable[[Any], bool] = typing.is_typeddict
except AttributeError:  # pragma: no cover

    def _is_typeddict(tp: Any) -> bool:
        return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


JsonSchema = Dict[str, Any]

_NONE_TYPE = type(None)
_UNION_TYPES: Tuple[Any, ...] = (typing.Union,) + ((types.UnionType,) if hasattr(types, "UnionType") else ())
_SEQUENCES = (list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_SETS = (set, frozenset, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def pointer_token(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _is_pydantic(tp: Any) -> bool:
    if not isinstance(tp, type):
        return False
    v2 = all(hasattr(tp, m) for m in ("model_json_schema", "model_validate", "model_dump"))
    v1 = all(hasattr(tp, m) for m in ("schema", "parse_obj", "__fields__")) and "pydantic" in sys.modules
    return v2 or v1


def _strip(tp: Any) -> Tuple[Any, Optional[str]]:
    """Removes Annotated (keeping a string description) and NewType wrappers."""
    description: Optional[str] = None
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            args = typing.get_args(tp)
            for meta in args[1:]:
                if isinstance(meta, str):
                    description = meta
            tp = args[0]
            continue
        supertype = getattr(tp, "__supertype__", None)
        if supertype is not None:  # NewType
            tp = supertype
            continue
        return tp, description


class SchemaBuilder:
    """Builds one root schema; pydantic ``$defs`` are hoisted to the root so their refs resolve."""

    def __init__(self) -> None:
        self.defs: Dict[str, Any] = {}
        self._stack: List[Any] = []

    def finish(self, schema: JsonSchema) -> JsonSchema:
        if self.defs:
            schema = dict(schema)
            schema["$defs"] = dict(self.defs)
        return schema

    def schema(self, tp: Any, path: str) -> JsonSchema:
        tp, description = _strip(tp)
        result = self._schema(tp, path)
        if description:
            result = dict(result)
            result["description"] = description
        return result

    def _schema(self, tp: Any, path: str) -> JsonSchema:
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is _NONE_TYPE:
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp in (bytes, bytearray, memoryview):
            raise SchemaError(
                f"{path}: bytes cannot travel in JSON; take a str (for example base64) instead.", path=path
            )
        if isinstance(tp, typing.TypeVar):
            raise SchemaError(
                f"{path}: the type variable {tp} has no schema; use a concrete type.", path=path
            )
        if isinstance(tp, (str, typing.ForwardRef)):
            raise SchemaError(
                f"{path}: the annotation {tp!r} could not be resolved; define the type before the function "
                "(at module level) so its hints can be evaluated.",
                path=path,
            )
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Literal:
            for value in args:
                if not isinstance(value, (str, int, bool)) and value is not None:
                    raise SchemaError(f"{path}: Literal value {value!r} is not a JSON scalar.", path=path)
            return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if origin in _UNION_TYPES:
            members = [self.schema(a, path) for a in args]
            return {"anyOf": members}
        if origin in _SEQUENCES or tp in (list,):
            item = self.schema(args[0], path + "/items") if args else {}
            return {"type": "array", "items": item}
        if origin in _SETS or tp in (set, frozenset):
            item = self.schema(args[0], path + "/items") if args else {}
            return {"type": "array", "items": item, "uniqueItems": True}
        if origin is tuple or tp is tuple:
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                item = self.schema(args[0], path + "/items") if args else {}
                return {"type": "array", "items": item}
            if args == ((),):
                return {"type": "array", "maxItems": 0}
            prefix = [self.schema(a, f"{path}/prefixItems/{i}") for i, a in enumerate(args)]
            return {
                "type": "array",
                "prefixItems": prefix,
                "items": False,
                "minItems": len(args),
                "maxItems": len(args),
            }
        if origin in _MAPPINGS or tp is dict:
            if args:
                key, _ = _strip(args[0])
                if key is not str and not (isinstance(key, type) and issubclass(key, str)):
                    raise SchemaError(
                        f"{path}: JSON object keys are strings; use dict[str, ...], not "
                        f"dict[{_describe(key)}, ...].",
                        path=path,
                    )
                return {
                    "type": "object",
                    "additionalProperties": self.schema(args[1], path + "/additionalProperties"),
                }
            return {"type": "object"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [m.value for m in tp]
            for value in values:
                if not isinstance(value, (str, int, float, bool)) and value is not None:
                    raise SchemaError(
                        f"{path}: enum {tp.__name__} has a non-JSON value {value!r}.", path=path
                    )
            return {"title": tp.__name__, "enum": values}
        if _is_pydantic(tp):
            return self._pydantic(tp, path)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._object(tp, path, *_dataclass_fields(tp, path))
        if _is_typeddict(tp):
            hints = _hints(tp, path)
            required = set(getattr(tp, "__required_keys__", hints.keys()))
            return self._object(tp, path, hints, required)
        raise SchemaError(
            f"{path}: type {_describe(tp)} has no JSON Schema. Use str, int, float, bool, None, list, tuple, "
            "dict[str, ...], Optional/Union, Literal, Enum, a dataclass, a TypedDict or a pydantic model.",
            path=path,
        )

    def _object(self, tp: type, path: str, hints: Mapping[str, Any], required: Any) -> JsonSchema:
        if tp in self._stack:
            raise SchemaError(
                f"{path}: {tp.__name__} refers to itself; recursive types are not supported.", path=path
            )
        self._stack.append(tp)
        try:
            props = {
                name: self.schema(h, f"{path}/properties/{pointer_token(name)}") for name, h in hints.items()
            }
        finally:
            self._stack.pop()
        schema: JsonSchema = {"type": "object", "title": tp.__name__, "properties": props}
        req = [n for n in hints if n in required]
        if req:
            schema["required"] = req
        schema["additionalProperties"] = False
        doc = tp.__doc__
        if doc and not doc.startswith(tp.__name__ + "("):  # dataclasses invent a signature doc
            schema["description"] = doc.strip().split("\n\n")[0]
        return schema

    def _pydantic(self, tp: Any, path: str) -> JsonSchema:
        try:
            raw = (
                tp.model_json_schema()
                if hasattr(tp, "model_json_schema")
                else tp.schema(ref_template="#/$defs/{model}")
            )
        except Exception as exc:  # noqa: BLE001 - surfaced as a schema error
            raise SchemaError(
                f"{path}: pydantic could not build the schema of {tp.__name__}: {exc}", path=path
            ) from exc
        schema = dict(raw)
        for key in ("$defs", "definitions"):
            nested = schema.pop(key, None)
            if isinstance(nested, dict):
                self.defs.update(nested)
        return schema


def _hints(tp: Any, path: str) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except Exception as exc:  # noqa: BLE001
        raise SchemaError(
            f"{path}: the type hints of {_describe(tp)} cannot be resolved ({exc}); define the types they "
            "name before using them.",
            path=path,
        ) from exc


def _dataclass_fields(tp: type, path: str) -> Tuple[Dict[str, Any], Set[str]]:
    hints = _hints(tp, path)
    fields = [f for f in dataclasses.fields(tp) if f.init]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return {f.name: hints.get(f.name, Any) for f in fields}, required


# ---------------------------------------------------------------------------------------------
# JSON value -> typed value (validation with JSON pointers)
# ---------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fail(path: str, expected: str, value: Any) -> InvalidParamsError:
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidParamsError(
        f"{path or '(root)'}: expected {expected}, got {_json_type(value)} {shown}.", path=path
    )


def convert(value: Any, tp: Any, path: str = "") -> Any:
    """Converts a parsed JSON value to ``tp``; raises InvalidParamsError naming the path."""
    tp, _ = _strip(tp)
    if tp is Any or tp is object:
        return value
    if tp is None or tp is _NONE_TYPE:
        if value is not None:
            raise _fail(path, "null", value)
        return None
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, "a string", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, "a boolean", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, "an integer", value)
        if isinstance(value, float):
            if not value.is_integer():
                raise _fail(path, "an integer", value)
            return int(value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, "a number", value)
        return float(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return value
        raise _fail(path, "one of " + ", ".join(json.dumps(a) for a in args), value)
    if origin in _UNION_TYPES:
        if value is None and _NONE_TYPE in args:
            return None
        first: Optional[InvalidParamsError] = None
        for member in args:
            if member is _NONE_TYPE:
                continue
            try:
                return convert(value, member, path)
            except InvalidParamsError as exc:
                first = first or exc
        if len([a for a in args if a is not _NONE_TYPE]) == 1 and first is not None:
            raise first
        raise _fail(path, "one of " + ", ".join(_describe(a) for a in args), value)
    if origin in _SEQUENCES or tp is list:
        if not isinstance(value, list):
            raise _fail(path, "an array", value)
        if not args:
            return list(value)
        return [convert(v, args[0], f"{path}/{i}") for i, v in enumerate(value)]
    if origin in _SETS or tp in (set, frozenset):
        if not isinstance(value, list):
            raise _fail(path, "an array", value)
        items = [convert(v, args[0], f"{path}/{i}") for i, v in enumerate(value)] if args else list(value)
        return frozenset(items) if (origin or tp) is frozenset else set(items)
    if origin is tuple or tp is tuple:
        if not isinstance(value, list):
            raise _fail(path, "an array", value)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return (
                tuple(convert(v, args[0], f"{path}/{i}") for i, v in enumerate(value))
                if args
                else tuple(value)
            )
        if args == ((),):
            args = ()
        if len(value) != len(args):
            raise InvalidParamsError(
                f"{path or '(root)'}: expected an array of {len(args)} items, got {len(value)}.", path=path
            )
        return tuple(convert(v, a, f"{path}/{i}") for i, (v, a) in enumerate(zip(value, args)))
    if origin in _MAPPINGS or tp is dict:
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        if not args:
            return dict(value)
        return {k: convert(v, args[1], f"{path}/{pointer_token(k)}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise _fail(path, "one of " + ", ".join(json.dumps(m.value) for m in tp), value) from None
    if _is_pydantic(tp):
        return _convert_pydantic(value, tp, path)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints, required = _dataclass_fields(tp, path)
        kwargs = _convert_object(value, path, hints, required)
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidParamsError(f"{path or '(root)'}: {exc}", path=path) from exc
    if _is_typeddict(tp):
        hints = _hints(tp, path)
        required = set(getattr(tp, "__required_keys__", hints.keys()))
        return _convert_object(value, path, hints, required)
    return value


def _convert_object(value: Any, path: str, hints: Mapping[str, Any], required: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    for key in value:
        if key not in hints:
            raise InvalidParamsError(
                f"{path}/{pointer_token(key)}: unexpected property {key!r}; allowed: "
                f"{', '.join(hints) or 'none'}.",
                path=f"{path}/{pointer_token(key)}",
            )
    out: Dict[str, Any] = {}
    for name, hint in hints.items():
        sub = f"{path}/{pointer_token(name)}"
        if name in value:
            out[name] = convert(value[name], hint, sub)
        elif name in required:
            raise InvalidParamsError(f"{sub}: missing required property {name!r}.", path=sub)
    return out


def _convert_pydantic(value: Any, tp: Any, path: str) -> Any:
    try:
        if hasattr(tp, "model_validate"):
            return tp.model_validate(value)
        return tp.parse_obj(value)
    except Exception as exc:  # pydantic.ValidationError, without importing pydantic
        errors = getattr(exc, "errors", None)
        sub = path
        message = str(exc)
        if callable(errors):
            try:
                first = errors()[0]
                sub = path + "".join("/" + pointer_token(p) for p in first.get("loc", ()))
                message = first.get("msg", message)
            except Exception:  # noqa: BLE001
                pass
        raise InvalidParamsError(f"{sub or '(root)'}: {message}", path=sub) from exc


# ---------------------------------------------------------------------------------------------
# typed value -> JSON
# ---------------------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    legacy = getattr(value, "dict", None)
    if callable(legacy) and hasattr(value, "__fields__"):
        return legacy()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("bytes are not JSON; return a str (for example base64)")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json_bytes(value: Any) -> bytes:
    """Serializes plain values, dataclasses, enums, sets and pydantic models as compact JSON."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
