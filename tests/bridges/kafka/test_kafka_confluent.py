"""ConfluentKafkaBridge (confluent-kafka) against the real Kafka on loopback: what is
its own (the tests both clients share run on each, in test_kafka.py).

Raw confluent-kafka (admin, the committed-offsets check, the CloudEvents reader) runs in
trio's worker threads, independent of the bridge.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import trio
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bridges.kafka import ConfluentKafkaBridge, _confluent_ingress
from bus import BackendUnavailableError, Envelope, open_bus
from bus.abc import H_ORIGIN

pytestmark = pytest.mark.brokers

SERVER = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")


class Order(msgspec.Struct, frozen=True):
    n: int
    note: str = ""


def _create(names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": SERVER})
    for future in admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    ).values():
        future.result(20)


def _delete(names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": SERVER})
    for future in admin.delete_topics(names).values():
        future.result(20)


def _read(topic: str, count: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": SERVER, "group.id": f"r-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        got: list[Any] = []
        for _ in range(200):
            got.extend(m for m in consumer.consume(count, 0.1) if m.error() is None)
            if len(got) >= count:
                return got
        raise TimeoutError(f"read {len(got)} of {count}")
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def kafka() -> None:
    def probe() -> None:
        Producer({"bootstrap.servers": SERVER}).list_topics(timeout=5)

    try:
        probe()
    except Exception as exc:
        pytest.fail(f"kafka is not answering ({exc}); start it with `make brokers-up`")


@pytest.fixture
async def topic(kafka: None) -> AsyncIterator[str]:
    """A fresh topic (3 partitions) with a dotted name, deleted afterwards."""
    name = f"kc{uuid.uuid4().hex[:10]}.order.created"
    await trio.to_thread.run_sync(_create, [name], 3)
    yield name
    await trio.to_thread.run_sync(_delete, [name])


async def until(check: Callable[[], bool], seconds: float = 30) -> None:
    with trio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - state filled by the broker round trip
            await trio.sleep(0.02)


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("trio-bus-")]


async def test_round_trip_with_key_headers_and_cloudevents(topic: str) -> None:
    got: list[Envelope[Order]] = []
    with trio.fail_after(60):
        async with open_bus(name="in") as b:
            b.topic(topic, Order)
            b.subscribe(topic, got.append)
            await b.attach(ConfluentKafkaBridge(SERVER, name="kin", group_id=f"g-{topic}"),
                           import_=[topic.split(".")[0] + ".#"])
            async with open_bus(name="out") as a:
                a.topic(topic, Order)
                await a.attach(ConfluentKafkaBridge(SERVER, compression_type="lz4",
                                                    linger_ms=2, retries=3),
                               export=[topic])
                for i in range(40):
                    await a.publish(topic, Order(i, "x"), key=f"k{i % 4}", headers={"n": str(i)})
            await until(lambda: len({e.payload.n for e in got}) >= 40)
        records = await trio.to_thread.run_sync(_read, topic, 40)
    env = next(e for e in got if e.payload.n == 5)
    assert env.payload == Order(5, "x")
    assert (env.key, env.headers["n"], env.headers[H_ORIGIN]) == ("k1", "5", "kin")
    assert env.source == "out"
    by_key: dict[str | None, list[int]] = {}
    for e in got:
        by_key.setdefault(e.key, []).append(e.payload.n)
    assert all(ns == sorted(ns) for ns in by_key.values())  # one key, one partition, in order
    record = next(r for r in records if r.key() == b"k1")
    event = ce_kafka.from_binary(
        ce_kafka.KafkaMessage(headers=dict(record.headers()), key=record.key(),
                              value=record.value()),
        JSONFormat(),
    )
    assert event.get_attributes()["type"] == topic
    assert event.get_attributes()["partitionkey"] == "k1"
    assert not our_threads()


async def test_unreachable_broker_is_one_clear_error_within_connect_timeout() -> None:
    with trio.fail_after(30):
        async with open_bus() as bus:
            bridge = ConfluentKafkaBridge("127.0.0.1:1", sasl_plain_username="u",
                                          sasl_plain_password="hunter2", connect_timeout=2)
            start = trio.current_time()
            with pytest.raises(BackendUnavailableError, match="kafka") as info:
                await bus.attach(bridge, export=["x"], connect_timeout=10)
            assert trio.current_time() - start < 5
    assert "confluent" not in type(info.value).__module__
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    assert not our_threads()


async def test_a_full_bus_pauses_the_consumer_which_keeps_its_group(topic: str) -> None:
    handled: list[int] = []
    bridge = ConfluentKafkaBridge(
        SERVER, name="kin", group_id=f"g-{topic}", max_poll_records=10,
        # leaves its group if consume() is not called for 6 s (the broker's minimum)
        consumer_config={"max.poll.interval.ms": 6000, "session.timeout.ms": 6000},
    )
    with trio.fail_after(60):
        async with open_bus() as a:
            a.topic(topic, Order)
            await a.attach(ConfluentKafkaBridge(SERVER), export=[topic])
            for i in range(12):
                await a.publish(topic, Order(i), key="one")  # one partition, in order
        async with open_bus() as b:
            b.topic(topic, Order)

            async def slow(env: Envelope[Order]) -> None:
                await trio.sleep(0.7)  # a batch of 10 takes 7 s: over max.poll.interval.ms
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
    real = _confluent_ingress.ConfluentConsumer._group
    failed = False

    def flaky(client: Any, messages: list[Any]) -> dict[Any, list[Any]]:
        nonlocal failed
        batch = real(client, messages)
        if batch and not failed:  # a client failure after records were fetched
            failed = True
            raise RuntimeError("injected client failure")
        return batch

    monkeypatch.setattr(_confluent_ingress.ConfluentConsumer, "_group", staticmethod(flaky))
    got: set[int] = set()
    bridge = ConfluentKafkaBridge(SERVER, name="kin", group_id=f"g-{topic}", max_poll_records=5)
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.add(e.payload.n))
            att = await b.attach(bridge, import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                await a.attach(ConfluentKafkaBridge(SERVER), export=[topic])
                for i in range(50):
                    await a.publish(topic, Order(i), key=f"k{i % 5}")
            await until(lambda: len(got) == 50)
            assert att.ingress_restarts == 1
    assert got == set(range(50))
    assert not our_threads()


async def test_a_batch_larger_than_librdkafkas_queue_waits_for_room(topic: str) -> None:
    got: set[int] = set()
    small = ConfluentKafkaBridge(SERVER, producer_config={"queue.buffering.max.messages": 8})
    with trio.fail_after(60):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, lambda e: got.add(e.payload.n))
            await b.attach(ConfluentKafkaBridge(SERVER, name="kin", group_id=f"g-{topic}"),
                           import_=[topic])
            async with open_bus() as a:
                a.topic(topic, Order)
                await a.attach(small, export=[topic], batch=64)
                for i in range(200):
                    await a.publish(topic, Order(i), key=f"k{i % 7}")
            await until(lambda: len(got) == 200)
    assert got == set(range(200))


async def test_a_setting_librdkafka_does_not_know_is_a_configuration_error() -> None:
    from bus import ConfigurationError

    bridge = ConfluentKafkaBridge("127.0.0.1:1", config={"no.such.setting": 1})
    with trio.fail_after(10), pytest.raises(ConfigurationError, match=r"no\.such\.setting"):
        await bridge.open()
    assert not our_threads()
