"""Typed errors: one class per Loom error code, all under :class:`LoomError`."""

from __future__ import annotations

import enum
from typing import Dict, Mapping, Optional, Type

from ._proto import bridge_pb2 as pb


class ErrorCode(str, enum.Enum):
    """The Loom error taxonomy (``loom.v1.ErrorCode`` without the ``ERROR_CODE_`` prefix)."""

    UNSPECIFIED = "UNSPECIFIED"
    INVALID_PARAMS = "INVALID_PARAMS"
    TIMEOUT = "TIMEOUT"
    CAPABILITY_NOT_FOUND = "CAPABILITY_NOT_FOUND"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    TOOL_ERROR = "TOOL_ERROR"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    TTL_EXPIRED = "TTL_EXPIRED"
    HOP_LIMIT_EXCEEDED = "HOP_LIMIT_EXCEEDED"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    CANCELLED = "CANCELLED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"

    @property
    def number(self) -> int:
        """The proto enum number."""
        return int(pb.ErrorCode.Value("ERROR_CODE_" + self.value))

    @classmethod
    def from_number(cls, number: int) -> "ErrorCode":
        try:
            name = pb.ErrorCode.Name(number)
        except ValueError:
            return cls.INTERNAL  # a newer bridge: treat unknown codes like INTERNAL
        return cls(name[len("ERROR_CODE_") :])

    @classmethod
    def parse(cls, name: str) -> Optional["ErrorCode"]:
        """Parses a code name with or without the ``ERROR_CODE_`` prefix, any case."""
        text = name.strip().upper()
        if text.startswith("ERROR_CODE_"):
            text = text[len("ERROR_CODE_") :]
        try:
            return cls(text)
        except ValueError:
            return None


class LoomError(Exception):
    """Base of every Loom error. Carries the error ``code``, a human ``message`` that says what
    to fix, the JSON pointer ``path`` of the failing value (for INVALID_PARAMS), free
    ``details`` and whether a retry may succeed (``retryable``)."""

    default_code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: Optional[ErrorCode] = None,
        path: str = "",
        details: Optional[Mapping[str, str]] = None,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code if code is not None else self.default_code
        self.message: str = message
        self.path: str = path
        self.details: Dict[str, str] = dict(details or {})
        self.retryable: bool = (
            retryable
            if retryable is not None
            else self.code
            in (
                ErrorCode.TIMEOUT,
                ErrorCode.PROVIDER_UNAVAILABLE,
                ErrorCode.UNAVAILABLE,
                ErrorCode.RESOURCE_EXHAUSTED,
            )
        )

    def __str__(self) -> str:
        where = f" (at {self.path})" if self.path else ""
        return f"{self.code.value}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r}, path={self.path!r})"
        )

    def to_proto(self) -> pb.Error:
        err = pb.Error(
            code=self.code.number,  # type: ignore[arg-type]
            message=self.message,
            path=self.path,
            retryable=self.retryable,
        )
        for key, value in self.details.items():
            err.details[key] = value
        return err


class InvalidParamsError(LoomError):
    """A field or argument is wrong; ``path`` names it (a JSON pointer)."""

    default_code = ErrorCode.INVALID_PARAMS


class SchemaError(InvalidParamsError):
    """A ``@capability`` cannot be described by a JSON Schema, or its definition is invalid
    (raised when the decorator runs). ``path`` names the offending parameter."""


class RequestTimeoutError(LoomError):
    """A deadline passed (no reply, no result, no answer from the bridge in time)."""

    default_code = ErrorCode.TIMEOUT


class NotFoundError(LoomError):
    """No provider is registered for the capability (name and version)."""

    default_code = ErrorCode.CAPABILITY_NOT_FOUND


class ProviderUnavailableError(LoomError):
    """Providers exist but none can answer now; retry with backoff."""

    default_code = ErrorCode.PROVIDER_UNAVAILABLE


class ToolError(LoomError):
    """The capability itself failed; the message is the provider's."""

    default_code = ErrorCode.TOOL_ERROR


class PermissionDeniedError(LoomError):
    default_code = ErrorCode.PERMISSION_DENIED


class ResourceExhaustedError(LoomError):
    """A size, queue or rate limit was hit."""

    default_code = ErrorCode.RESOURCE_EXHAUSTED


class TtlExpiredError(LoomError):
    default_code = ErrorCode.TTL_EXPIRED


class HopLimitExceededError(LoomError):
    default_code = ErrorCode.HOP_LIMIT_EXCEEDED


class UnauthenticatedError(LoomError):
    """The bridge has auth on and this program sent no credential where one is required, or a
    bad one (an expired token, a token signed with another key, a certificate and a token naming
    different identities). The message says which; set ``LOOM_TOKEN`` (``loom token create``) or the
    client certificate (``LOOM_TLS_CERT``/``LOOM_TLS_KEY``). Retrying the same request fails again."""

    default_code = ErrorCode.UNAUTHENTICATED


class SessionNotFoundError(LoomError):
    default_code = ErrorCode.SESSION_NOT_FOUND


