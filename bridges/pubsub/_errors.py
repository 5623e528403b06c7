"""google-api-core / gRPC exceptions translated into the bus's, at the bridge's boundary.

The service unreachable, overloaded or too slow (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``,
a retry that gave up, a socket error) becomes :class:`~bus.BackendUnavailableError`;
every other API error (``NOT_FOUND``, ``PERMISSION_DENIED``, ``INVALID_ARGUMENT``...)
:class:`~bus.BackendError`. The original is kept as ``__cause__``; the message names the
bridge. Pub/Sub errors carry no secrets (credentials travel as tokens in metadata, never
in messages), but the credentials file's contents are never put in one either.
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError
from bus.abc import redact

__all__ = ["is_client_error", "is_invalid", "is_not_found", "translate"]


def is_client_error(exc: BaseException) -> bool:
    """True for exceptions raised by the Pub/Sub client, gRPC or the network below."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__
    return module.startswith(("google.api_core", "grpc", "google.auth"))


def _code(exc: BaseException) -> str:
    code = getattr(exc, "grpc_status_code", None)
    return getattr(code, "name", "") if code is not None else ""


def is_not_found(exc: BaseException) -> bool:
    return _code(exc) == "NOT_FOUND"


def is_invalid(exc: BaseException) -> bool:
    """The service refused the request's content for good (a bad message)."""
    return _code(exc) in ("INVALID_ARGUMENT", "FAILED_PRECONDITION")


def translate(
    exc: BaseException, context: str, secrets: tuple[str | None, ...] = ()
) -> BackendError:
    """The bus error for *exc* (the caller raises it ``from exc``): *context* is the
    bridge's name; *secrets* and URL passwords are masked in the message."""
    if isinstance(exc, BackendError):
        return exc
    bridge = context
    message = getattr(exc, "message", None) or str(exc)
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    what = redact(what, *secrets)
    code = _code(exc)
    unavailable = code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED") or isinstance(
        exc, OSError | TimeoutError
    )
    if not unavailable and type(exc).__name__ == "RetryError":  # api_core's retry gave up
        unavailable = True
    if unavailable:
        return BackendUnavailableError(f"Pub/Sub bridge {bridge!r}: service unreachable ({what})")
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return BackendError(f"Pub/Sub bridge {bridge!r}: access refused ({what})")
    return BackendError(f"Pub/Sub bridge {bridge!r}: {what}")
