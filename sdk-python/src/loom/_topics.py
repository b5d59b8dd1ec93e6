"""Local validation of topics and patterns (the bridge validates too; this fails early)."""

from __future__ import annotations

import re

from ._errors import InvalidParamsError

# \Z, not $: "$" also matches before a trailing newline, which would let "orders\n" through.
_TOKEN = re.compile(r"[A-Za-z0-9_:-]+\Z")
MAX_TOPIC_CHARS = 512
MAX_TOKENS = 32


def _check(text: str, what: str, path: str, wildcards: bool) -> None:
    if not isinstance(text, str) or not text:
        raise InvalidParamsError(
            f"The {what} is empty; use dot-separated tokens such as 'orders.eu.created'.", path=path
        )
    if len(text) > MAX_TOPIC_CHARS:
        raise InvalidParamsError(
            f"The {what} {text[:40]!r}... has {len(text)} characters; at most {MAX_TOPIC_CHARS}.", path=path
        )
    tokens = text.split(".")
    if len(tokens) > MAX_TOKENS:
        raise InvalidParamsError(
            f"The {what} {text!r} has {len(tokens)} tokens; at most {MAX_TOKENS}.", path=path
        )
    for i, token in enumerate(tokens):
        if token == "":
            raise InvalidParamsError(
                f"The {what} {text!r} has an empty token at position {i + 1}; remove the extra '.'.",
                path=path,
            )
        if wildcards and token == "*":
            continue
        if wildcards and token == ">":
            if i != len(tokens) - 1:
                raise InvalidParamsError(
                    f"The {what} {text!r} is invalid: '>' may only be the last token.", path=path
                )
            continue
        if not _TOKEN.match(token):
            extra = (
                " ('*' and '>' are wildcards, allowed only in subscription patterns)"
                if not wildcards and token in ("*", ">")
                else ""
            )
            raise InvalidParamsError(
                f"The {what} {text!r} is invalid: token {token!r} may only use A-Z a-z 0-9 _ - :{extra}"
                + ("; wildcards '*' and '>' must be whole tokens" if wildcards else "")
                + ".",
                path=path,
            )


def validate_topic(topic: str, path: str = "/topic") -> None:
    _check(topic, "topic", path, wildcards=False)


def validate_pattern(pattern: str, path: str = "/pattern") -> None:
    _check(pattern, "subscription pattern", path, wildcards=True)


def _is_valid(text: str, wildcards: bool) -> bool:
    try:
        _check(text, "", "", wildcards)
    except InvalidParamsError:
        return False
    return True


def matches(pattern: str, topic: str) -> bool:
    """Whether a concrete topic matches a pattern (``*`` one token, ``>`` the rest). An invalid
    pattern or topic matches nothing (as the bridge's ``Topics.Matches``); it never raises."""
    if not isinstance(pattern, str) or not isinstance(topic, str):
        return False
    if not _is_valid(pattern, wildcards=True) or not _is_valid(topic, wildcards=False):
        return False
    p = pattern.split(".")
    t = topic.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)
