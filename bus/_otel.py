"""OpenTelemetry spans for publish, handle, export and ingest (``open_bus(tracing=...)``).

Imported only when a bus is opened with tracing on; needs the ``otel`` extra
(``opentelemetry-api``; an SDK, or another implementation, to record anything). The
spans are parented through the messages' W3C ``traceparent`` headers, so one trace
follows a message through the bus and across brokers:

- ``publish <topic>`` (PRODUCER): made by ``publish``/``publish_nowait``/
  ``publish_batch`` (one span for a batch). Its parent is the ``traceparent`` the
  publisher gave, else the current OpenTelemetry context (the handle span when a
  handler publishes, or the application's own span). The message carries its context.
- ``process <topic>`` (CONSUMER): around each handler call of a subscriber, retries
  included, current while the handler runs (spans the handler makes are its children).
  A failed attempt is recorded as an exception event; a dead letter sets status ERROR.
- ``send <topic>`` (PRODUCER): per exported message, from the bridge's export call until
  the broker answered; the record sent carries its context. A rejected or failed record
  sets status ERROR.
- ``receive <topic>`` (CONSUMER): per message a bridge imports; the envelope delivered
  locally carries its context, so the handle spans of the importing bus are its children.

The propagation format is W3C Trace Context whatever global propagator the application
set, since ``traceparent``/``tracestate`` are what bridges carry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from ._envelope import Envelope
from ._errors import MissingDependencyError
from ._trace import TRACEPARENT, TRACESTATE

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "tracing=True needs OpenTelemetry: pip install 'trio-bus[otel]' "
        "(opentelemetry-api and opentelemetry-sdk)"
    ) from exc

__all__ = ["OtelTracing"]

_SYSTEM = "trio-bus"
_PROPAGATOR = TraceContextTextMapPropagator()
_replace = msgspec.structs.replace


class OtelTracing:
    """The bus's :class:`~bus._trace.Tracing` with OpenTelemetry spans."""

    def __init__(self, provider: Any = None) -> None:
        if provider is not None and not hasattr(provider, "get_tracer"):
            from ._errors import ConfigurationError

            raise ConfigurationError(
                f"tracing= takes True (the global OpenTelemetry tracer provider), False, or "
                f"a TracerProvider; got {provider!r}"
            )
        self._tracer = trace.get_tracer("trio-bus", tracer_provider=provider)

    def publish(
        self, bus: str, topic: str, headers: dict[str, str] | None, count: int = 1
    ) -> dict[str, str]:
        out = {} if headers is None else dict(headers)
        parent = _PROPAGATOR.extract(out) if TRACEPARENT in out else None
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM, "messaging.operation.type": "send",
            "messaging.destination.name": topic, "bus.name": bus,
        }
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        span = self._tracer.start_span(
            f"publish {topic}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        out.pop(TRACESTATE, None)  # the span's context replaces the parent's
        _PROPAGATOR.inject(out, context=trace.set_span_in_context(span))
        span.end()
        return out

    @contextmanager
    def handle(self, env: Envelope[Any], subscriber: str) -> Iterator[None]:
        parent = _PROPAGATOR.extract(env.headers)
        span = self._tracer.start_span(
            f"process {env.topic}", context=parent, kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": _SYSTEM, "messaging.operation.type": "process",
                "messaging.destination.name": env.topic, "messaging.message.id": env.id,
                "bus.subscriber": subscriber, "bus.attempt": env.attempt,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def detach_all(self) -> None:
        otel_context.attach(otel_context.Context())  # for the rest of this task

    def failed(self, exc: BaseException, *, final: bool = False) -> None:
        span = trace.get_current_span()
        span.record_exception(exc)
        if final:
            span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {exc!r}"))

    def start_export(
        self, batch: Sequence[Envelope[Any]], bridge: str
    ) -> tuple[list[Envelope[Any]], list[Any]]:
        sent: list[Envelope[Any]] = []
        spans: list[Any] = []
        for env in batch:
            parent = _PROPAGATOR.extract(env.headers) if TRACEPARENT in env.headers else None
            span = self._tracer.start_span(
                f"send {env.topic}", context=parent, kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": _SYSTEM, "messaging.operation.type": "send",
                    "messaging.destination.name": env.topic, "messaging.message.id": env.id,
                    "bus.bridge": bridge,
                },
            )
            headers = dict(env.headers)
            headers.pop(TRACESTATE, None)
            _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
            sent.append(_replace(env, headers=headers))
            spans.append(span)
        return sent, spans

    def end_export(self, spans: list[Any], results: Any) -> None:
        for i, span in enumerate(spans):
            error = (
                results if isinstance(results, BaseException)
                else None if results is None
                else results[i]
            )
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, repr(error)))
            span.end()

    def ingest(self, topic: str, headers: dict[str, str], bridge: str, id: str) -> None:
        parent = _PROPAGATOR.extract(headers) if TRACEPARENT in headers else None
        span = self._tracer.start_span(
            f"receive {topic}", context=parent, kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": _SYSTEM, "messaging.operation.type": "receive",
                "messaging.destination.name": topic, "messaging.message.id": id,
                "bus.bridge": bridge,
            },
        )
        headers.pop(TRACESTATE, None)
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        span.end()
