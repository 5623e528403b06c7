"""The RabbitMQ bridge against the real RabbitMQ on loopback (``make brokers-up``).

Each test gets its own exchange and queue names and deletes them afterwards. What the
bridge wrote is read back with plain aio-pika (run through the bridges' asyncio runtime)
and with the official ``cloudevents`` SDK; foreign messages are written the same way.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bridges._runtime import KINDS, Runtime, open_runtime
from bridges.rabbitmq import FEATURES, RabbitMQBridge
from bus import BackendUnavailableError, Envelope, open_bus
from bus.abc import H_ERROR, H_ORIGINAL_TOPIC
from bus.testing import BridgeKit, check_broker_to_broker

pytestmark = pytest.mark.brokers

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
TIMEOUT = 20


class Order(msgspec.Struct):
    id: str
    amount: int


class Raw:
    """Plain aio-pika on its own connection: what a foreign producer or consumer does."""

    def __init__(self, rt: Runtime, connection: Any, exchange: str) -> None:
        self.rt = rt
        self.connection = connection
        self.exchange = exchange
        self.queues: list[str] = []

    def unique(self, what: str) -> str:
        return f"{self.exchange}.{what}"

    async def _declare(self, queue: str, patterns: list[str]) -> None:
        import aio_pika

        async with self.connection.channel() as ch:
            ex = await ch.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            q = await ch.declare_queue(queue, durable=True)
            for p in patterns:
                await q.bind(ex, routing_key=p)

    async def declare(self, queue: str, *patterns: str) -> None:
        """A durable queue bound to *patterns* on the test's exchange (deleted at the end)."""
        self.queues.append(queue)
        await self.rt.run(self._declare, queue, list(patterns))

    async def _publish(self, routing_key: str, body: bytes, kwargs: dict[str, Any]) -> None:
        import aio_pika

        async with self.connection.channel() as ch:
            ex = await ch.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            await ex.publish(aio_pika.Message(body, **kwargs), routing_key)

    async def publish(self, routing_key: str, body: bytes, **kwargs: Any) -> None:
        await self.rt.run(self._publish, routing_key, body, kwargs)

    async def _get(self, queue: str) -> Any:
        import asyncio

        async with self.connection.channel() as ch:
            q = await ch.declare_queue(queue, passive=True)
            while True:
                msg = await q.get(no_ack=True, fail=False)
                if msg is not None:
                    return msg
                await asyncio.sleep(0.02)

    async def get(self, queue: str) -> Any:
        """The next message of *queue* (acknowledged), waiting for it."""
        with trio.fail_after(TIMEOUT):
            return await self.rt.run(self._get, queue)

    async def _counts(self, queue: str) -> tuple[int, int]:
        async with self.connection.channel() as ch:
            q = await ch.declare_queue(queue, passive=True)
            return q.declaration_result.message_count, q.declaration_result.consumer_count

    async def counts(self, queue: str) -> tuple[int, int]:
        """(ready, consumers) of *queue*; unacknowledged deliveries are not ready."""
        return await self.rt.run(self._counts, queue)

    async def _delete_queue(self, queue: str) -> None:
        async with self.connection.channel() as ch:
            await ch.queue_delete(queue)

    async def _cleanup(self) -> None:
        import asyncio

        for _ in range(100):  # after a broker restart the robust connection comes back
            try:
                async with self.connection.channel() as ch:
                    for queue in self.queues:
                        await ch.queue_delete(queue)
                    await ch.exchange_delete(self.exchange)
                return
            except Exception:
                await asyncio.sleep(0.1)


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    import aio_pika

    async with open_runtime("thread") as rt:
        connection = await rt.run(aio_pika.connect_robust, URL)
        r = Raw(rt, connection, f"test-{uuid.uuid4().hex[:10]}")
        try:
            yield r
        finally:
            with trio.CancelScope(shield=True):
                await rt.run(r._cleanup)
                await rt.run(connection.close)


def bridge(raw: Raw, name: str, **options: Any) -> RabbitMQBridge:
    b = RabbitMQBridge(URL, name=name, exchange=raw.exchange, **options)
    raw.queues.append(b.queue)
    return b


def collector(n: int) -> tuple[list[Envelope[Any]], trio.Event, Callable[[Envelope[Any]], None]]:
    got: list[Envelope[Any]] = []
    enough = trio.Event()

    def handle(env: Envelope[Any]) -> None:
        got.append(env)
        if len(got) >= n:
            enough.set()

    return got, enough, handle


