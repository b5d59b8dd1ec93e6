"""``@capability``: a function (or an Agent method) described by JSON Schemas from its hints."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._errors import InvalidParamsError, LoomError, SchemaError, ToolError
from ._proto import bridge_pb2 as pb
from ._schema import (
    _UNION_TYPES,
    SchemaBuilder,
    _convert_object,
    _is_pydantic,
    _is_typeddict,
    _strip,
    convert,
    pointer_token,
    to_json_bytes,
)

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__loom_capability__"
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?)\s*:\s*$", re.M
)


@dataclass(frozen=True)
class CallInfo:
    """What a capability knows about the call it serves (declare a parameter of this type)."""

    call_id: str
    capability: str
    version: str
    caller: str
    thread_id: str = ""
    deadline_unix_ms: int = 0
    traceparent: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Param:
    name: str
    hint: Any
    required: bool


@dataclass(frozen=True)
class CapabilityDefinition:
    """A capability as registered: name, version, description, JSON Schemas and hints. Attached to
    the decorated function as ``fn.__loom_capability__`` (see :func:`definition_of`)."""

    name: str
    version: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    tags: Tuple[str, ...]
    cost_hint: float
    latency_hint_ms: int
    max_concurrency: int
    fn: Callable[..., Any] = field(repr=False, compare=False)
    params: Tuple[_Param, ...] = field(repr=False, compare=False, default=())
    whole_input: Optional[_Param] = field(repr=False, compare=False, default=None)
    context_param: Optional[str] = field(repr=False, compare=False, default=None)
    info_param: Optional[str] = field(repr=False, compare=False, default=None)
    is_method: bool = field(repr=False, compare=False, default=False)
    is_async: bool = field(repr=False, compare=False, default=False)
    run_in_thread: bool = field(repr=False, compare=False, default=True)

    def descriptor(self) -> pb.CapabilityDescriptor:
        return pb.CapabilityDescriptor(
            name=self.name,
            version=self.version,
            description=self.description,
            input_schema_json=json.dumps(self.input_schema, separators=(",", ":")),
            output_schema_json=json.dumps(self.output_schema, separators=(",", ":")),
            tags=list(self.tags),
            cost_hint=self.cost_hint,
            latency_hint_ms=self.latency_hint_ms,
            max_concurrency=self.max_concurrency,
        )

    def bind(self, instance: Any = None) -> "BoundCapability":
        """The callable to serve: for a method, bound to ``instance``."""
        if self.is_method:
            if instance is None:
                raise SchemaError(
                    f"Capability {self.name!r} is a method ({self.fn.__qualname__}); serve it through its "
                    f"Agent.",
                    path="/capabilities",
                )
            return BoundCapability(self, functools.partial(self.fn, instance))
        return BoundCapability(self, self.fn)


class BoundCapability:
    """A definition plus the callable that serves it."""

    __slots__ = ("definition", "_fn", "_hints", "_required")

    def __init__(self, definition: CapabilityDefinition, fn: Callable[..., Any]) -> None:
        self.definition = definition
        self._fn = fn
        self._hints = {p.name: p.hint for p in definition.params}
        self._required = {p.name for p in definition.params if p.required}

    @property
    def name(self) -> str:
        return self.definition.name

    async def invoke(self, input_json: bytes, context: Any, call: Any) -> bytes:
        """Runs the function on a JSON input; returns the JSON output. Bad input raises
        InvalidParamsError with a JSON pointer; a failing function raises ToolError (a LoomError it
        raises keeps its code)."""
        d = self.definition
        try:
            raw = json.loads(input_json) if input_json else None
        except ValueError as exc:
            raise InvalidParamsError(f"The input of {d.name!r} is not JSON: {exc}", path="") from None
        if d.whole_input is not None:
            kwargs = {d.whole_input.name: convert(raw, d.whole_input.hint, "")}
        else:
            kwargs = _convert_object({} if raw is None else raw, "", self._hints, self._required)
        if d.context_param:
            kwargs[d.context_param] = context
        if d.info_param:
            kwargs[d.info_param] = (
                call
                if isinstance(call, CallInfo)
                else CallInfo(
                    call_id=call.call_id,
                    capability=call.capability,
                    version=call.version,
                    caller=call.caller,
                    thread_id=call.thread_id,
                    deadline_unix_ms=call.deadline_unix_ms,
                    traceparent=call.traceparent,
                    headers=dict(call.headers),
                )
            )
        try:
            if d.is_async:
                result = await self._fn(**kwargs)
            elif d.run_in_thread:
                result = await asyncio.to_thread(self._fn, **kwargs)
            else:
                result = self._fn(**kwargs)
        except (LoomError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the capability's own failure
            message = str(exc) or type(exc).__name__
            raise ToolError(message, details={"exception": type(exc).__name__}) from exc
        try:
            return to_json_bytes(result)
        except (TypeError, ValueError) as exc:
            raise ToolError(f"The output of {d.name!r} is not JSON serializable: {exc}") from exc


def definition_of(fn: Any) -> Optional[CapabilityDefinition]:
    """The definition attached by ``@capability``, or None."""
    target = getattr(fn, "__func__", fn)
    value = getattr(target, ATTRIBUTE, None)
    return value if isinstance(value, CapabilityDefinition) else None


@overload
def capability(fn: F, /) -> F:
    ...


@overload
def capability(
    name: Optional[str] = None,
    /,
    *,
    version: str = "1.0.0",
    description: Optional[str] = None,
    tags: Sequence[str] = (),
    cost_hint: float = 0.0,
    latency_hint_ms: int = 0,
    max_concurrency: int = 0,
    run_in_thread: bool = True,
) -> Callable[[F], F]:
    ...


def capability(
    fn_or_name: Union[Callable[..., Any], str, None] = None,
    /,
    *,
    version: str = "1.0.0",
    description: Optional[str] = None,
    tags: Sequence[str] = (),
    cost_hint: float = 0.0,
    latency_hint_ms: int = 0,
    max_concurrency: int = 0,
    run_in_thread: bool = True,
) -> Any:
    """Declares a capability. Usable bare (``@capability``) or with arguments
    (``@capability("math.add", version="1.2.0", tags=["math"])``).

    The input schema comes from the parameters: each becomes a property of the input object
    (required unless it has a default); a function whose only input parameter is a dataclass,
    TypedDict or pydantic model takes that object as the whole input. A parameter annotated
    ``loom.Context`` receives the agent's context and one annotated ``loom.CallInfo`` the call's
    metadata; ``self`` is skipped on methods. The output schema comes from the return annotation.
    The name defaults to the function's name, the description to its docstring. Sync functions
    run in a worker thread (``run_in_thread=False`` runs them on the event loop).

    Returns the function unchanged, with its :class:`CapabilityDefinition` attached. Raises
    :class:`SchemaError` at once when something cannot be described."""

    def decorate(fn: F, localns: Optional[Mapping[str, Any]] = None) -> F:
        if localns is None:
            frame = sys._getframe(1)
            localns = frame.f_locals if frame is not None else None
        definition = _define(
            fn,
            localns=localns,
            name=fn_or_name if isinstance(fn_or_name, str) else None,
            version=version,
            description=description,
            tags=tags,
            cost_hint=cost_hint,
            latency_hint_ms=latency_hint_ms,
            max_concurrency=max_concurrency,
            run_in_thread=run_in_thread,
        )
        target = getattr(fn, "__func__", fn)
        setattr(target, ATTRIBUTE, definition)
        return fn

    if callable(fn_or_name) and not isinstance(fn_or_name, str):
        frame = sys._getframe(1)
        return decorate(fn_or_name, frame.f_locals if frame is not None else None)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        raise SchemaError(f"@capability takes a function or a name; got {fn_or_name!r}.", path="/name")
    return decorate


def _docstring(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    match = _SECTION.search(doc)
    if match:
        doc = doc[: match.start()]
    return doc.strip()


_NONE_TYPE = type(None)


def _optional_inner(hint: Any) -> Any:
    """``Optional[X]`` -> X (for context and call-info parameters that default to None)."""
    hint, _ = _strip(hint)
    args = [a for a in typing.get_args(hint) if a is not _NONE_TYPE]
    if typing.get_origin(hint) in _UNION_TYPES and len(args) == 1:
        return args[0]
    return hint


def _is_context_type(hint: Any) -> bool:
    from ._context import Context  # late: _context imports nothing from here

    hint = _optional_inner(hint)
    return isinstance(hint, type) and issubclass(hint, Context)


def _bare(exc: SchemaError) -> str:
    prefix = (exc.path or "") + ": "
    return exc.message[len(prefix) :] if exc.path and exc.message.startswith(prefix) else exc.message


def _define(
    fn: Callable[..., Any],
    *,
    localns: Optional[Mapping[str, Any]] = None,
    name: Optional[str],
    version: str,
    description: Optional[str],
    tags: Sequence[str],
    cost_hint: float,
    latency_hint_ms: int,
    max_concurrency: int,
    run_in_thread: bool,
) -> CapabilityDefinition:
    target = getattr(fn, "__func__", fn)
    if not inspect.isfunction(target):
        raise SchemaError(f"@capability applies to functions and methods; got {fn!r}.", path="")
    qual = target.__qualname__
    cap_name = name if name is not None else target.__name__
    where = f"@capability on {qual}"
    if not _NAME.match(cap_name):
        raise SchemaError(
            f"{where}: the name {cap_name!r} is invalid; use 1-128 characters from A-Z a-z 0-9 _ . : -.",
            path="/name",
        )
    if not _SEMVER.match(version):
        raise SchemaError(f"{where}: version {version!r} is not semver (MAJOR.MINOR.PATCH).", path="/version")
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise SchemaError(f"{where}: tags must be a list of strings; got {tags!r}.", path="/tags")
    if not isinstance(cost_hint, (int, float)) or cost_hint < 0:
        raise SchemaError(
            f"{where}: cost_hint must be a non-negative number; got {cost_hint!r}.", path="/cost_hint"
        )
    for label, value in (("latency_hint_ms", latency_hint_ms), ("max_concurrency", max_concurrency)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SchemaError(
                f"{where}: {label} must be a non-negative integer; got {value!r}.", path="/" + label
            )
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        raise SchemaError(f"{where}: generators cannot be capabilities; return a value (a list).", path="")

    try:
        # Locals of the defining scope too: types defined in a function body, with postponed
        # annotations (from __future__ import annotations), resolve as well.
        hints = typing.get_type_hints(target, localns=dict(localns) if localns else None, include_extras=True)
    except Exception as exc:  # noqa: BLE001
        raise SchemaError(
            f"{where}: the type hints cannot be resolved ({exc}); define the types they name before the "
            f"function.",
            path="",
        ) from exc

    signature = inspect.signature(target)
    params = list(signature.parameters.values())
    is_method = bool(params) and params[0].name in ("self", "cls") and params[0].name not in hints
    if is_method:
        params = params[1:]

    inputs: List[_Param] = []
    context_param: Optional[str] = None
    info_param: Optional[str] = None
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise SchemaError(
                f"{where}: parameter {p.name!r} is *args/**kwargs; declare each input as a named parameter.",
                path="/properties/" + pointer_token(p.name),
            )
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise SchemaError(
                f"{where}: parameter {p.name!r} is positional-only; inputs are passed by name.",
                path="/properties/" + pointer_token(p.name),
            )
        hint = hints.get(p.name, inspect.Parameter.empty)
        if hint is inspect.Parameter.empty:
            if p.name in ("ctx", "context"):
                context_param = p.name
                continue
            raise SchemaError(
                f"{where}: parameter {p.name!r} has no type annotation; annotate it (typing.Any accepts "
                f"anything).",
                path="/properties/" + pointer_token(p.name),
            )
        if _is_context_type(hint):
            context_param = p.name
            continue
        if _optional_inner(hint) is CallInfo:
            info_param = p.name
            continue
        inputs.append(_Param(p.name, hint, p.default is inspect.Parameter.empty))

    builder = SchemaBuilder()
    whole: Optional[_Param] = None
    if len(inputs) == 1 and _is_object_type(inputs[0].hint):
        whole = inputs[0]
        try:
            input_schema = builder.schema(whole.hint, "")
        except SchemaError as exc:
            raise SchemaError(f"{where}: parameter {whole.name!r}: {_bare(exc)}", path=exc.path) from None
    else:
        props: Dict[str, Any] = {}
        for param in inputs:
            sub = "/properties/" + pointer_token(param.name)
            try:
                props[param.name] = builder.schema(param.hint, sub)
            except SchemaError as exc:
                raise SchemaError(f"{where}: parameter {param.name!r}: {_bare(exc)}", path=exc.path) from None
        input_schema = {"type": "object", "properties": props, "additionalProperties": False}
        required = [param.name for param in inputs if param.required]
        if required:
            input_schema["required"] = required
    input_schema = builder.finish(input_schema)

    out_builder = SchemaBuilder()
    if "return" in hints:
        try:
            output_schema = out_builder.finish(out_builder.schema(hints["return"], ""))
        except SchemaError as exc:
            raise SchemaError(f"{where}: return type: {_bare(exc)}", path="/output" + exc.path) from None
    else:
        output_schema = {}

    return CapabilityDefinition(
        name=cap_name,
        version=version,
        description=description if description is not None else _docstring(target),
        input_schema=input_schema,
        output_schema=output_schema,
        tags=tuple(tags),
        cost_hint=float(cost_hint),
        latency_hint_ms=latency_hint_ms,
        max_concurrency=max_concurrency,
        fn=target,
        params=tuple(inputs),
        whole_input=whole,
        context_param=context_param,
        info_param=info_param,
        is_method=is_method,
        is_async=inspect.iscoroutinefunction(target),
        run_in_thread=run_in_thread,
    )


def _is_object_type(hint: Any) -> bool:
    hint, _ = _strip(hint)
    return isinstance(hint, type) and (
        dataclasses.is_dataclass(hint) or _is_typeddict(hint) or _is_pydantic(hint)
    )


def collect(agent: Any) -> Dict[str, BoundCapability]:
    """The capabilities of an Agent instance: its ``@capability`` methods (and functions listed
    in its ``capabilities`` attribute)."""
    found: Dict[str, BoundCapability] = {}
    seen: Set[str] = set()
    for klass in type(agent).__mro__:
        for attr, value in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            raw = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            definition = definition_of(raw)
            if definition is None:
                continue
            bound = (
                definition.bind(agent)
                if definition.is_method
                else BoundCapability(definition, getattr(agent, attr))
            )
            _add(found, bound, type(agent).__name__)
    for extra in getattr(agent, "capabilities", ()) or ():
        _add(found, as_bound(extra), type(agent).__name__)
    return found


def as_bound(item: Any) -> BoundCapability:
    if isinstance(item, BoundCapability):
        return item
    definition = definition_of(item)
    if definition is None:
        raise SchemaError(f"{item!r} is not decorated with @capability.", path="/capabilities")
    if definition.is_method:
        owner = getattr(item, "__self__", None)
        return definition.bind(owner)
    return BoundCapability(definition, item)


def _add(found: Dict[str, BoundCapability], bound: BoundCapability, owner: str) -> None:
    name = bound.definition.name
    if name in found and found[name].definition.fn is not bound.definition.fn:
        raise SchemaError(
            f"Capability {name!r} is declared twice on {owner}; each name once.", path="/capabilities"
        )
    found[name] = bound
