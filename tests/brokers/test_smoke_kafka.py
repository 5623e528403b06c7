"""Apache Kafka (KRaft, jars from Maven Central) through aiokafka: topic, key, headers."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.brokers


async def _round_trip(brokers, topic: str) -> None:
    servers = brokers.env("KAFKA_SERVER")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        # create_topics returns once the controller accepted it; the broker this client
        # asks for metadata may list the topic a moment later
        async with asyncio.timeout(20):
            while topic not in await admin.list_topics():  # noqa: ASYNC110 - remote state
                await asyncio.sleep(0.05)
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                topic, b"\x00payload\xff", key=b"order-42", headers=[("h-trace", b"abc")]
            )
            assert meta.topic == topic and meta.offset == 0
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=20)
        finally:
            await consumer.stop()
        assert record.value == b"\x00payload\xff"
        assert record.key == b"order-42"
        assert list(record.headers) == [("h-trace", b"abc")]
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def test_kafka_round_trip(brokers, unique: str) -> None:
    brokers.require("kafka")
    asyncio.run(_round_trip(brokers, unique))