@pytest.mark.parametrize("runtime", KINDS)
async def test_round_trip_bus_to_rabbitmq_to_bus(raw: Raw, runtime: str) -> None:
    got, enough, handle = collector(5)
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="b") as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle)
            await b.attach(bridge(raw, "in", runtime=runtime), import_=["order.#"])
            async with open_bus(name="a") as a:
                a.topic("order.created", Order)
                await a.attach(bridge(raw, "out", runtime=runtime), export=["order.*"])
                for i in range(5):
                    await a.publish(
                        "order.created", Order(f"o{i}", i), key=f"c{i % 2}",
                        headers={"traceparent": f"00-{i}"},
                    )
            await enough.wait()
    assert [e.payload for e in got] == [Order(f"o{i}", i) for i in range(5)]
    assert [e.key for e in got] == ["c0", "c1", "c0", "c1", "c0"]
    assert [e.headers["traceparent"] for e in got] == [f"00-{i}" for i in range(5)]
    assert all(e.topic == "order.created" and e.source == "a" for e in got)
    assert all(e.headers["x-bus-origin"] == "in" for e in got)
    assert len({e.id for e in got}) == 5


async def test_cloudevents_sdk_reads_what_the_bridge_wrote(raw: Raw) -> None:
    from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat

    queue = raw.unique("ce")
    await raw.declare(queue, "order.#")
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="shop") as a:
            a.topic("order.created", Order)
            await a.attach(bridge(raw, "out"), export=["order.*"])
            env = await a.publish(
                "order.created", Order("o1", 42), key="c1", headers={"traceparent": "00-x"}
            )
        msg = await raw.get(queue)
    assert msg.delivery_mode == 2  # persistent
    assert msg.message_id == env.id
    headers = {k: str(v) for k, v in msg.headers.items()}
    event = from_binary(RabbitMQMessage(headers, msg.content_type, msg.body), JSONFormat())
    attrs = event.get_attributes()
    assert attrs["id"] == env.id
    assert attrs["type"] == "order.created"
    assert attrs["source"] == "shop"
    assert attrs["specversion"] == "1.0"
    assert attrs["partitionkey"] == "c1"
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["time"].timestamp() == pytest.approx(env.time, abs=1e-3)
    assert event.get_data() == {"id": "o1", "amount": 42}
    assert headers["traceparent"] == "00-x"


async def test_foreign_message_without_cloudevents_headers_imports(raw: Raw) -> None:
    got, enough, handle = collector(2)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic("payment.done", Order)
            b.subscribe("payment.#", handle)
            await b.attach(bridge(raw, "in"), import_=["payment.#"])
            await raw.publish("payment.done", b'{"id":"p1","amount":7}', message_id="ext-1")
            await raw.publish(
                "payment.done", b'{"id":"p2","amount":8}', headers={"tenant": "t1", "n": 3}
            )
            await enough.wait()
    assert [e.payload for e in got] == [Order("p1", 7), Order("p2", 8)]
    assert got[0].id == "ext-1" and got[0].key is None
    assert got[1].id and got[1].id != "ext-1"
    assert got[1].headers["tenant"] == "t1" and got[1].headers["n"] == "3"


async def test_unroutable_message_is_dead_lettered_others_delivered(raw: Raw) -> None:
    queue = raw.unique("ok-only")
    await raw.declare(queue, "order.ok")
    dead, dead_enough, on_dead = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as a:
            a.topic("order.ok", Order)
            a.topic("order.lost", Order)
            a.subscribe(a.dead_letter_topic, on_dead)
            await a.attach(bridge(raw, "out"), export=["order.*"])
            await a.publish("order.ok", Order("o1", 1))
            await a.publish("order.lost", Order("o2", 2))
            await a.publish("order.ok", Order("o3", 3))
            await dead_enough.wait()
        first, second = await raw.get(queue), await raw.get(queue)
    assert (first.body, second.body) == (b'{"id":"o1","amount":1}', b'{"id":"o3","amount":3}')
    assert len(dead) == 1
    assert dead[0].headers[H_ORIGINAL_TOPIC] == "order.lost"
    assert "unroutable" in dead[0].headers[H_ERROR]
    assert await raw.counts(queue) == (0, 0)


async def test_too_large_message_is_rejected_before_sending(raw: Raw) -> None:
    queue = raw.unique("all")
    await raw.declare(queue, "order.#")
    dead, dead_enough, on_dead = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as a:
            a.topic("order.created", Order)
            a.subscribe(a.dead_letter_topic, on_dead)
            await a.attach(bridge(raw, "out", max_message_bytes=40), export=["order.*"])
            await a.publish("order.created", Order("small", 1))
            await a.publish("order.created", Order("x" * 100, 2))
            await dead_enough.wait()
        assert (await raw.get(queue)).body == b'{"id":"small","amount":1}'
    assert "exceeds" in dead[0].headers[H_ERROR]
    assert await raw.counts(queue) == (0, 0)


