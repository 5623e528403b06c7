"""`restart NAME` brings a broker back, and a client that was connected before carries on.

Kafka, RabbitMQ and Redis (its append-only file) keep their data across a restart (the
harness wipes it only on `brokers-down`), so messages sent before the restart are still
there after it.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

pytestmark = pytest.mark.brokers


def _pid(brokers, name: str) -> int:
    pid = brokers.harness.BROKERS[name].pid()
    assert pid is not None, f"{name} was not started by the harness"
    return int(pid)


async def _redis(brokers, key: str) -> None:
    client = aioredis.from_url(
        brokers.env("REDIS_URL"),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    try:
        await client.set(key, "before", ex=60)
        before = _pid(brokers, "redis")
        await asyncio.to_thread(brokers.restart, "redis")
        assert _pid(brokers, "redis") != before
        # same client object: its pooled connection died with the server, a new one is made
        assert await client.ping()
        # the harness's redis keeps an append-only file: what it answered survives
        assert await client.get(key) == b"before"
        await client.set(key, "after", ex=60)
        assert await client.get(key) == b"after"
        await client.delete(key)
    finally:
        await client.aclose()


def test_redis_restart_and_reconnect(brokers, unique: str) -> None:
    brokers.require("redis")
    asyncio.run(_redis(brokers, unique))


async def _retry(what, within: float = 60.0):
    deadline = time.monotonic() + within
    while True:
        try:
            return await what()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _rabbitmq(brokers, name: str) -> None:
    connection = await aio_pika.connect_robust(brokers.env("RABBITMQ_URL"), reconnect_interval=0.5)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True)
        persistent = aio_pika.DeliveryMode.PERSISTENT
        await channel.default_exchange.publish(
            aio_pika.Message(b"before", delivery_mode=persistent), routing_key=name
        )
        before = _pid(brokers, "rabbitmq")
        await asyncio.to_thread(brokers.restart, "rabbitmq")
        assert _pid(brokers, "rabbitmq") != before

        # the robust connection reconnects by itself and re-declares the channel
        async def publish_after() -> None:
            await channel.default_exchange.publish(
                aio_pika.Message(b"after", delivery_mode=persistent), routing_key=name
            )

        await _retry(publish_after)
        bodies = []
        for _ in range(2):
            message = await _retry(lambda: queue.get(timeout=5, fail=True))
            await message.ack()
            bodies.append(message.body)
        assert bodies == [b"before", b"after"]  # the durable queue survived the restart
        await queue.delete(if_unused=False, if_empty=False)


def test_rabbitmq_restart_and_reconnect(brokers, unique: str) -> None:
    brokers.require("rabbitmq")
    asyncio.run(_rabbitmq(brokers, unique))


async def _kafka(brokers, topic: str) -> None:
    servers = brokers.env("KAFKA_SERVER")
    producer = AIOKafkaProducer(bootstrap_servers=servers, request_timeout_ms=60000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before", key=b"k")  # topic auto-created
        before = _pid(brokers, "kafka")
        await asyncio.to_thread(brokers.restart, "kafka")
        assert _pid(brokers, "kafka") != before
        await producer.send_and_wait(topic, b"after", key=b"k")  # same producer, reconnected
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        values = []
        while len(values) < 2:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            values.append(record.value)
    finally:
        await consumer.stop()
    assert values == [b"before", b"after"]  # the log survived the restart


def test_kafka_restart_and_reconnect(brokers, unique: str) -> None:
    brokers.require("kafka")
    asyncio.run(_kafka(brokers, unique))
