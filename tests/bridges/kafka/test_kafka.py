"""The Kafka bridge against the real Kafka on loopback (tests/brokers/harness.py).

Raw aiokafka (the "foreign producer", the CloudEvents reader, the offsets check) runs in
plain asyncio in a worker thread, independent of the bridge's runtime.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import pytest
import trio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from bridges import KINDS
from bridges.kafka import FEATURES, ConfluentKafkaBridge, KafkaBridge
from bus import BackendUnavailableError, Envelope, open_bus
from bus.abc import H_ERROR, H_ORIGIN, H_ORIGINAL_TOPIC

pytestmark = pytest.mark.brokers

SERVER = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")
T = TypeVar("T")


class Order(msgspec.Struct, frozen=True):
    n: int
    note: str = ""


async def in_asyncio(fn: Callable[[], Awaitable[T]]) -> T:
    """Run fn() in plain asyncio (its own loop, in a worker thread)."""

    def main() -> T:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(fn())  # type: ignore[arg-type]

    return await trio.to_thread.run_sync(main)


async def _admin(work: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    async def run() -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=SERVER)
        await admin.start()
        try:
            return await work(admin)
        finally:
            await admin.close()

    return await in_asyncio(run)


async def create_topics(names: list[str], partitions: int = 1) -> None:
    async def work(admin: AIOKafkaAdminClient) -> None:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
        async with asyncio.timeout(20):
            while not set(names) <= set(await admin.list_topics()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    await _admin(work)


async def delete_topics(names: list[str]) -> None:
    async def work(admin: AIOKafkaAdminClient) -> None:
        await admin.delete_topics(names)

    await _admin(work)


async def committed(group: str, topic: str) -> int | None:
    async def work(admin: AIOKafkaAdminClient) -> int | None:
        offsets = await admin.list_consumer_group_offsets(group)
        meta = offsets.get(TopicPartition(topic, 0))
        return None if meta is None or meta.offset < 0 else int(meta.offset)

    return await _admin(work)


async def read_raw(topic: str, count: int) -> list[Any]:
    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=SERVER, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            got: list[Any] = []
            async with asyncio.timeout(20):
                while len(got) < count:
                    batch = await consumer.getmany(timeout_ms=200)
                    for records in batch.values():
                        got.extend(records)
            return got
        finally:
            await consumer.stop()

    return await in_asyncio(run)


async def write_raw(topic: str, value: bytes, key: bytes | None, headers: list[Any]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=SERVER)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    await in_asyncio(run)


@pytest.fixture(scope="session")
def kafka(brokers: Any) -> None:
    """Fail (not skip) with a clear message when Kafka is not answering."""
    brokers.require("kafka")


@pytest.fixture
async def topic(kafka: None) -> AsyncIterator[str]:
    """A fresh topic (3 partitions) with a dotted name, deleted afterwards."""
    name = f"kt{uuid.uuid4().hex[:10]}.order.created"
    await create_topics([name], partitions=3)
    yield name
    await delete_topics([name])


async def until(check: Callable[[], bool], seconds: float = 30) -> None:
    with trio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - state filled by the broker round trip
            await trio.sleep(0.02)


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("trio-bus-")]


# The tests that say the same of both clients run once per client.
CLIENTS = pytest.mark.parametrize(
    "client", [KafkaBridge, ConfluentKafkaBridge], ids=["aiokafka", "confluent"]
)
TOO_LARGE = {KafkaBridge: "MessageSizeTooLargeError", ConfluentKafkaBridge: "MSG_SIZE_TOO_LARGE"}


@pytest.mark.parametrize("kind", KINDS)
async def test_round_trip_with_key_headers_and_typed_payload(topic: str, kind: str) -> None:
    got: list[Envelope[Order]] = []
    with trio.fail_after(60):
        async with open_bus(name="in") as b:
            b.topic(topic, Order)
            b.subscribe(topic, got.append)
            await b.attach(
                KafkaBridge(SERVER, name="kin", group_id=f"g-{topic}", runtime=kind),  # type: ignore[arg-type]
                import_=[topic.split(".")[0] + ".#"],
            )
            async with open_bus(name="out") as a:
                a.topic(topic, Order)
                await a.attach(KafkaBridge(SERVER, runtime=kind), export=[topic])  # type: ignore[arg-type]
                for i in range(40):
                    await a.publish(topic, Order(i, "x"), key=f"k{i % 4}", headers={"n": str(i)})
            await until(lambda: len({e.payload.n for e in got}) >= 40)
    env = next(e for e in got if e.payload.n == 5)
    assert env.payload == Order(5, "x")
    assert (env.key, env.headers["n"], env.headers[H_ORIGIN]) == ("k1", "5", "kin")
    assert env.source == "out"
    by_key: dict[str | None, list[int]] = {}
    for e in got:
        by_key.setdefault(e.key, []).append(e.payload.n)
    assert all(ns == sorted(ns) for ns in by_key.values())  # one key, one partition, in order
    assert not our_threads()


async def test_the_seeds_producer_options_round_trip(topic: str) -> None:
    """The seed's production settings: acks, retries, batch_size, snappy compression."""
    got: list[int] = []
    bridge = KafkaBridge(SERVER, acks="all", retries=3, batch_size=16384,
                         compression_type="snappy", linger_ms=5, client_id="seed")
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.append(e.payload.n))
            await b.attach(KafkaBridge(SERVER, name="kin", group_id=f"g-{topic}"), import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                await a.attach(bridge, export=[topic])
                for i in range(20):
                    await a.publish(topic, Order(i, "z" * 500), key=f"k{i % 3}")
            await until(lambda: len(got) == 20)
    assert sorted(got) == list(range(20))


async def test_what_we_write_is_read_by_the_cloudevents_sdk(topic: str) -> None:
    with trio.fail_after(60):
        async with open_bus(name="shop") as a:
            a.topic(topic, Order)
            await a.attach(KafkaBridge(SERVER), export=[topic])
            env = await a.publish(topic, Order(1), key="c-7", headers={"traceparent": "00-1-2-01"},
                                  confirm=True)
        (record,) = await read_raw(topic, 1)
    message = ce_kafka.KafkaMessage(
        headers=dict(record.headers), key=record.key, value=record.value
    )
    event = ce_kafka.from_binary(message, JSONFormat())
    attrs = event.get_attributes()
    assert (attrs["id"], attrs["type"], attrs["source"]) == (env.id, topic, "shop")
    assert attrs["partitionkey"] == "c-7"
    assert attrs["datacontenttype"] == "application/json"
    assert event.get_data() == {"n": 1, "note": ""}
    assert dict(record.headers)["traceparent"] == b"00-1-2-01"


@CLIENTS
async def test_foreign_record_without_cloudevents_imports(topic: str, client: type) -> None:
    got: list[Envelope[Order]] = []
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, got.append)
            await b.attach(client(SERVER, group_id=f"g-{topic}"), import_=[topic])
            await write_raw(topic, b'{"n": 9}', b"acct-1", [("h-trace", b"abc")])
            await until(lambda: len(got) == 1)
    (env,) = got
    assert env.payload == Order(9)
    assert env.key == "acct-1"
    assert env.headers["h-trace"] == "abc"
    assert env.id.startswith(f"{topic}-") and env.id.endswith("-0")  # topic-partition-offset
    assert env.source == "kafka"


