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
from bridges.kafka import FEATURES, KafkaBridge
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


def _harness() -> Any:
    """tests/brokers/harness.py, loaded by path (tests/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "trio_bus_brokers_harness"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "brokers" / "harness.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def kafka() -> None:
    """Fail (not skip) with a clear message when Kafka is not answering."""
    why = _harness().BROKERS["kafka"].probe()
    if why is not None:
        pytest.fail(f"kafka is not answering ({why}); start it with `make brokers-up`")


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
    return [t for t in threading.enumerate() if t.name == "trio-bus-asyncio"]


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


async def test_foreign_record_without_cloudevents_imports(topic: str) -> None:
    got: list[Envelope[Order]] = []
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, got.append)
            await b.attach(KafkaBridge(SERVER, group_id=f"g-{topic}"), import_=[topic])
            await write_raw(topic, b'{"n": 9}', b"acct-1", [("h-trace", b"abc")])
            await until(lambda: len(got) == 1)
    (env,) = got
    assert env.payload == Order(9)
    assert env.key == "acct-1"
    assert env.headers["h-trace"] == "abc"
    assert env.id.startswith(f"{topic}-") and env.id.endswith("-0")  # topic-partition-offset
    assert env.source == "kafka"


async def test_too_large_record_is_dead_lettered_and_the_rest_go_through(topic: str) -> None:
    got: list[int] = []
    dead: list[Envelope[Any]] = []
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.append(e.payload.n))
            await b.attach(KafkaBridge(SERVER, name="kin", group_id=f"g-{topic}"), import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                a.subscribe(a.dead_letter_topic, dead.append)
                await a.attach(KafkaBridge(SERVER), export=[topic], batch=16)
                for i in range(5):
                    note = "x" * 1_200_000 if i == 2 else ""
                    await a.publish(topic, Order(i, note))
            await until(lambda: len(got) == 4)
    assert sorted(got) == [0, 1, 3, 4]
    (env,) = dead
    assert env.headers[H_ORIGINAL_TOPIC] == topic
    assert "MessageSizeTooLargeError" in env.headers[H_ERROR], env.headers[H_ERROR]


async def test_offsets_are_committed_only_below_what_is_done(kafka: None) -> None:
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
                await b.attach(
                    KafkaBridge(SERVER, group_id=group, commit_interval=0.1), import_=[name]
                )
                async with open_bus() as a:
                    a.topic(name, Order)
                    await a.attach(KafkaBridge(SERVER), export=[name])
                    for i in range(10):
                        await a.publish(name, Order(i))
                await until(lambda: len(handled) == 9)
                await trio.sleep(0.5)  # several commit intervals pass
                assert await committed(group, name) == 3  # record 3 (offset 3) is not done
                release.set()
                await until(lambda: len(handled) == 10)
            assert await committed(group, name) == 10
    finally:
        await delete_topics([name])


async def test_admin_and_health(kafka: None) -> None:
    name = f"kt{uuid.uuid4().hex[:10]}.admin"
    bridge = KafkaBridge(SERVER, sasl_plain_password="hunter2")
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
    assert FEATURES.max_message_bytes == 1_048_576


async def test_unreachable_broker_is_one_clear_error() -> None:
    with trio.fail_after(30):
        async with open_bus() as bus:
            with pytest.raises(BackendUnavailableError, match="kafka") as info:
                await bus.attach(KafkaBridge("127.0.0.1:1"), export=["x"], connect_timeout=5)
    assert "aiokafka" not in type(info.value).__module__
    assert not our_threads()
