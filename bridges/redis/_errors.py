"""redis-py's errors as the bus's (sans-IO: imports no client library).

A refused login is a :class:`~bus.BackendError`; the server unreachable, a dropped
connection or a timeout a :class:`~bus.BackendUnavailableError`; anything else the server
answers (``WRONGTYPE``, ``NOGROUP``...) a :class:`~bus.BackendError`. The messages name
the server by its masked URL and never contain its password.
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError
from bus.abc import mask_url, redact

__all__ = ["is_client_error", "is_no_group", "translate"]


def is_client_error(exc: BaseException) -> bool:
    """True for exceptions raised by redis-py or the network below it."""
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("redis")


def is_no_group(exc: BaseException) -> bool:
    """The stream or its consumer group is gone: deleted between two reads (NOGROUP) or
    during a blocking one (UNBLOCKED)."""
    return type(exc).__name__ == "ResponseError" and str(exc).startswith(
        ("NOGROUP", "UNBLOCKED")
    )


def translate(
    exc: BaseException, context: str, secrets: tuple[str | None, ...] = ()
) -> BackendError:
    """The bus error for *exc* (the caller raises it ``from exc``): *context* is the
    server's URL (masked in the message), *secrets* (its password) are masked too."""
    if isinstance(exc, BackendError):
        return exc
    where = f"Redis at {mask_url(context)}"
    what = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, *secrets)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"AuthenticationError", "AuthenticationWrongNumberOfArgsError"}:
        return BackendError(f"{where}: login refused ({what}); check the URL's credentials")
    if names & {"ConnectionError", "TimeoutError", "BusyLoadingError", "OSError"}:
        return BackendUnavailableError(f"{where} is unreachable ({what})")
    return BackendError(f"{where}: {what}")