class CallCancelledError(LoomError):
    """The call was cancelled (by the caller, or the stream was replaced): the CANCELLED code the
    bridge returned. Not ``asyncio.CancelledError`` (a task being cancelled), which the SDK
    always lets through. Formerly ``loom.CancelledError`` (a deprecated alias, warning on use)."""

    default_code = ErrorCode.CANCELLED


class UnavailableError(LoomError):
    """The bridge cannot be reached, is shutting down, or the connection broke while the
    request was in flight (it may or may not have been carried out)."""

    default_code = ErrorCode.UNAVAILABLE


class ConnectionClosedError(UnavailableError):
    """The connection was closed by this program (``close()``/``drain()``)."""

    def __init__(self, message: str = "The connection is closed.", **kwargs: object) -> None:
        super().__init__(message, retryable=False)


class InternalError(LoomError):
    default_code = ErrorCode.INTERNAL


class BudgetExceededError(LoomError):
    """An agent's or a thread's token budget in the LLM gateway is spent (docs/llm.md)."""

    default_code = ErrorCode.BUDGET_EXCEEDED


_BY_CODE: Dict[ErrorCode, Type[LoomError]] = {
    ErrorCode.INVALID_PARAMS: InvalidParamsError,
    ErrorCode.TIMEOUT: RequestTimeoutError,
    ErrorCode.CAPABILITY_NOT_FOUND: NotFoundError,
    ErrorCode.PROVIDER_UNAVAILABLE: ProviderUnavailableError,
    ErrorCode.TOOL_ERROR: ToolError,
    ErrorCode.PERMISSION_DENIED: PermissionDeniedError,
    ErrorCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    ErrorCode.TTL_EXPIRED: TtlExpiredError,
    ErrorCode.HOP_LIMIT_EXCEEDED: HopLimitExceededError,
    ErrorCode.SESSION_NOT_FOUND: SessionNotFoundError,
    ErrorCode.CANCELLED: CallCancelledError,
    ErrorCode.UNAVAILABLE: UnavailableError,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.UNAUTHENTICATED: UnauthenticatedError,
    ErrorCode.BUDGET_EXCEEDED: BudgetExceededError,
}


def error_for(
    code: ErrorCode,
    message: str,
    path: str = "",
    details: Optional[Mapping[str, str]] = None,
    retryable: Optional[bool] = None,
) -> LoomError:
    """The typed error for a code."""
    cls = _BY_CODE.get(code, InternalError)
    return cls(message, code=code, path=path, details=details, retryable=retryable)


def from_proto(err: pb.Error) -> LoomError:
    code = ErrorCode.from_number(err.code)
    if code is ErrorCode.UNSPECIFIED:
        code = ErrorCode.INTERNAL
    return error_for(code, err.message or code.value, err.path, dict(err.details), err.retryable or None)


# grpc.StatusCode name -> ErrorCode, for failures without a loom-error-code trailer (§11.1): the
# inverse of the code -> status table; anything else is INTERNAL (tests/vectors/errors.json).
_FROM_STATUS = {
    "CANCELLED": ErrorCode.CANCELLED,
    "INVALID_ARGUMENT": ErrorCode.INVALID_PARAMS,
    "DEADLINE_EXCEEDED": ErrorCode.TIMEOUT,
    "NOT_FOUND": ErrorCode.CAPABILITY_NOT_FOUND,
    "PERMISSION_DENIED": ErrorCode.PERMISSION_DENIED,
    "RESOURCE_EXHAUSTED": ErrorCode.RESOURCE_EXHAUSTED,
    "FAILED_PRECONDITION": ErrorCode.HOP_LIMIT_EXCEEDED,
    "UNAVAILABLE": ErrorCode.UNAVAILABLE,
    "UNAUTHENTICATED": ErrorCode.UNAUTHENTICATED,
}


def from_rpc_error(exc: BaseException, target: str) -> LoomError:
    """A failed gRPC call as a typed error: ``loom-error-code`` first, then the gRPC status."""
    code_fn = getattr(exc, "code", None)
    if not callable(code_fn):
        return UnavailableError(f"Cannot reach the bridge at {target}: {exc}")
    status = code_fn()
    details_fn = getattr(exc, "details", None)
    detail = details_fn() if callable(details_fn) else None
    trailers_fn = getattr(exc, "trailing_metadata", None)
    trailers = trailers_fn() if callable(trailers_fn) else None
    code: Optional[ErrorCode] = None
    path = ""
    for key, value in trailers or ():
        if key == "loom-error-code" and isinstance(value, str):
            # A code this SDK does not know (a newer bridge) is treated like INTERNAL (§11).
            code = ErrorCode.parse(value) or ErrorCode.INTERNAL
        elif key == "loom-error-path" and isinstance(value, str):
            path = value
    name = getattr(status, "name", str(status))
    if code is None:
        code = _FROM_STATUS.get(name, ErrorCode.INTERNAL)
        if name == "UNAVAILABLE":
            detail = f"Cannot reach the bridge at {target}: {detail or name}"
    return error_for(code, detail or name, path)
