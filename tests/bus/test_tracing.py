"""W3C trace context through the bus and bridges, and OpenTelemetry spans (tracing=...).

Without OpenTelemetry: a handler's publishes inherit the handled message's
``traceparent``/``tracestate``; across a (loopback) bridge the headers travel both ways.
With it: publish, process, send and receive spans form one trace, recorded with the
SDK's in-memory exporter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bus import ConfigurationError, Envelope, RetryPolicy, open_bus
from bus.testing import LoopbackBridge, LoopbackBroker

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = int("0af7651916cd43dd8448eb211c80319c", 16)
STATE = "vendor=opaque"


class Order(msgspec.Struct):
    n: int


def trace_id(headers: dict[str, str]) -> str:
    return headers["traceparent"].split("-")[1]


async def test_a_handlers_publishes_inherit_the_handled_messages_trace_context() -> None:
    seen: dict[str, list[Envelope[Any]]] = {}
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    async with open_bus() as bus:
        for name in "abcde":
            bus.topic(name, Order)
            bus.subscribe(name, lambda env: seen.setdefault(env.topic, []).append(env))

        def on_a(env: Envelope[Order]) -> None:  # sync: publish_nowait, no headers
            bus.publish_nowait("b", Order(env.payload.n))

        async def on_b(env: Envelope[Order]) -> None:  # async: publish with other headers
            await bus.publish("c", Order(env.payload.n), headers={"tenant": "t1"})
            await bus.publish_batch("e", [Order(5), Order(6)])

        async def on_c(env: Envelope[Order]) -> None:  # its own traceparent wins
            await bus.publish("d", Order(env.payload.n), headers={"traceparent": other})

        bus.subscribe("a", on_a)
        bus.subscribe("b", on_b)
        bus.subscribe("c", on_c)
        await bus.publish("a", Order(0), headers={"traceparent": TP, "tracestate": STATE})
        await bus.drain()
        untraced = await bus.publish("a", Order(9))  # outside any handler: nothing to inherit
        await bus.drain()
    b, c, d = seen["b"][0], seen["c"][0], seen["d"][0]
    assert b.headers == {"traceparent": TP, "tracestate": STATE}
    assert c.headers == {"tenant": "t1", "traceparent": TP, "tracestate": STATE}
    assert d.headers == {"traceparent": other}  # the publisher's context, not a mix
    assert [e.headers["traceparent"] for e in seen["e"][:2]] == [TP, TP]
    # the chain of the untraced message carries no trace context
    assert untraced.headers == {}
    assert [e.payload.n for e in seen["b"]] == [0, 9]
    assert seen["b"][1].headers == {}
    assert seen["c"][1].headers == {"tenant": "t1"}
    assert seen["e"][2].headers == {}


async def test_without_trace_context_nothing_is_added_and_the_caller_dict_is_kept() -> None:
    got: list[Envelope[Any]] = []
    async with open_bus() as bus:
        bus.topic("a", Order)
        bus.topic("b", Order)
        mine = {"tenant": "t1"}

        async def relay(env: Envelope[Order]) -> None:
            got.append(await bus.publish("b", Order(1), headers=mine))

        bus.subscribe("a", relay)
        await bus.publish("a", Order(0))
        await bus.drain()
        assert got[0].headers is mine  # not copied: no trace context anywhere
        await bus.publish("a", Order(0), headers={"traceparent": TP})
        await bus.drain()
    assert got[1].headers == {"tenant": "t1", "traceparent": TP}
    assert mine == {"tenant": "t1"}  # copied, never changed


async def test_trace_context_crosses_a_bridge_and_is_inherited_on_the_other_side() -> None:
    broker = LoopbackBroker()
    seen: list[Envelope[Any]] = []
    billed = trio.Event()
    async with open_bus(name="b") as b:
        b.topic("order.created", Order)
        b.topic("order.billed", Order)

        async def bill(env: Envelope[Order]) -> None:
            await b.publish("order.billed", Order(env.payload.n))

        def record(env: Envelope[Order]) -> None:
            seen.append(env)
            billed.set()

        b.subscribe("order.created", bill)
        b.subscribe("order.billed", record)
        await b.attach(LoopbackBridge(broker, "in"), import_=["order.created"])
        async with open_bus(name="a") as a:
            a.topic("order.created", Order)
            await a.attach(LoopbackBridge(broker, "out"), export=["order.created"])
            await a.publish(
                "order.created", Order(1), headers={"traceparent": TP, "tracestate": STATE}
            )
        with trio.fail_after(10):
            await billed.wait()  # after the loopback round trip
    assert seen[0].headers["traceparent"] == TP
    assert seen[0].headers["tracestate"] == STATE


async def test_a_subscriber_made_in_a_handler_does_not_keep_that_handlers_context() -> None:
    got: list[Envelope[Any]] = []
    async with open_bus() as bus:
        for name in "abc":
            bus.topic(name, Order)
        bus.subscribe("c", got.append)

        async def relay(env: Envelope[Order]) -> None:
            await bus.publish("c", Order(env.payload.n))

        async def setup(env: Envelope[Order]) -> None:  # subscribes while handling a trace
            bus.subscribe("b", relay)

        bus.subscribe("a", setup)
        await bus.publish("a", Order(0), headers={"traceparent": TP})
        await bus.drain()
        await bus.publish("b", Order(1))  # untraced: the relay's publish stays untraced
        await bus.drain()
    assert [e.headers for e in got] == [{}]


# -- OpenTelemetry ----------------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [s for s in finished if s.name == name]
    return span


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_spans_for_publish_and_handle_form_one_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with open_bus(name="shop", tracing=provider) as bus:
        bus.topic("order.created", Order)
        bus.topic("order.billed", Order)

        async def bill(env: Envelope[Order]) -> None:
            with provider.get_tracer("app").start_as_current_span("charge"):
                await bus.publish("order.billed", Order(env.payload.n))

        bus.subscribe("order.created", bill, name="billing")
        bus.subscribe("order.billed", lambda env: None, name="ledger")
        await bus.publish("order.created", Order(1), headers={"traceparent": TP})
    done = exporter.get_finished_spans()
    names = sorted(s.name for s in done)
    assert names == [
        "charge", "process order.billed", "process order.created", "publish order.billed",
        "publish order.created",
    ]
    assert {s.context.trace_id for s in done} == {TRACE_ID}
    first = by_name(done, "publish order.created")
    handle = by_name(done, "process order.created")
    charge = by_name(done, "charge")
    second = by_name(done, "publish order.billed")
    last = by_name(done, "process order.billed")
    assert parent_of(first) == int("b7ad6b7169203331", 16)  # the publisher's traceparent
    assert parent_of(handle) == first.context.span_id
    assert parent_of(charge) == handle.context.span_id  # the handle span is current
    assert parent_of(second) == charge.context.span_id
    assert parent_of(last) == second.context.span_id
    assert (first.kind, handle.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert handle.attributes is not None
    assert handle.attributes["bus.subscriber"] == "billing"
    assert handle.attributes["messaging.destination.name"] == "order.created"


async def test_a_publish_without_context_starts_a_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    got: list[Envelope[Any]] = []
    async with open_bus(tracing=provider) as bus:
        bus.topic("a", Order)
        bus.subscribe("a", got.append)
        sent = await bus.publish("a", Order(1))
    publish = by_name(exporter.get_finished_spans(), "publish a")
    assert publish.parent is None
    assert trace_id(sent.headers) == f"{publish.context.trace_id:032x}"
    assert got[0].headers["traceparent"] == sent.headers["traceparent"]


async def test_spans_cross_a_bridge_export_and_ingest(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    broker = LoopbackBroker()
    handled = trio.Event()
    async with open_bus(name="b", tracing=provider) as b:
        b.topic("order.created", Order)
        b.subscribe("order.created", lambda env: handled.set(), name="far")
        await b.attach(LoopbackBridge(broker, "in"), import_=["order.created"])
        async with open_bus(name="a", tracing=provider) as a:
            a.topic("order.created", Order)
            await a.attach(LoopbackBridge(broker, "out"), export=["order.created"])
            await a.publish("order.created", Order(1), headers={"traceparent": TP})
        with trio.fail_after(10):
            await handled.wait()
    done = exporter.get_finished_spans()
    publish = by_name(done, "publish order.created")
    send = by_name(done, "send order.created")
    receive = by_name(done, "receive order.created")
    process = by_name(done, "process order.created")
    assert {s.context.trace_id for s in done} == {TRACE_ID}
    assert parent_of(send) == publish.context.span_id
    assert parent_of(receive) == send.context.span_id
    assert parent_of(process) == receive.context.span_id
    assert send.attributes is not None and send.attributes["bus.bridge"] == "out"
    assert receive.attributes is not None and receive.attributes["bus.bridge"] == "in"
    assert send.status.status_code is StatusCode.UNSET


async def test_a_failing_handler_records_its_errors_and_the_dead_letter(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans

    def boom(env: Envelope[Order]) -> None:
        raise ValueError(f"bad order {env.payload.n}")

    async with open_bus(tracing=provider, retry=RetryPolicy(attempts=2, base_delay=0.0)) as bus:
        bus.topic("a", Order)
        bus.subscribe("a", boom)
        await bus.publish("a", Order(7))
    process = by_name(exporter.get_finished_spans(), "process a")
    assert [e.name for e in process.events] == ["exception", "exception"]
    assert process.status.status_code is StatusCode.ERROR
    assert "bad order 7" in (process.status.description or "")


async def test_a_worker_does_not_run_in_the_span_current_when_it_was_subscribed(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with open_bus(tracing=provider) as bus:
        bus.topic("a", Order)
        bus.topic("b", Order)

        async def batch(envs: list[Envelope[Order]]) -> None:  # no process span of its own
            await bus.publish("b", Order(len(envs)))

        with provider.get_tracer("app").start_as_current_span("setup"):
            bus.subscribe("a", batch, batch=8)
        await bus.publish("a", Order(1))
    assert by_name(exporter.get_finished_spans(), "publish b").parent is None


async def test_tracing_takes_true_false_or_a_provider() -> None:
    with pytest.raises(ConfigurationError, match="TracerProvider"):
        async with open_bus(tracing="yes"):
            pass


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    done = _run(
        """
        import sys, trio
        from bus import open_bus

        async def main():
            async with open_bus() as bus:
                bus.topic("a", int)
                bus.subscribe("a", lambda env: None)
                await bus.publish("a", 1, headers={"traceparent": "00-1-2-01"})

        trio.run(main)
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_without_opentelemetry_names_the_extra() -> None:
    done = _run(
        """
        import sys, trio
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from bus import MissingDependencyError, open_bus

        async def main():
            async with open_bus(tracing=True):
                pass

        try:
            trio.run(main)
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'trio-bus[otel]'" in done.stdout
