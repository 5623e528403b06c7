"""W3C trace context through the bus: carried in headers, inherited by handlers' publishes.

A message's trace context is its ``traceparent`` header (and ``tracestate``, if any),
as W3C Trace Context spells them. Bridges carry headers to and from every broker, so a
trace id travels with the message from a publish through Kafka, RabbitMQ, Kinesis or
Pub/Sub to another process's bus.

Inside the bus, a message published while a handler handles a traced message carries
the handled message's context, unless the publisher gave a ``traceparent`` itself: the
worker keeps the message in hand in :data:`CURRENT`, and ``publish`` reads its headers. Both sides
pay for that only once the bus has seen a traced message (``Bus._traced``, set by the
first publish or import carrying ``traceparent``, or by tracing being on): until then
publishing reads one flag, and a worker reads it once per burst.

With ``open_bus(tracing=True)`` (or a ``TracerProvider``) OpenTelemetry spans are made
too, by :class:`bus._otel.OtelTracing`; this module imports nothing from OpenTelemetry.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from ._envelope import Envelope

__all__ = ["CURRENT", "TRACEPARENT", "TRACESTATE", "Handling", "Tracing", "inherit", "make_tracing"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

class Handling:
    """What a worker is handling, for its handler's publishes: the envelope, or None.

    A sync handler's burst sets one of these in :data:`CURRENT` per burst and moves
    ``env`` from message to message (setting a ``ContextVar`` costs more than handling a
    message); an async handler gets its own per message, reset after the call, so tasks
    it starts keep the context of the message that started them. A task started from a
    sync handler runs only after the burst, when ``env`` is None again.
    """

    __slots__ = ("env",)

    def __init__(self, env: Envelope[Any] | None = None) -> None:
        self.env = env


CURRENT: ContextVar[Handling | None] = ContextVar("trio_bus_handling", default=None)
"""The :class:`Handling` of the current task's worker, or None outside handlers."""


def inherit(headers: dict[str, str] | None) -> dict[str, str]:
    """*headers* for a publish: with the handled message's trace context added when the
    publisher gave none (a copy then; the caller's dict is never changed)."""
    if headers is not None and TRACEPARENT in headers:
        return headers
    handling = CURRENT.get()
    env = None if handling is None else handling.env
    parent = None if env is None else env.headers.get(TRACEPARENT)
    if parent is None:
        return {} if headers is None else headers
    assert env is not None
    out = {} if headers is None else dict(headers)
    out[TRACEPARENT] = parent
    state = env.headers.get(TRACESTATE)
    if state is not None:
        out[TRACESTATE] = state
    return out


class Tracing(Protocol):
    """What the bus calls when tracing is on (one implementation: OpenTelemetry's)."""

    def publish(
        self, bus: str, topic: str, headers: dict[str, str] | None, count: int = 1
    ) -> dict[str, str]:
        """A publish span; returns the headers to send, carrying its context."""

    def handle(self, env: Envelope[Any], subscriber: str) -> AbstractContextManager[None]:
        """A span around one handler call (retries included), current while it runs."""

    def detach_all(self) -> None:
        """Make the current task's tracing context empty (a worker, at its start)."""

    def failed(self, exc: BaseException, *, final: bool = False) -> None:
        """The handler of the current handle span raised *exc*: retried, or with
        *final* dead-lettered."""

    def start_export(
        self, batch: Sequence[Envelope[Any]], bridge: str
    ) -> tuple[list[Envelope[Any]], list[Any]]:
        """Export spans for *batch*: the envelopes to send (carrying the spans' context)
        and the spans, to pass to :meth:`end_export`."""

    def end_export(self, spans: list[Any], results: Any) -> None:
        """End the export spans with the bridge's results (None, a list, or an error)."""

    def ingest(self, topic: str, headers: dict[str, str], bridge: str, id: str) -> None:
        """An ingest span for a message arriving from *bridge*; rewrites *headers*'
        trace context in place to the span's."""


def make_tracing(tracing: Any) -> Tracing | None:
    """The bus's tracer for ``open_bus(tracing=...)``: False/None (off), True (the
    global OpenTelemetry tracer provider) or a ``TracerProvider``."""
    if tracing is None or tracing is False:
        return None
    # The core's one import circle, and a lazy one: _otel takes the header names from
    # here, and is imported only when tracing is asked for (it imports OpenTelemetry, an
    # optional extra), by which time this module is complete.
    from ._otel import OtelTracing

    return OtelTracing(None if tracing is True else tracing)
