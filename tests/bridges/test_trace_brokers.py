"""One trace id survives bus -> Kafka -> bus -> RabbitMQ -> bus, with the real brokers.

Three buses in one process: ``shop`` exports to Kafka; ``relay`` imports from Kafka,
mirrors what it imports to RabbitMQ and, in a handler, publishes a follow-up message
(also exported to RabbitMQ); ``ledger`` imports both from RabbitMQ. Without
OpenTelemetry the ``traceparent`` the shop published with reaches the ledger on both
messages; with it (``tracing=`` an SDK provider with the in-memory exporter) every span
of the three buses belongs to the shop's trace and the parent links follow the path.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridges._runtime import open_runtime
from bridges.kafka import KafkaBridge
from bridges.rabbitmq import RabbitMQBridge
from bus import Envelope, open_bus

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(120)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = f"00-{TRACE}-00f067aa0ba902b7-01"
STATE = "vendor=opaque"


class Order(msgspec.Struct):
    n: int


class Names:
    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:10]
        self.order = f"tr{uid}.order.created"  # Kafka, then mirrored to RabbitMQ
        self.billed = f"tr{uid}.order.billed"  # published by the relay's handler
        self.exchange = f"trace-{uid}"


@pytest.fixture
async def names(brokers: Any) -> AsyncIterator[Names]:
    brokers.require("kafka")
    brokers.require("rabbitmq")
    n = Names()
    admin = KafkaBridge(brokers.env("KAFKA_SERVER"), name="admin")
    await admin.open()
    try:
        await admin.create_topic(n.order, partitions=1)
        yield n
        with trio.CancelScope(shield=True):
            await admin.delete_topic(n.order)
    finally:
        with trio.CancelScope(shield=True):
            await admin.aclose()
            await _delete_exchange(brokers.env("RABBITMQ_URL"), n.exchange, [f"{n.exchange}.in"])


async def _delete_exchange(url: str, exchange: str, queues: list[str]) -> None:
    import aio_pika

    async def delete(connection: Any) -> None:
        async with connection.channel() as ch:
            for queue in queues:
                await ch.queue_delete(queue)
            await ch.exchange_delete(exchange)

    async with open_runtime("thread") as rt:
        connection = await rt.run(aio_pika.connect_robust, url)
        try:
            await rt.run(delete, connection)
        finally:
            await rt.run(connection.close)


async def three_buses(
    brokers: Any, n: Names, tracing: Any, headers: dict[str, str] | None,
    publish: Any = None,
) -> list[Envelope[Any]]:
    """Run shop -> Kafka -> relay -> RabbitMQ -> ledger; the ledger's envelopes."""
    kafka, amqp = brokers.env("KAFKA_SERVER"), brokers.env("RABBITMQ_URL")
    got: list[Envelope[Any]] = []
    async with open_bus(name="ledger", tracing=tracing) as ledger:
        ledger.topic(n.order, Order)
        ledger.topic(n.billed, Order)
        ledger.subscribe(n.order, got.append, name="ledger-orders")
        ledger.subscribe(n.billed, got.append, name="ledger-billed")
        await ledger.attach(
            RabbitMQBridge(amqp, name="in", exchange=n.exchange), import_=[f"{n.order[:12]}.#"]
        )
        async with open_bus(name="relay", tracing=tracing) as relay:
            relay.topic(n.order, Order)
            relay.topic(n.billed, Order)

            async def bill(env: Envelope[Order]) -> None:
                await relay.publish(n.billed, Order(env.payload.n))  # inherits the trace

            relay.subscribe(n.order, bill, name="billing")
            await relay.attach(
                RabbitMQBridge(amqp, name="out", exchange=n.exchange),
                export=[f"{n.order[:12]}.#"],
            )
            await relay.attach(
                KafkaBridge(kafka, name="kin", group_id=f"g-{n.order}"), import_=[n.order]
            )
            async with open_bus(name="shop", tracing=tracing) as shop:
                shop.topic(n.order, Order)
                await shop.attach(KafkaBridge(kafka, name="kout"), export=[n.order])
                if publish is None:
                    await shop.publish(n.order, Order(1), headers=headers, confirm=True)
                else:
                    await publish(shop)
            with trio.fail_after(60):
                while len(got) < 2:  # noqa: ASYNC110 - filled through both brokers
                    await trio.sleep(0.05)
    return got


async def test_a_trace_id_survives_kafka_then_rabbitmq(brokers: Any, names: Names) -> None:
    got = await three_buses(brokers, names, False, {"traceparent": TP, "tracestate": STATE})
    by_topic = {e.topic: e for e in got}
    mirrored, followup = by_topic[names.order], by_topic[names.billed]
    assert mirrored.source == "shop" and followup.source == "relay"
    for env in (mirrored, followup):
        assert env.headers["traceparent"] == TP
        assert env.headers["tracestate"] == STATE
        assert env.headers["x-bus-origin"] == "in"


async def test_the_spans_of_three_buses_form_one_trace(brokers: Any, names: Names) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def publish(shop: Any) -> None:
        with provider.get_tracer("app").start_as_current_span("checkout"):
            await shop.publish(names.order, Order(1), confirm=True)

    got = await three_buses(brokers, names, provider, None, publish)
    spans = exporter.get_finished_spans()
    checkout = one(spans, "checkout")
    trace_id = checkout.context.trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert {e.headers["traceparent"].split("-")[1] for e in got} == {f"{trace_id:032x}"}

    def child(parent: ReadableSpan, name: str, bridge: str | None = None) -> ReadableSpan:
        found = [
            s for s in spans
            if s.name == name and s.parent is not None
            and s.parent.span_id == parent.context.span_id
            and (bridge is None or (s.attributes or {}).get("bus.bridge") == bridge)
        ]
        assert len(found) == 1, (name, [s.name for s in spans])
        return found[0]

    o, b = names.order, names.billed
    # shop: publish -> send to Kafka; relay: receive -> process -> publish -> send to RabbitMQ
    kafka_in = child(child(child(checkout, f"publish {o}"), f"send {o}", "kout"),
                     f"receive {o}", "kin")
    billing = child(kafka_in, f"process {o}")
    billed_out = child(child(billing, f"publish {b}"), f"send {b}", "out")
    mirrored_out = child(kafka_in, f"send {o}", "out")  # the mirror, straight from ingest
    # ledger: receive from RabbitMQ -> process, for both messages
    child(child(billed_out, f"receive {b}", "in"), f"process {b}")
    child(child(mirrored_out, f"receive {o}", "in"), f"process {o}")


def one(spans: Any, name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span