@CLIENTS
async def test_a_wildcard_import_finds_a_topic_created_after_it_started(
    kafka: None, client: type
) -> None:
    # The clients refresh their metadata every 5 minutes by default: a topic created
    # after the consumer subscribed was not imported for that long (issue 19, item 1).
    prefix = f"kp{uuid.uuid4().hex[:10]}"
    first, later = f"{prefix}.first", f"{prefix}.later"
    await create_topics([first])
    got: list[Envelope[Order]] = []
    try:
        with trio.fail_after(60):
            async with open_bus() as b:
                b.topic(first, Order)
                b.topic(later, Order)
                b.subscribe(f"{prefix}.*", got.append)
                await b.attach(
                    client(SERVER, group_id=f"g-{prefix}", auto_offset_reset="earliest"),
                    import_=[f"{prefix}.*"],
                )
                await write_raw(first, b'{"n": 1}', None, [])
                await until(lambda: len(got) == 1)  # the consumer is in its group
                await create_topics([later])
                await write_raw(later, b'{"n": 2}', None, [])
                await until(lambda: len(got) == 2)
    finally:
        await delete_topics([first, later])
    assert [(e.topic, e.payload.n) for e in got] == [(first, 1), (later, 2)]


@CLIENTS
async def test_too_large_record_is_dead_lettered_and_the_rest_go_through(
    topic: str, client: type
) -> None:
    got: list[int] = []
    dead: list[Envelope[Any]] = []
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.append(e.payload.n))
            await b.attach(client(SERVER, name="kin", group_id=f"g-{topic}"), import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                a.subscribe(a.dead_letter_topic, dead.append)
                await a.attach(client(SERVER), export=[topic], batch=16)
                for i in range(5):
                    note = "x" * 1_200_000 if i == 2 else ""
                    await a.publish(topic, Order(i, note))
            await until(lambda: len(got) == 4)
    assert sorted(got) == [0, 1, 3, 4]
    (env,) = dead
    assert env.headers[H_ORIGINAL_TOPIC] == topic
    assert TOO_LARGE[client] in env.headers[H_ERROR], env.headers[H_ERROR]


@CLIENTS
async def test_offsets_are_committed_only_below_what_is_done(kafka: None, client: type) -> None:
    name = f"kt{uuid.uuid4().hex[:10]}.single"
    group = f"g-{name}"
    await create_topics([name], partitions=1)
    release = trio.Event()
    handled: list[int] = []
    try:
        with trio.fail_after(60):
            async with open_bus() as b:
                b.topic(name, Order)

                async def handle(env: Envelope[Order]) -> None:
                    if env.payload.n == 3:
                        await release.wait()
                    handled.append(env.payload.n)

                b.subscribe(name, handle, concurrency=10)  # no key: one lane each
                await b.attach(client(SERVER, group_id=group, commit_interval=0.1),
                               import_=[name])
                async with open_bus() as a:
                    a.topic(name, Order)
                    await a.attach(client(SERVER), export=[name])
                    for i in range(10):
                        await a.publish(name, Order(i))
                await until(lambda: len(handled) == 9)
                # a commit is asynchronous to consuming (librdkafka took 5-500 ms here)
                with trio.fail_after(10):
                    while await committed(group, name) != 3:  # noqa: ASYNC110 - broker state
                        await trio.sleep(0.05)
                await trio.sleep(0.5)  # several commit intervals pass: nothing beyond 3
                assert await committed(group, name) == 3  # record 3 (offset 3) is not done
                release.set()
                await until(lambda: len(handled) == 10)
            assert await committed(group, name) == 10
    finally:
        await delete_topics([name])


@CLIENTS
async def test_admin_and_health(kafka: None, client: type) -> None:
    name = f"kt{uuid.uuid4().hex[:10]}.admin"
    bridge = client(SERVER, sasl_plain_password="hunter2")
    assert "hunter2" not in repr(bridge)
    with trio.fail_after(60):
        async with open_bus() as bus:
            await bus.attach(bridge, export=["nothing"])
            assert await bridge.health()
            await bridge.create_topic(name, partitions=2)
            await bridge.create_topic(name, partitions=2)  # idempotent
            assert name in await bridge.list_topics()
            await bridge.delete_topic(name)
            await bridge.delete_topic(name)  # missing is fine
            with trio.fail_after(20):
                while name in await bridge.list_topics():  # noqa: ASYNC110 - broker state
                    await trio.sleep(0.1)
        assert not await bridge.health()  # closed
    assert not our_threads()
    assert FEATURES.max_message_bytes == 1_048_576


async def test_unreachable_broker_is_one_clear_error() -> None:
    with trio.fail_after(30):
        async with open_bus() as bus:
            bridge = KafkaBridge("127.0.0.1:1", sasl_plain_username="u",
                                 sasl_plain_password="hunter2")
            with pytest.raises(BackendUnavailableError, match="kafka") as info:
                await bus.attach(bridge, export=["x"], connect_timeout=5)
    assert "aiokafka" not in type(info.value).__module__
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    assert not our_threads()


async def test_a_full_bus_pauses_the_consumer_which_keeps_its_group(topic: str) -> None:
    handled: list[int] = []
    bridge = KafkaBridge(
        SERVER, name="kin", group_id=f"g-{topic}", max_poll_records=10,
        # evicted if it stops polling for 1 s (checked at each heartbeat)
        consumer_options={"max_poll_interval_ms": 1000, "heartbeat_interval_ms": 200},
    )
    with trio.fail_after(60):
        async with open_bus() as a:
            a.topic(topic, Order)
            await a.attach(KafkaBridge(SERVER), export=[topic])
            for i in range(12):
                await a.publish(topic, Order(i), key="one")  # one partition, in order
        async with open_bus() as b:
            b.topic(topic, Order)

            async def slow(env: Envelope[Order]) -> None:
                await trio.sleep(0.3)  # a batch of 10 takes 3 s: over max_poll_interval
                handled.append(env.payload.n)

            b.subscribe(topic, slow, capacity=1)
            await b.attach(bridge, import_=[topic])
            await until(lambda: len(handled) >= 12)
            await trio.sleep(1.5)  # a redelivery after an eviction would arrive by now
            consumer = bridge._consumer
            assert consumer is not None and consumer.pauses > 0
    assert handled == list(range(12))  # no eviction, so no redelivery


async def test_ingress_that_fails_restarts_with_a_new_consumer_and_loses_nothing(
    topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridges.kafka import _client

    real_poll = _client.poll
    failed = False

    async def flaky_poll(consumer: Any, timeout_ms: int, max_records: int) -> Any:
        nonlocal failed
        batch = await real_poll(consumer, timeout_ms, max_records)
        if batch and not failed:  # a client failure after records were fetched
            failed = True
            raise RuntimeError("injected client failure")
        return batch

    monkeypatch.setattr(_client, "poll", flaky_poll)
    got: set[int] = set()
    bridge = KafkaBridge(SERVER, name="kin", group_id=f"g-{topic}", max_poll_records=5)
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.add(e.payload.n))
            att = await b.attach(bridge, import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                await a.attach(KafkaBridge(SERVER), export=[topic])
                for i in range(50):
                    await a.publish(topic, Order(i), key=f"k{i % 5}")
            await until(lambda: len(got) == 50)
            assert att.ingress_restarts == 1
    assert got == set(range(50))
    assert not our_threads()


class Opaque:
    """A class msgspec cannot describe: the bus accepts it locally, JSON cannot carry it."""


async def test_a_payload_that_cannot_be_encoded_is_dead_lettered_alone(topic: str) -> None:
    other = topic.rsplit(".", 1)[0] + ".opaque"
    got: list[int] = []
    dead: list[Envelope[Any]] = []
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.append(e.payload.n))
            await b.attach(KafkaBridge(SERVER, name="kin", group_id=f"g-{topic}"), import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                a.topic(other, Opaque)
                a.subscribe(a.dead_letter_topic, dead.append)
                await a.attach(KafkaBridge(SERVER), export=[topic.split(".")[0] + ".#"])
                await a.publish(topic, Order(1))
                await a.publish(other, Opaque())
                await a.publish(topic, Order(2))
            await until(lambda: sorted(got) == [1, 2])
    (env,) = dead
    assert env.headers[H_ORIGINAL_TOPIC] == other
    assert "cannot encode" in env.headers[H_ERROR]
    await delete_topics([other])
