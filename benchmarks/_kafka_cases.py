"""Kafka cases: the raw clients and FastStream doing what the bridge does, one round each.

Every case moves the same ~200 B msgspec JSON messages (``_messages.Reading``, 64 keys)
through a fresh topic with ``PARTITIONS`` partitions, then deletes it.

- **egress** (timed from the first send to the last broker acknowledgement, after one
  warm-up message so connection set-up and the idempotent producer's first ack are
  outside): aiokafka with ``acks=all`` and idempotence, records appended to one
  ``create_batch`` builder per partition (the default partitioner's choice for the key),
  sent with ``send_batch`` once it holds ``BATCH`` records, every future gathered at the
  end; FastStream's real ``KafkaBroker`` (same producer settings, its
  msgspec serializer) with ``publish_batch`` of ``BATCH`` ``KafkaPublishMessage`` s
  (its documented fast path: a batch goes to one partition; 0.7.8 writes each
  message's key but not per-message headers, so it puts less on the wire: no
  CloudEvents headers), futures gathered; confluent-kafka (librdkafka) as the
  reference, ``produce`` + ``flush``;
- **ingress** (the topic is filled first, untimed; timed from the first record received
  to the last one decoded into a ``Reading``, so the group join is outside): aiokafka
  ``getmany`` with one commit at the end; FastStream's batch subscriber with
  ``AckPolicy.ACK`` (at-least-once like the bridge: one commit per batch); confluent
  ``consume`` with one commit at the end.

The bridge's own cases live in ``_kafka_bridge_cases``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._brokers import (
    BATCH,
    KAFKA,
    MAX_RECORDS,
    PARTITIONS,
    decode,
    kafka_create_topic,
    kafka_delete_topic,
    kafka_fill,
    kafka_headers,
    message,
    unique,
)
from ._brokers import asyncio_run as _run
from ._harness import CaseFailed, Sample

BATCH_BYTES = 1024 * 1024
"""Producer batch size limit for aiokafka and FastStream: room for ``BATCH`` records."""


async def _warm_up(send: Any, partitions: int) -> None:
    """One message to every partition: connections and leaders known before timing."""
    obj, data = message(-1)
    for part in range(partitions):
        await send(obj, data, part)


def _topic() -> str:
    name = unique()
    kafka_create_topic(name)
    return name


# -- aiokafka ------------------------------------------------------------------------


def raw_egress(n: int, window: int | None = None) -> Sample:
    """*window*: send what is built and wait for its acks every *window* messages (one
    batch in flight, as a bus export does); ``None``: everything in flight."""
    topic = _topic()

    async def main() -> float:
        from aiokafka import AIOKafkaProducer
        from aiokafka.partitioner import murmur2

        producer = AIOKafkaProducer(
            bootstrap_servers=KAFKA, acks="all", enable_idempotence=True,
            max_batch_size=BATCH_BYTES,
        )
        await producer.start()
        try:
            partitions = len(await producer.partitions_for(topic)) or PARTITIONS
            await _warm_up(
                lambda obj, data, part: producer.send_and_wait(
                    topic, data, key=obj.key.encode(), partition=part
                ),
                partitions,
            )
            t0 = time.perf_counter()
            futures = []
            builders: dict[int, Any] = {}
            counts = dict.fromkeys(range(partitions), 0)
            for i in range(n):
                obj, data = message(i)
                key = obj.key.encode()
                # the default partitioner's choice, so keys land where send() puts them
                part = (murmur2(key) & 0x7FFFFFFF) % partitions
                builder = builders.get(part)
                if builder is None:
                    builder = builders[part] = producer.create_batch()
                builder.append(key=key, value=data, timestamp=None, headers=kafka_headers(i))
                counts[part] += 1
                if counts[part] == BATCH:
                    futures.append(await producer.send_batch(builder, topic, partition=part))
                    del builders[part]
                    counts[part] = 0
                if window is not None and (i + 1) % window == 0:
                    for p, b in builders.items():
                        futures.append(await producer.send_batch(b, topic, partition=p))
                    builders.clear()
                    counts = dict.fromkeys(range(partitions), 0)
                    await asyncio.gather(*futures)
                    futures.clear()
            for part, builder in builders.items():
                futures.append(await producer.send_batch(builder, topic, partition=part))
            await asyncio.gather(*futures)
            return time.perf_counter() - t0
        finally:
            await producer.stop()

    try:
        return Sample(n, _run(main()))
    finally:
        kafka_delete_topic(topic)


def raw_ingress(n: int) -> Sample:
    topic = _topic()

    async def main() -> float:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=KAFKA,
            group_id=unique("bench-g"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            count, t0 = 0, 0.0
            deadline = time.monotonic() + 60
            while count < n:
                if time.monotonic() > deadline:
                    raise CaseFailed(f"aiokafka consumed {count} of {n} in 60 s")
                batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
                if batches and not count:
                    t0 = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        decode(record.value)
                    count += len(records)
            await consumer.commit()
            return time.perf_counter() - t0
        finally:
            await consumer.stop()

    try:
        kafka_fill(topic, n)
        return Sample(n, _run(main()))
    finally:
        kafka_delete_topic(topic)


# -- confluent-kafka (librdkafka), the reference -------------------------------------


def confluent_produce(n: int) -> Sample:
    from confluent_kafka import Producer

    topic = _topic()
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    try:
        producer = Producer(
            {"bootstrap.servers": KAFKA, "acks": "all", "enable.idempotence": True}
        )
        obj, data = message(-1)
        producer.produce(topic, data, key=obj.key.encode())
        producer.flush(30)  # the idempotent producer's first ack can take ~0.5 s
        t0 = time.perf_counter()
        for i in range(n):
            obj, data = message(i)
            while True:
                try:
                    producer.produce(
                        topic, data, key=obj.key.encode(), headers=kafka_headers(i),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        left = producer.flush(60)
        seconds = time.perf_counter() - t0
    finally:
        kafka_delete_topic(topic)
    if left or errors:
        raise CaseFailed(f"confluent: {left} undelivered, {len(errors)} errors")
    return Sample(n, seconds)


def confluent_consume(n: int) -> Sample:
    from confluent_kafka import Consumer

    topic = _topic()
    try:
        kafka_fill(topic, n)
        consumer = Consumer(
            {
                "bootstrap.servers": KAFKA,
                "group.id": unique("bench-g"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            count, t0 = 0, 0.0
            deadline = time.monotonic() + 60
            while count < n:
                if time.monotonic() > deadline:
                    raise CaseFailed(f"confluent consumed {count} of {n} in 60 s")
                records = consumer.consume(num_messages=MAX_RECORDS, timeout=1.0)
                if records and not count:
                    t0 = time.perf_counter()
                for record in records:
                    if record.error() is None:
                        decode(record.value() or b"")
                        count += 1
            consumer.commit(asynchronous=False)
            seconds = time.perf_counter() - t0
        finally:
            consumer.close()
    finally:
        kafka_delete_topic(topic)
    return Sample(n, seconds)


# -- FastStream's real KafkaBroker ------------------------------------------------------


def _faststream_broker(**options: Any) -> Any:
    from fast_depends.msgspec import MsgSpecSerializer
    from faststream.kafka import KafkaBroker

    return KafkaBroker(KAFKA, serializer=MsgSpecSerializer(), logger=None, **options)


def faststream_egress(n: int) -> Sample:
    topic = _topic()

    async def main() -> float:
        from faststream.kafka import KafkaPublishMessage

        broker = _faststream_broker(
            acks="all", enable_idempotence=True, max_batch_size=BATCH_BYTES
        )
        await broker.start()
        try:
            await _warm_up(
                lambda obj, data, part: broker.publish(
                    obj, topic, key=obj.key.encode(), partition=part
                ),
                PARTITIONS,
            )
            t0 = time.perf_counter()
            futures = []
            for start in range(0, n, BATCH):
                batch = []
                for i in range(start, min(n, start + BATCH)):
                    obj, _ = message(i)
                    # no per-message headers: 0.7.8's publish_batch would not write them
                    batch.append(KafkaPublishMessage(obj, key=obj.key.encode()))
                futures.append(
                    await broker.publish_batch(*batch, topic=topic, no_confirm=True)
                )
            await asyncio.gather(*futures)
            return time.perf_counter() - t0
        finally:
            await broker.stop()

    try:
        return Sample(n, _run(main()))
    finally:
        kafka_delete_topic(topic)


def faststream_ingress(n: int) -> Sample:
    from faststream import AckPolicy

    from ._messages import Reading

    topic = _topic()

    async def main() -> float:
        broker = _faststream_broker()
        done = asyncio.Event()
        state = {"count": 0, "t0": 0.0}

        @broker.subscriber(  # type: ignore[untyped-decorator]
            topic,
            group_id=unique("bench-g"),
            auto_offset_reset="earliest",
            batch=True,
            max_records=MAX_RECORDS,
            ack_policy=AckPolicy.ACK,
        )
        async def handle(batch: list[Reading]) -> None:
            if not state["count"]:
                state["t0"] = time.perf_counter()
            state["count"] += len(batch)
            if state["count"] >= n:
                done.set()

        await broker.start()
        try:
            await asyncio.wait_for(done.wait(), 60)
            return time.perf_counter() - state["t0"]
        except TimeoutError:
            raise CaseFailed(f"FastStream consumed {state['count']} of {n} in 60 s") from None
        finally:
            await broker.stop()

    try:
        kafka_fill(topic, n)
        return Sample(n, _run(main()))
    finally:
        kafka_delete_topic(topic)
