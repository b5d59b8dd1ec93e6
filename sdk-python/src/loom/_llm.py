"""Language models through the bridge's LLM gateway: thin wrappers over the ``llm.chat``,
``llm.embed`` and ``llm.usage`` capabilities (docs/llm.md). The same names exist in the .NET
(``ctx.Llm.ChatAsync``) and TypeScript (``ctx.llm.chat``) SDKs."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Union

from ._event import Event, Overflow

if TYPE_CHECKING:
    from ._context import Context

Message = Mapping[str, Any]
"""A message: ``{"role": "system"|"user"|"assistant"|"tool", "content": str, ...}``."""

_DEFAULT_TIMEOUT = 120.0
_STREAM_TAIL = 10.0


@dataclass
class ToolCall:
    """A tool call the model made: ``arguments`` is the parsed JSON object."""

    id: str
    name: str
    arguments: Dict[str, Any]


@dataclass
class ChatResult:
    """An ``llm.chat`` answer. ``json`` is the parsed content when a JSON response format was
    asked for; ``usage`` and ``cost_usd`` are 0 for cache hits and coalesced calls."""

    content: str
    model: str
    provider: str
    tool_calls: List[ToolCall]
    finish_reason: Optional[str]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: bool
    coalesced: bool
    attempts: int
    fallback_from: Optional[str] = None
    json: Any = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "ChatResult":
        usage = data.get("usage") or {}
        return ChatResult(
            content=data.get("content") or "",
            model=data.get("model", ""),
            provider=data.get("provider", ""),
            tool_calls=[
                ToolCall(c["id"], c["name"], c.get("arguments") or {}) for c in data.get("tool_calls") or []
            ],
            finish_reason=data.get("finish_reason"),
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            cached=bool(data.get("cached", False)),
            coalesced=bool(data.get("coalesced", False)),
            attempts=int(data.get("attempts", 0)),
            fallback_from=data.get("fallback_from"),
            json=data.get("json"),
            raw=data,
        )


@dataclass
class StreamEvent:
    """One event of :meth:`Llm.stream_chat`: ``delta`` (``text`` is a piece of the answer),
    ``restart`` (the pieces so far are void: a retry or fallback starts over) or ``result``
    (last; ``result`` is the whole answer)."""

    type: str
    text: Optional[str] = None
    model: Optional[str] = None
    result: Optional[ChatResult] = None


@dataclass
class EmbedResult:
    """An ``llm.embed`` answer: one vector per text, in order; ``cached`` counts texts served
    from the cache."""

    model: str
    embeddings: List[List[float]]
    input_tokens: int
    cost_usd: float
    cached: int


class Llm:
    """``ctx.llm``: chat, streamed chat, embeddings and usage through the bridge's gateway.
    Errors are the usual :class:`~loom.LoomError` subclasses, plus
    :class:`~loom.BudgetExceededError` when a token budget is spent."""

    def __init__(self, context: "Context") -> None:
        self._context = context

    @staticmethod
    def _request(
        messages: Union[str, Sequence[Message]],
        model: Optional[str],
        tools: Optional[Sequence[Mapping[str, Any]]],
        tool_choice: Optional[str],
        response_schema: Optional[Mapping[str, Any]],
        temperature: Optional[float],
        max_tokens: Optional[int],
        stop: Optional[Sequence[str]],
        cache: Optional[bool],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "messages": [{"role": "user", "content": messages}]
            if isinstance(messages, str)
            else [dict(m) for m in messages]
        }
        if model is not None:
            body["model"] = model
        if tools is not None:
            body["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "schema": dict(response_schema),
                "name": "answer",
            }
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stop is not None:
            body["stop"] = list(stop)
        if cache is not None:
            body["cache"] = cache
        return body

    async def chat(
        self,
        messages: Union[str, Sequence[Message]],
        *,
        model: Optional[str] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Optional[str] = None,
        response_schema: Optional[Mapping[str, Any]] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        cache: Optional[bool] = None,
        thread_id: str = "",
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> ChatResult:
        """One chat completion. ``messages`` is a prompt or a list of messages; ``tools`` are
        ``{"name", "description", "parameters": JSON Schema}``; ``response_schema`` asks for
        structured output (parsed into ``result.json``)."""
        body = self._request(
            messages, model, tools, tool_choice, response_schema, temperature, max_tokens, stop, cache
        )
        return await self._chat(body, thread_id, timeout)

    async def _chat(self, body: Dict[str, Any], thread_id: str, timeout: float) -> ChatResult:
        output = await self._context.invoke("llm.chat", body, timeout=timeout, thread_id=thread_id)
        return ChatResult.from_json(output)

    async def stream_chat(
        self,
        messages: Union[str, Sequence[Message]],
        *,
        model: Optional[str] = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Optional[str] = None,
        response_schema: Optional[Mapping[str, Any]] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stop: Optional[Sequence[str]] = None,
        cache: Optional[bool] = None,
        thread_id: str = "",
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> AsyncIterator[StreamEvent]:
        """A chat completion streamed: ``delta`` events as the model writes, then one
        ``result``. The pieces travel as events on a topic under ``llm.stream.`` that this agent
        subscribes to for the call."""
        body = self._request(
            messages, model, tools, tool_choice, response_schema, temperature, max_tokens, stop, cache
        )
        topic = "llm.stream." + uuid.uuid4().hex
        body["stream_topic"] = topic
        queue: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue(maxsize=4096)

        async def on_event(event: Event) -> None:
            await queue.put(json.loads(event.payload))

        subscription = await self._context.subscribe(
            topic, on_event, overflow=Overflow.BLOCK, queue_capacity=4096
        )
        call = asyncio.ensure_future(self._chat(body, thread_id, timeout))
        getter: "Optional[asyncio.Future[Dict[str, Any]]]" = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, call}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    call.result()  # raises the call's error
                    try:
                        await asyncio.wait_for(getter, _STREAM_TAIL)
                    except asyncio.TimeoutError:
                        break  # the stream events were lost; the result still stands
                data = getter.result()
                kind = data.get("type")
                if kind == "done":
                    break
                yield StreamEvent(type=str(kind), text=data.get("text"), model=data.get("model"))
            result = await call
            yield StreamEvent(type="result", result=result)
        finally:
            for task in (call, getter):  # both held until here: none outlives the stream
                if task is not None and not task.done():
                    task.cancel()
            await subscription.unsubscribe()

    async def embed(
        self,
        input: Union[str, Sequence[str]],
        *,
        model: Optional[str] = None,
        thread_id: str = "",
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> EmbedResult:
        """Embeddings of one text or several (one vector per text, in order)."""
        body: Dict[str, Any] = {"input": [input] if isinstance(input, str) else list(input)}
        if model is not None:
            body["model"] = model
        data = await self._context.invoke("llm.embed", body, timeout=timeout, thread_id=thread_id)
        return EmbedResult(
            model=data.get("model", ""),
            embeddings=[[float(x) for x in v] for v in data.get("embeddings") or []],
            input_tokens=int((data.get("usage") or {}).get("input_tokens", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            cached=int(data.get("cached", 0)),
        )

    async def usage(self, *, thread_id: str = "", timeout: float = 30.0) -> Dict[str, Any]:
        """Tokens and cost this agent (and ``thread_id``) spent, with the budgets (0 = unlimited)."""
        result: Dict[str, Any] = await self._context.invoke(
            "llm.usage", {}, timeout=timeout, thread_id=thread_id
        )
        return result
