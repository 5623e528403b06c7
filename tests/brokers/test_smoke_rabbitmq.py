"""RabbitMQ (Debian rabbitmq-server) through aio-pika: a queue round trip with headers."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

pytestmark = pytest.mark.brokers


async def _round_trip(brokers, name: str) -> None:
    connection = await aio_pika.connect_robust(brokers.env("RABBITMQ_URL"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT)
        queue = await channel.declare_queue(name, durable=False, exclusive=True)
        await queue.bind(exchange, routing_key="order-42")
        await exchange.publish(
            aio_pika.Message(
                b"\x00payload\xff",
                headers={"h-trace": "abc", "attempt": 1},
                message_id="m-1",
                content_type="application/octet-stream",
            ),
            routing_key="order-42",
        )
        message = await queue.get(timeout=5, fail=True)
        assert message is not None
        assert message.body == b"\x00payload\xff"
        assert message.routing_key == "order-42"
        assert message.headers == {"h-trace": "abc", "attempt": 1}
        assert message.message_id == "m-1"
        await message.ack()
        assert await queue.get(timeout=1, fail=False) is None
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()


def test_rabbitmq_round_trip(brokers, unique: str) -> None:
    brokers.require("rabbitmq")
    asyncio.run(_round_trip(brokers, unique))
