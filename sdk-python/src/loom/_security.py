"""TLS and bearer tokens for the channel to the bridge (grpc.ssl_channel_credentials, call credentials)."""

from __future__ import annotations

import ipaddress
from typing import Optional

import grpc

from ._config import Config
from ._errors import InvalidParamsError


def _read(path: str, what: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidParamsError(
            f"Cannot read the {what} {path!r} ({option}): {e.strerror}.", path="/" + option.split(",")[0]
        ) from None


def _is_loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def channel_credentials(config: Config) -> Optional[grpc.ChannelCredentials]:
    """The credentials of the channel, or None for a plain cleartext channel (no TLS, no token)."""
    if config.tls:
        root = _read(config.tls_ca, "CA bundle", "tls_ca, LOOM_TLS_CA") if config.tls_ca else None
        key = _read(config.tls_key, "client key", "tls_key, LOOM_TLS_KEY") if config.tls_key else None
        chain = (
            _read(config.tls_cert, "client certificate", "tls_cert, LOOM_TLS_CERT")
            if config.tls_cert
            else None
        )
        channel = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=chain
        )
    elif config.token:
        if not _is_loopback(config.target):
            raise InvalidParamsError(
                f"A token is never sent in the clear to another machine: use an https:// url (and "
                f"LOOM_TLS_CA) for {config.url}, or a loopback address.",
                path="/token",
            )
        # Cleartext to this machine only: grpc-core's local credentials allow call credentials there.
        channel = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        return None
    if config.token:
        return grpc.composite_channel_credentials(channel, grpc.access_token_call_credentials(config.token))
    return channel


def describe_handshake_failure(config: Config, detail: str) -> Optional[str]:
    """A TLS failure reported by grpc-core, said plainly; None when ``detail`` is not one."""
    lowered = detail.lower()
    if not config.tls or not any(word in lowered for word in ("ssl", "handshake", "certificate", "tls")):
        return None
    return (
        f"The TLS handshake with the bridge at {config.url} failed ({detail}). Check that LOOM_TLS_CA "
        f"(tls_ca) is the CA "
        "that signed the bridge's certificate, that the url's host is one the certificate names, and, for "
        "mutual TLS, "
        "LOOM_TLS_CERT and LOOM_TLS_KEY."
    )
