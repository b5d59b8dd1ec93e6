"""The LLM gateway from Python: ``ctx.llm`` against a bridge whose loom.yaml points at the fake
OpenAI/Anthropic server (tests/Loom.LlmFake, started here as a process on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import textwrap
import urllib.request
from typing import Any, Dict, Iterator, List

import pytest

import loom

from conftest import BRIDGE_DLL, REPO, BridgeProcess

FAKE_DLL = REPO / "tests" / "Loom.LlmFake" / "bin" / "Release" / "net10.0" / "Loom.LlmFake.dll"
T = 60.0


class Stack:
    def __init__(self, fake: str, bridge: BridgeProcess) -> None:
        self.fake = fake
        self.bridge = bridge
        self.url = "http://" + bridge.grpc

    def upstream(self, marker: str) -> List[Dict[str, Any]]:
        with urllib.request.urlopen(self.fake + "/control/requests", timeout=10) as r:
            requests: List[Dict[str, Any]] = json.load(r)
        return [q for q in requests if marker in q["body"]]

    def control(self, action: str) -> None:
        urllib.request.urlopen(
            urllib.request.Request(self.fake + "/control/" + action, method="POST"), timeout=10
        ).close()

    def metric(self, name: str, *labels: str) -> float:
        with urllib.request.urlopen(f"http://{self.bridge.http}/metrics", timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + "{") and all(label in line for label in labels):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not FAKE_DLL.exists():
        subprocess.run(
            [
                "dotnet",
                "build",
                str(REPO / "tests" / "Loom.LlmFake"),
                "-c",
                "Release",
                "-nologo",
                "-v",
                "quiet",
            ],
            check=True,
        )
    fake = subprocess.Popen(
        ["dotnet", str(FAKE_DLL)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert fake.stdout is not None
    line = fake.stdout.readline().decode().strip()
    assert line.startswith("FAKE_LLM_URL="), line
    url = line.split("=", 1)[1].rstrip("/")
    work = tmp_path_factory.mktemp("llm")
    config = work / "loom.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
        name: llm-python
        llm:
          providers:
            - name: openai-fake
              kind: openai
              base_url: {url}/v1
              api_key_env: LOOM_TEST_FAKE_KEY
            - name: anthropic-fake
              kind: anthropic
              base_url: {url}
          models:
            - {{ name: fast, provider: openai-fake, id: fake-fast,
                 input_cost_per_mtok: 1000, output_cost_per_mtok: 2000 }}
            - {{ name: claude, provider: anthropic-fake, id: claude-fake }}
            - {{ name: broken, provider: openai-fake, id: fail-model, fallback: [fast] }}
            - {{ name: gated, provider: openai-fake, id: gated-model }}
            - {{ name: embed, provider: openai-fake, id: embed-model, embedding: true }}
          default_model: fast
          retry_base_delay_ms: 10
          budgets:
            agents: {{ py-stingy: 5 }}
        """
        )
    )
    base = (
        f"dotnet {shlex.quote(str(BRIDGE_DLL))} up"
        if BRIDGE_DLL.exists()
        else f"{shlex.quote(str(REPO / 'loom'))} up"
    )
    bridge = BridgeProcess(log_dir=work, command=f"{base} --config {shlex.quote(str(config))}")
    try:
        bridge.wait_ready(float(os.environ.get("LOOM_BRIDGE_START_TIMEOUT_S", "180")))
        yield Stack(url, bridge)
    finally:
        bridge.stop()
        fake.terminate()
        try:
            fake.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fake.kill()


async def test_chat_stream_tools_and_structured_output(stack: Stack) -> None:
    async with loom.connect(stack.url, agent_id="py-writer") as conn:
        result = await asyncio.wait_for(conn.llm.chat("hello from python", model="fast"), T)
        assert result.content == "echo: hello from python"
        assert result.provider == "openai-fake" and result.output_tokens == 4
        assert result.cost_usd == pytest.approx(
            (result.input_tokens * 1000 + result.output_tokens * 2000) / 1e6
        )
        assert len(stack.upstream("hello from python")) == 1

        pieces: List[str] = []
        final = None
        async for event in conn.llm.stream_chat("stream from python please", model="claude"):
            if event.type == "delta":
                pieces.append(event.text or "")
            elif event.type == "result":
                final = event.result
        assert final is not None and final.content == "echo: stream from python please"
        assert "".join(pieces) == final.content and len(pieces) >= 4
        assert stack.upstream("stream from python please")[0]["path"] == "/v1/messages"

        tool = {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
        called = await asyncio.wait_for(conn.llm.chat("python weather?", tools=[tool]), T)
        assert [(c.name, c.arguments) for c in called.tool_calls] == [("get_weather", {"city": "Oslo"})]

        structured = await asyncio.wait_for(
            conn.llm.chat(
                "python json",
                response_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
            ),
            T,
        )
        assert structured.json == {"answer": "python json"}


async def test_fallback_cache_and_coalescing(stack: Stack) -> None:
    async with loom.connect(stack.url, agent_id="py-shared") as conn:
        fell = await asyncio.wait_for(conn.llm.chat("python fallback", model="broken"), T)
        assert fell.model == "fast" and fell.fallback_from == "broken" and fell.attempts == 3

        first = await asyncio.wait_for(conn.llm.chat("python cache"), T)
        second = await asyncio.wait_for(conn.llm.chat("python cache"), T)
        assert not first.cached and second.cached and len(stack.upstream("python cache")) == 1

        stack.control("hold")
        calls = [asyncio.ensure_future(conn.llm.chat("python coalesce", model="gated")) for _ in range(50)]
        try:
            deadline = asyncio.get_running_loop().time() + T
            while stack.metric("loom_action_calls_in_flight", 'capability="llm.chat"') < 50:
                assert asyncio.get_running_loop().time() < deadline, "50 calls never got in flight"
                await asyncio.sleep(0.05)
            assert len(stack.upstream("python coalesce")) == 1
        finally:
            stack.control("release")
        results = await asyncio.wait_for(asyncio.gather(*calls), T)
        assert sum(r.coalesced for r in results) == 49
        assert len(stack.upstream("python coalesce")) == 1


async def test_budget_refusal_embeddings_and_metrics(stack: Stack) -> None:
    async with loom.connect(stack.url, agent_id="py-stingy") as conn:
        spent = await asyncio.wait_for(conn.llm.chat("python spend"), T)
        with pytest.raises(loom.BudgetExceededError) as refused:
            await asyncio.wait_for(conn.llm.chat("python over budget"), T)
        assert refused.value.code == loom.ErrorCode.BUDGET_EXCEEDED and "py-stingy" in str(refused.value)
        usage = await conn.llm.usage()
        assert usage["tokens"] == spent.input_tokens + spent.output_tokens and usage["budget_tokens"] == 5
        with pytest.raises(loom.BudgetExceededError):  # embeddings count against the same budget
            await asyncio.wait_for(conn.llm.embed("abc"), T)

    async with loom.connect(stack.url, agent_id="py-embedder") as conn:
        vectors = await asyncio.wait_for(conn.llm.embed(["abc", "Hello"]), T)
        assert vectors.embeddings == [
            [3.0, 3.0, 0.0, float(sum(ord(c) % 7 for c in "abc"))],
            [5.0, 4.0, 1.0, float(sum(ord(c) % 7 for c in "Hello"))],
        ]

    assert stack.metric("loom_llm_budget_refused_total", 'scope="agent"') >= 1
    assert stack.metric("loom_llm_cost_total", 'model="fast"') > 0
    assert stack.metric("loom_llm_tokens_total", 'model="fast"', 'direction="input"') > 0