@pytest.mark.parametrize("runtime", KINDS)
async def test_acked_only_when_done_and_redelivered_after_exit(raw: Raw, runtime: str) -> None:
    started = trio.Event()

    async def stuck(env: Envelope[Any]) -> None:
        started.set()
        await trio.sleep_forever()

    queue = f"{raw.exchange}.in"
    with trio.fail_after(TIMEOUT):
        async with open_bus(drain_timeout=0.5) as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", stuck)
            await b.attach(bridge(raw, "in", runtime=runtime), import_=["order.#"])
            await raw.publish("order.created", b'{"id":"o1","amount":1}', message_id="m1")
            await started.wait()
            # Delivered to the handler, not done: the broker holds it unacknowledged.
            assert await raw.counts(queue) == (0, 1)
        # The bus left without handling it: never acknowledged, so back in the queue.
        assert await raw.counts(queue) == (1, 0)
        got, enough, handle = collector(1)
        async with open_bus() as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle)
            await b.attach(bridge(raw, "in", runtime=runtime), import_=["order.#"])
            await enough.wait()
        assert await raw.counts(queue) == (0, 0)  # done this time: acknowledged
    assert got[0].id == "m1" and got[0].payload == Order("o1", 1)


@pytest.mark.parametrize("runtime", KINDS)
async def test_many_concurrent_completions_are_all_acknowledged(raw: Raw, runtime: str) -> None:
    # Handlers finish out of order (concurrency, random sleeps): acks mix multiple=True
    # over the done prefix with single ones; a wrong one would close the channel.
    n = 300
    got, enough, handle_sync = collector(n)

    async def handle(env: Envelope[Any]) -> None:
        await trio.sleep((hash(env.id) % 7) / 1000)
        handle_sync(env)

    queue = f"{raw.exchange}.in"
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="b") as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle, concurrency=8)
            await b.attach(bridge(raw, "in", prefetch=64, runtime=runtime), import_=["order.#"])
            async with open_bus(name="a") as a:
                a.topic("order.created", Order)
                await a.attach(bridge(raw, "out", runtime=runtime), export=["order.*"])
                for i in range(n):
                    await a.publish("order.created", Order(f"o{i}", i), key=f"k{i % 16}")
            await enough.wait()
        assert await raw.counts(queue) == (0, 0)
    assert sorted(e.payload.amount for e in got) == list(range(n))


async def test_queue_deleted_under_the_consumer_is_declared_again(raw: Raw) -> None:
    # The broker cancels our consumer; aio-pika's robust channel then recovers the
    # connection (after its reconnect interval) and declares the queue and consumes anew.
    got: list[Envelope[Any]] = []
    back = trio.Event()

    def handle(env: Envelope[Any]) -> None:
        got.append(env)
        back.set()

    inbound = bridge(raw, "in")
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle)
            await b.attach(inbound, import_=["order.#"])
            await raw.rt.run(raw._delete_queue, inbound.queue)
            while not back.is_set():  # dropped (unroutable) until the queue is back
                await raw.publish("order.created", b'{"id":"o1","amount":1}')
                with trio.move_on_after(0.1):
                    await back.wait()
    assert got[0].payload == Order("o1", 1)


async def test_admin_and_health(raw: Raw) -> None:
    b = bridge(raw, "adm")
    assert not await b.health()  # not open
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            bus.topic("order.created", Order)
            await bus.attach(b, export=["order.*"])
            assert await b.health()
            await b.create_topic("order.created")
            assert await b.list_topics() == ["order.created"]
            await bus.publish("order.created", Order("o1", 1))
            await bus.drain()
            assert await b.queue_counts() == (1, 0)  # bound: kept for a consumer
            await b.delete_topic("order.created")
            await b.delete_topic("never.bound")  # not an error
            await b.delete_topic("x", queue=raw.unique("no-such-queue"))  # nor this
            assert await b.list_topics() == []
    assert not await b.health()  # closed


async def test_unreachable_broker_and_password_never_shown() -> None:
    secret = "hunter2-" + uuid.uuid4().hex[:6]
    b = RabbitMQBridge(f"amqp://guest:{secret}@127.0.0.1:1/", name="down", connect_timeout=2)
    assert secret not in repr(b) and "***" in repr(b)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            with pytest.raises(BackendUnavailableError) as info:
                await bus.attach(b, export=["order.*"])
    text = str(info.value) + repr(info.value)
    assert secret not in text and "down" in text
    cause: BaseException | None = info.value
    while cause is not None:
        assert secret not in str(cause)
        cause = cause.__cause__ or cause.__context__


