"""How the conformance suite (``bus._check_bridge``) reaches a RabbitMQ broker.

:func:`rabbitmq_kit` gives a :class:`~bus._check_bridge.BridgeKit` whose bridges share
one exchange (give each run its own); raw messages are published with bare aio-pika;
the kill -9 child makes its bridge with :func:`make_from_env` (``RABBITMQ_URL`` and
``TRIO_BUS_TEST_EXCHANGE``). Every queue a bridge of the kit declares is recorded, so
:func:`delete_kit_objects` can remove them and the exchange afterwards (durable queues
outlive the bridges by design). Used by the tests; no part of a running bus.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from bus._check_bridge import BridgeKit

from .._runtime import start_runtime
from ._bridge import FEATURES, RabbitMQBridge

__all__ = ["delete_kit_objects", "make_from_env", "rabbitmq_kit"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE_ENV = "TRIO_BUS_TEST_EXCHANGE"


def make_from_env(name: str, group: str) -> RabbitMQBridge:
    """A bridge to ``$RABBITMQ_URL`` on ``$TRIO_BUS_TEST_EXCHANGE`` consuming as *group*
    (the kill -9 child's maker)."""
    return RabbitMQBridge(
        os.environ.get("RABBITMQ_URL", DEFAULT_URL), name=name, group=group,
        exchange=os.environ[EXCHANGE_ENV],
    )


async def _publish_raw(url: str, exchange: str, topic: str, data: bytes) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await ex.publish(aio_pika.Message(data), topic)


async def _delete(url: str, exchange: str, queues: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


async def delete_kit_objects(url: str, exchange: str, queues: list[str]) -> None:
    """Delete *queues* and *exchange* on the broker (missing ones are fine)."""
    rt = await start_runtime("thread")
    try:
        await rt.run(_delete, url, exchange, sorted(set(queues)))
    finally:
        await rt.aclose()


def rabbitmq_kit(
    url: str = DEFAULT_URL,
    *,
    exchange: str,
    queues: list[str] | None = None,
    restart_broker: Callable[[], Awaitable[None]] | None = None,
) -> BridgeKit:
    """A kit for bridges on *exchange*; the queues they declare are appended to *queues*."""
    declared = queues if queues is not None else []

    def make(name: str, group: str) -> RabbitMQBridge:
        bridge = RabbitMQBridge(url, name=name, group=group, exchange=exchange)
        declared.append(bridge.queue)
        return bridge

    async def write_raw(topic: str, data: bytes) -> None:
        rt = await start_runtime("thread")
        try:
            await rt.run(_publish_raw, url, exchange, topic, data)
        finally:
            await rt.aclose()

    return BridgeKit(
        name="rabbitmq",
        features=FEATURES,
        make=make,
        write_raw=write_raw,
        restart_broker=restart_broker,
        child="bridges.rabbitmq._kit:make_from_env",
        unreachable=lambda: RabbitMQBridge("amqp://guest:guest@127.0.0.1:1/", name="down"),
        env={"RABBITMQ_URL": url, EXCHANGE_ENV: exchange},
    )
