"""aio-pika / aiormq exceptions translated into the bus's, at the bridge's boundary.

Connection-level failures (refused, reset, closed, timed out, a channel that is closed
while the robust connection reconnects) become :class:`~bus.BackendUnavailableError`;
every other AMQP error (a channel closed by the broker, a nack, a bad frame, refused
credentials) becomes :class:`~bus.BackendError`. The original is kept as ``__cause__``;
the message names the bridge and never contains the broker URL's password.
"""

from __future__ import annotations

from bus import BackendError, BackendUnavailableError
from bus.abc import redact

__all__ = ["describe", "is_client_error", "translate"]


def is_client_error(exc: BaseException) -> bool:
    """True for exceptions raised by the AMQP client or the network below it."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__
    return module.startswith(("aio_pika", "aiormq", "pamqp"))


def describe(exc: BaseException, *secrets: str | None) -> str:
    """``Type: message`` of *exc*, with *secrets* (the URL's password) blotted out."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(what, *secrets)


def translate(
    exc: BaseException, context: str, secrets: tuple[str | None, ...] = ()
) -> BackendError:
    """The bus error for *exc* (the caller raises it ``from exc``): *context* is the
    bridge's name; *secrets* (the URL's password) are masked in the message."""
    import aiormq.exceptions

    if isinstance(exc, BackendError):
        return exc
    bridge = context
    what = describe(exc, *secrets)
    auth = (aiormq.exceptions.AuthenticationError, aiormq.exceptions.ProbableAuthenticationError)
    if isinstance(exc, auth):
        return BackendError(f"RabbitMQ bridge {bridge!r}: login refused ({what})")
    if isinstance(exc, OSError | TimeoutError | aiormq.exceptions.ChannelInvalidStateError):
        # OSError covers aiormq's AMQPConnectionError (a ConnectionError) and the sockets'.
        return BackendUnavailableError(f"RabbitMQ bridge {bridge!r}: broker unreachable ({what})")
    return BackendError(f"RabbitMQ bridge {bridge!r}: {what}")
