"""W3C trace context through the bus: carried in headers, inherited by handlers' publishes.

A message's trace context is its ``traceparent`` header (and ``tracestate``, if any),
as W3C Trace Context spells them. Bridges carry headers to and from every broker, so a
trace id travels with the message from a publish through Kafka, RabbitMQ, Kinesis or
Pub/Sub to another process's bus.

Inside the bus, a message published while a handler handles a traced message carries
the handled message's context, unless the publisher gave a ``traceparent`` itself: the
worker sets :data:`CURRENT` around the handler call, and ``publish`` reads it. Both sides
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

__all__ = ["CURRENT", "TRACEPARENT", "TRACESTATE", "Tracing", "inherit", "make_tracing"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

CURRENT: ContextVar[tuple[str, str | None] | None] = ContextVar("trio_bus_trace", default=None)
"""(traceparent, tracestate) of the message the current task is handling, or None."""


def inherit(headers: dict[str, str] | None) -> dict[str, str]:
    """*headers* for a publish: with the handled message's trace context added when the
    publisher gave none (a copy then; the caller's dict is never changed)."""
    if headers is not None and TRACEPARENT in headers:
        return headers
    current = CURRENT.get()
    if current is None:
        return {} if headers is None else headers
    out = {} if headers is None else dict(headers)
    out[TRACEPARENT] = current[0]
    if current[1] is not None:
        out[TRACESTATE] = current[1]
    return out


class Tracing(Protocol):
    """What the bus calls when tracing is on (one implementation: OpenTelemetry's)."""

    def publish(
        self, bus: str, topic: str, headers: dict[str, str] | None, count: int = 1
    ) -> dict[str, str]:
        """A publish span; returns the headers to send, carrying its context."""

    def handle(self, env: Envelope[Any], subscriber: str) -> AbstractContextManager[None]:
        """A span around one handler call (retries included), current while it runs."""

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
    from ._otel import OtelTracing  # imports OpenTelemetry: only when asked

    return OtelTracing(None if tracing is True else tracing)