async def test_wrong_password_is_a_backend_error_without_the_password() -> None:
    from bus import BackendError

    secret = "wrong-" + uuid.uuid4().hex[:6]
    url = urllib.parse.urlsplit(URL)  # the harness's broker, whatever its port
    wrong = url._replace(netloc=f"{url.username}:{secret}@{url.hostname}:{url.port}")
    b = RabbitMQBridge(urllib.parse.urlunsplit(wrong), name="auth")
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            with pytest.raises(BackendError) as info:
                await bus.attach(b, export=["order.*"])
    assert "login refused" in str(info.value) and secret not in str(info.value)


def test_features_record() -> None:
    assert FEATURES.persistent and FEATURES.redelivery and FEATURES.consumer_groups
    b = RabbitMQBridge(URL, delivery_mode=1)
    assert not b.features.persistent and b.queue == "trio-bus.rabbitmq"
    assert RabbitMQBridge(URL, group="g").queue == "trio-bus.g"


HARNESS = Path(__file__).parents[2] / "brokers" / "harness.py"


@pytest.mark.timeout(120)  # the bound below, not conftest's 60 s default, is the test's
async def test_broker_restart_mid_stream_loses_nothing(raw: Raw) -> None:
    # Export keeps publishing while RabbitMQ restarts: failed publishes are retried by
    # the bus, the robust connection comes back, the durable queue kept what it had,
    # unacknowledged deliveries are redelivered. Duplicates are allowed, loss is not.
    n = 200
    seen: list[str] = []
    all_seen = trio.Event()

    def handle(env: Envelope[Any]) -> None:
        seen.append(env.payload.id)
        if len(set(seen)) == n:
            all_seen.set()

    with trio.fail_after(100):
        async with open_bus(name="b") as b:
            b.topic("order.created", Order)
            b.subscribe("order.*", handle)
            inbound = bridge(raw, "in")
            await b.attach(inbound, import_=["order.#"])
            # Drained for as long as it takes (the test's bound is fail_after above): the
            # export retries with backoff up to 10 s and aio-pika reconnects every 5 s, so
            # the default 10 s drain could give up on messages the broker takes back.
            async with open_bus(name="a", drain_timeout=None) as a, trio.open_nursery() as nursery:
                a.topic("order.created", Order)
                await a.attach(bridge(raw, "out"), export=["order.*"], batch=16)
                restarted = trio.Event()

                async def restart() -> None:
                    await trio.run_process(
                        [sys.executable, str(HARNESS), "restart", "rabbitmq"],
                        capture_stdout=True, capture_stderr=True,
                    )
                    restarted.set()

                for i in range(n):
                    await a.publish("order.created", Order(f"o{i}", i))
                    if i == n // 3:
                        nursery.start_soon(restart)  # publishing goes on meanwhile
                    await trio.sleep(0.02)
                await restarted.wait()
            await all_seen.wait()
            assert await inbound.health()
    assert set(seen) == {f"o{i}" for i in range(n)}
    print(f"duplicates after the restart: {len(seen) - n}")


def _kafka_kit() -> BridgeKit:
    from bridges.kafka import FEATURES as KAFKA_FEATURES
    from bridges.kafka import KafkaBridge

    server = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")

    async def prepare(topics: list[str]) -> None:
        admin = KafkaBridge(server, name="kit-admin")
        await admin.open()
        try:
            for topic in topics:
                await admin.create_topic(topic, partitions=2)
        finally:
            await admin.aclose()

    return BridgeKit(
        name="kafka", features=KAFKA_FEATURES, prepare=prepare, settle=1.0,
        make=lambda name, group: KafkaBridge(server, name=name, group_id=group),
    )


def _rabbitmq_kit(raw: Raw) -> BridgeKit:
    return BridgeKit(
        name="rabbitmq", features=FEATURES, make=lambda name, group: bridge(raw, name, group=group)
    )


async def test_kafka_to_rabbitmq_and_back_through_one_bus(raw: Raw) -> None:
    # One bus imports from one broker and exports to the other: every message arrives
    # once, none is echoed back to where it came from (bus.testing's broker -> broker).
    with trio.fail_after(120):
        await check_broker_to_broker(_kafka_kit(), _rabbitmq_kit(raw))
        await check_broker_to_broker(_rabbitmq_kit(raw), _kafka_kit())
