"""TLS, mutual TLS and tokens against a real `./loom up` with `./loom certs dev` material, over
real sockets."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import loom
from conftest import REPO, BridgeProcess

T = 60.0
TLS_LINE = re.compile(r"^listening grpc=(https://127\.0\.0\.1:\d+) http=(https://127\.0\.0\.1:\d+)\s*$")


def certs(directory: Path, client: str = "py-tls") -> Path:
    subprocess.run(
        [str(REPO / "loom"), "certs", "dev", "--dir", str(directory), "--client-name", client],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return directory


class TlsBridge(BridgeProcess):
    """`./loom up` with extra flags; its ready line has https addresses."""

    def __init__(self, flags: List[str], log_dir: Path) -> None:
        super().__init__(
            command=f"{shlex.quote(str(REPO / 'loom'))} up " + " ".join(shlex.quote(f) for f in flags),
            log_dir=log_dir,
        )

    def wait_tls(self, timeout: float) -> Tuple[str, str]:
        import queue
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"bridge exited before it was ready:\n{self.log_tail()}")
            m = TLS_LINE.match(line)
            if m:
                return m.group(1), m.group(2)
        raise TimeoutError(f"bridge not ready within {timeout}s:\n{self.log_tail()}")


@pytest.fixture
def material(tmp_path: Path) -> Iterator[Tuple[Path, Path]]:
    yield certs(tmp_path / "certs"), certs(tmp_path / "other")


@pytest.fixture
def mtls_bridge(material: Tuple[Path, Path], tmp_path: Path) -> Iterator[str]:
    d, _ = material
    bridge = TlsBridge(
        [
            "--tls-cert",
            str(d / "server.pem"),
            "--tls-key",
            str(d / "server.key"),
            "--tls-client-ca",
            str(d / "ca.pem"),
        ],
        tmp_path,
    )
    try:
        grpc_url, _ = bridge.wait_tls(T)
        yield grpc_url
    finally:
        bridge.stop()


async def test_connects_over_mutual_tls_with_options_and_with_loom_env(
    mtls_bridge: str, material: Tuple[Path, Path]
) -> None:
    d, _ = material
    got: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()

    async def on_event(event: loom.Event) -> None:
        if not got.done():
            got.set_result(event.topic)

    conn = await asyncio.wait_for(
        loom.connect(
            mtls_bridge,
            agent_id="py-tls",
            tls_ca=str(d / "ca.pem"),
            tls_cert=str(d / "client.pem"),
            tls_key=str(d / "client.key"),
        ),
        T,
    )
    try:
        await conn.subscribe("pytls.>", on_event)
        await conn.emit("pytls.hello", {"x": 1})
        assert await asyncio.wait_for(got, T) == "pytls.hello"
    finally:
        await conn.close()

    env = {
        "LOOM_URL": mtls_bridge,
        "LOOM_AGENT_ID": "py-tls",
        "LOOM_TLS_CA": str(d / "ca.pem"),
        "LOOM_TLS_CERT": str(d / "client.pem"),
        "LOOM_TLS_KEY": str(d / "client.key"),
    }
    config = loom.Config.load(env)
    assert config.tls and config.target.startswith("127.0.0.1:")
    conn = await asyncio.wait_for(loom.connect(config=config), T)
    await conn.close()


async def test_a_wrong_ca_or_a_missing_client_certificate_fails_with_a_clear_error(
    mtls_bridge: str, material: Tuple[Path, Path]
) -> None:
    d, other = material
    with pytest.raises(loom.LoomError) as wrong_ca:
        await asyncio.wait_for(
            loom.connect(
                mtls_bridge,
                tls_ca=str(other / "ca.pem"),
                tls_cert=str(d / "client.pem"),
                tls_key=str(d / "client.key"),
                connect_timeout_ms=5000,
            ),
            T,
        )
    assert "TLS handshake with the bridge" in str(wrong_ca.value) and "LOOM_TLS_CA" in str(wrong_ca.value)

    with pytest.raises(loom.LoomError):
        await asyncio.wait_for(
            loom.connect(mtls_bridge, tls_ca=str(d / "ca.pem"), connect_timeout_ms=5000), T
        )

    with pytest.raises(loom.InvalidParamsError, match="needs its key"):
        loom.Config.load({}, tls_cert=str(d / "client.pem"))


def test_the_token_is_not_in_the_config_repr() -> None:
    config = loom.Config.load({"LOOM_TOKEN": "secret-token-value"})
    assert config.token == "secret-token-value"
    assert "secret-token-value" not in repr(config)


def test_a_token_is_refused_in_the_clear_to_another_machine() -> None:
    from loom import _security

    with pytest.raises(loom.InvalidParamsError, match="never sent in the clear"):
        _security.channel_credentials(loom.Config.load({}, url="http://10.1.2.3:7070", token="t"))
    assert (
        _security.channel_credentials(loom.Config.load({}, url="http://127.0.0.1:7070", token="t"))
        is not None
    )


def mint(key: Path, agent: str, publish: Tuple[str, ...] = (), subscribe: Tuple[str, ...] = ()) -> str:
    allow = [a for p in publish for a in ("--allow-publish", p)] + [
        a for p in subscribe for a in ("--allow-subscribe", p)
    ]
    out = subprocess.run(
        [
            str(REPO / "loom"),
            "token",
            "create",
            "--agent",
            agent,
            "--token-key",
            str(key),
            "--expires",
            "1h",
            *allow,
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return out.stdout.decode().strip()


@pytest.fixture
def auth_bridge(tmp_path: Path) -> Iterator[Tuple[str, Path]]:
    key = tmp_path / "keys" / "token.key"
    bridge = BridgeProcess(
        command=f"{shlex.quote(str(REPO / 'loom'))} up --auth required --token-key {shlex.quote(str(key))}",
        log_dir=tmp_path,
    )
    try:
        bridge.wait_ready(T)
        yield bridge.grpc, key
    finally:
        bridge.stop()


async def test_tokens_over_grpcio_missing_forged_and_mismatched_are_refused(
    auth_bridge: Tuple[str, Path], tmp_path: Path
) -> None:
    url, key = auth_bridge
    token = mint(key, "py-tok", publish=("pytok.>",), subscribe=("pytok.>",))

    conn = await asyncio.wait_for(loom.connect(url, agent_id="py-tok", token=token), T)
    got: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()

    async def on_event(event: loom.Event) -> None:
        if not got.done():
            got.set_result(event.topic)

    try:
        await conn.subscribe("pytok.>", on_event)
        await conn.emit("pytok.hello", {})
        assert await asyncio.wait_for(got, T) == "pytok.hello"
    finally:
        await conn.close()

    # No credential, and a forged one: UNAUTHENTICATED as its own typed error (not SESSION_NOT_FOUND).
    with pytest.raises(loom.UnauthenticatedError, match="LOOM_TOKEN") as missing:
        await asyncio.wait_for(loom.connect(url, agent_id="py-tok", connect_timeout_ms=5000), T)
    assert missing.value.code == loom.ErrorCode.UNAUTHENTICATED and not missing.value.retryable
    forged = mint(tmp_path / "other.key", "py-tok")
    with pytest.raises(loom.UnauthenticatedError, match="signature does not match") as bad:
        await asyncio.wait_for(loom.connect(url, agent_id="py-tok", token=forged, connect_timeout_ms=5000), T)
    assert bad.value.code == loom.ErrorCode.UNAUTHENTICATED
    with pytest.raises(loom.LoomError, match="may register agent id 'py-tok' only") as mismatch:
        await asyncio.wait_for(
            loom.connect(url, agent_id="someone-else", token=token, connect_timeout_ms=5000), T
        )
    assert mismatch.value.code == loom.ErrorCode.PERMISSION_DENIED


async def test_the_token_s_allow_lists_permit_publish_and_subscribe_and_refuse_the_rest(
    auth_bridge: Tuple[str, Path]
) -> None:
    url, key = auth_bridge
    conn = await asyncio.wait_for(
        loom.connect(
            url,
            agent_id="py-perm",
            token=mint(key, "py-perm", publish=("pyperm.>",), subscribe=("pyperm.>",)),
        ),
        T,
    )
    watcher = await asyncio.wait_for(
        loom.connect(url, agent_id="py-watch", token=mint(key, "py-watch", subscribe=("other.>",))), T
    )
    topics: "asyncio.Queue[str]" = asyncio.Queue()
    watched: "asyncio.Queue[str]" = asyncio.Queue()

    async def on_event(event: loom.Event) -> None:
        await topics.put(event.topic)

    async def on_watched(event: loom.Event) -> None:
        await watched.put(event.topic)

    try:
        await conn.subscribe("pyperm.>", on_event)
        await watcher.subscribe("other.>", on_watched)
        # Refused: a pattern no rule allows (PERMISSION_DENIED naming identity, action and rule).
        with pytest.raises(
            loom.PermissionDeniedError,
            match="Identity 'py-perm' may not subscribe to 'other.>': no rule allows it",
        ):
            await asyncio.wait_for(conn.subscribe("other.>", on_event), T)
        # Allowed: delivered. Refused: not delivered to the watcher, and the bridge's error is counted.
        await conn.emit("pyperm.ok", {"n": 1})
        assert await asyncio.wait_for(topics.get(), T) == "pyperm.ok"
        await conn.emit("other.x", {"n": 2})
        deadline = asyncio.get_running_loop().time() + T
        while conn.stats.publish_errors < 1:
            assert asyncio.get_running_loop().time() < deadline, "the refused publish was never reported"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert watched.empty()
    finally:
        await conn.close()
        await watcher.close()


@pytest.fixture
def limited_bridge(tmp_path: Path) -> Iterator[Tuple[str, Path, Path]]:
    """`./loom up --auth required` with per-identity limits in loom.yaml and an audit log."""
    key = tmp_path / "keys" / "token.key"
    audit = tmp_path / "audit" / "audit.log"
    config = tmp_path / "loom.yaml"
    config.write_text(
        "name: limits\n"
        "permissions:\n"
        "  py-rate:\n"
        "    allow: { publish: ['pyrate.>'], subscribe: ['pyrate.>'], call: ['*'] }\n"
        "    limits: { publishes_per_second: 1, publish_burst: 3, calls_per_second: 1, call_burst: 1 }\n"
    )
    flags = [
        "--auth",
        "required",
        "--token-key",
        str(key),
        "--audit-log",
        str(audit),
        "--config",
        str(config),
    ]
    bridge = BridgeProcess(
        command=f"{shlex.quote(str(REPO / 'loom'))} up " + " ".join(shlex.quote(f) for f in flags),
        log_dir=tmp_path,
    )
    try:
        bridge.wait_ready(T)
        yield bridge.grpc, key, audit
    finally:
        bridge.stop()


async def test_publishes_and_calls_over_the_identity_s_rate_are_refused_naming_the_limit_and_audited(
    limited_bridge: Tuple[str, Path, Path]
) -> None:
    url, key, audit = limited_bridge
    conn = await asyncio.wait_for(loom.connect(url, agent_id="py-rate", token=mint(key, "py-rate")), T)
    topics: "asyncio.Queue[str]" = asyncio.Queue()

    async def on_event(event: loom.Event) -> None:
        await topics.put(str(event.payload))

    try:
        await conn.subscribe("pyrate.>", on_event)
        # 10 publishes at once: the bucket holds 3 (publish_burst) and refills 1 per second.
        for i in range(10):
            await conn.emit("pyrate.n", {"i": i})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + T
        while conn.stats.publish_errors < 6:
            assert loop.time() < deadline, f"only {conn.stats.publish_errors} publishes were refused"
            await asyncio.sleep(0.05)
        # The refused ones are not delivered: at most the burst and one refill arrive.
        delivered = 0
        while True:
            try:
                await asyncio.wait_for(topics.get(), 1.5)
                delivered += 1
            except asyncio.TimeoutError:
                break
        assert 3 <= delivered <= 10 - conn.stats.publish_errors

        # Calls: one passes the bucket (and finds no provider); the next at once is refused by the limit.
        errors: List[loom.LoomError] = []
        for _ in range(3):
            try:
                await conn.invoke("nobody.here", {}, timeout=10)
            except loom.LoomError as e:
                errors.append(e)
        limited = [e for e in errors if isinstance(e, loom.ResourceExhaustedError)]
        assert limited, [str(e) for e in errors]
        assert (
            "Identity 'py-rate' is over its limit of 1 calls per second "
            "(permissions.py-rate.limits.calls_per_second, burst 1)" in limited[0].message
        )
        assert limited[0].code == loom.ErrorCode.RESOURCE_EXHAUSTED
    finally:
        await conn.close()

    # Each refusal is in the audit log, as a JSON line naming the limit; the token is not.
    import json

    deadline = asyncio.get_running_loop().time() + T
    while True:
        lines = (
            [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
            if audit.exists()
            else []
        )
        kinds = {(r["kind"], r["action"]) for r in lines}
        if (
            ("limit", "publish") in kinds
            and ("limit", "call") in kinds
            and ("registration", "register") in kinds
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, f"audit lines missing: {kinds}"
        await asyncio.sleep(0.1)
    publish = next(r for r in lines if r["kind"] == "limit" and r["action"] == "publish")
    assert (
        publish["identity"] == "py-rate"
        and publish["resource"] == "pyrate.n"
        and publish["outcome"] == "limited"
    )
    assert "publishes_per_second" in publish["reason"]
