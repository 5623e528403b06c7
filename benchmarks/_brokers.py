"""What the broker benchmark cases share: addresses, names, the wire form, a fresh loop.

Every case talks to the real servers on loopback (``KAFKA_SERVER``, ``RABBITMQ_URL``, the
harness's ``make brokers-env``); each round uses its own topic, exchange and queue, named
``bench-<random>`` and deleted afterwards (Kafka topics all at once at the end of the run,
:func:`kafka_cleanup`), so rounds and concurrent runs never share state. This module
does not measure anything itself.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

from ._messages import Reading, reading

T = TypeVar("T")

KAFKA = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

PARTITIONS = 4
BATCH = 256
"""Messages per egress batch (the bus's ``attach(batch=...)``) and per gather in the raw
clients: the same number of records in flight for everyone."""
PREFETCH = 512
"""AMQP prefetch for every RabbitMQ consumer."""
MAX_RECORDS = 500
"""Records per Kafka poll for every consumer (aiokafka's getmany, confluent's consume)."""
BUS_TOPIC = "bench.reading"
SOURCE = "bench"

_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Reading)


def encode(obj: Reading) -> bytes:
    return _encode(obj)


def decode(data: bytes) -> Reading:
    return _decoder.decode(data)


def message(n: int) -> tuple[Reading, bytes]:
    """Message *n*, stamped now, and its JSON."""
    obj = reading(n, time.time_ns())
    return obj, _encode(obj)


def unique(prefix: str = "bench") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ce_time(seconds: float) -> str:
    """RFC 3339 UTC, as the bridges write ``ce_time``."""
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).isoformat().replace("+00:00", "Z")


def kafka_headers(n: int, topic: str = BUS_TOPIC) -> list[tuple[str, str | bytes | None]]:
    """CloudEvents binary-mode headers (Kafka binding) like the bridge writes per record."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"{n:x}".encode()),
        ("ce_source", SOURCE.encode()),
        ("ce_type", topic.encode()),
        ("ce_time", ce_time(time.time()).encode()),
        ("ce_deliveryattempt", b"1"),
        ("content-type", b"application/json"),
    ]


def amqp_headers(n: int, key: str, topic: str = BUS_TOPIC) -> dict[str, str]:
    """CloudEvents ``ce-`` headers (AMQP binding) like the RabbitMQ bridge writes."""
    return {
        "ce-specversion": "1.0",
        "ce-id": f"{n:x}",
        "ce-source": SOURCE,
        "ce-type": topic,
        "ce-time": ce_time(time.time()),
        "ce-deliveryattempt": "1",
        "ce-partitionkey": key,
    }


def asyncio_run(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on a fresh selector loop (an imported trio_asyncio swaps the default)."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


# -- Kafka topics (confluent-kafka's admin client: synchronous, no loop needed) -----------


def kafka_create_topic(name: str, partitions: int = PARTITIONS) -> None:
    from confluent_kafka import admin as kadmin

    new = kadmin.NewTopic(name, partitions, 1)  # type: ignore[attr-defined]
    admin = kadmin.AdminClient({"bootstrap.servers": KAFKA})
    futures = admin.create_topics([new], operation_timeout=10)
    for future in futures.values():
        future.result(timeout=15)
    # a fresh topic's partitions get their leaders a moment later: wait, so the first
    # timed produce does not meet NotLeaderForPartition and a retry
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=5).topics.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            if all(p.leader >= 0 and p.error is None for p in meta.partitions.values()):
                return
        time.sleep(0.05)


_to_delete: list[str] = []


def kafka_delete_topic(name: str) -> None:
    """Delete *name* later, in :func:`kafka_cleanup`: deleting a topic while the next
    round's is being created makes that one's produce meet NotLeaderForPartition."""
    _to_delete.append(name)


def kafka_cleanup() -> list[str]:
    """Delete every topic the cases created (best effort); return their names."""
    from confluent_kafka.admin import AdminClient

    names, _to_delete[:] = list(_to_delete), []
    if not names:
        return names
    admin = AdminClient({"bootstrap.servers": KAFKA})
    for future in admin.delete_topics(names, operation_timeout=10).values():
        try:
            future.result(timeout=15)
        except Exception:  # already gone, or the broker is busy: best effort
            pass
    return names


def kafka_committed(group: str, topic: str) -> int:
    """The sum of *group*'s committed offsets on *topic* (= records committed, from 0)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": group})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        return sum(max(0, tp.offset) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def kafka_fill(topic: str, n: int, ce_type: str = BUS_TOPIC) -> None:
    """Write *n* messages to *topic* with confluent-kafka (fast, untimed setup), with the
    CloudEvents headers the Kafka bridge writes (``ce_type`` = the bus topic)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": KAFKA, "acks": "all", "linger.ms": 5})
    for i in range(n):
        obj, data = message(i)
        hdrs = kafka_headers(i, ce_type)
        while True:
            try:
                producer.produce(topic, data, key=obj.key.encode(), headers=hdrs)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(30)
    if left:
        raise RuntimeError(f"{left} messages not delivered while filling {topic}")
