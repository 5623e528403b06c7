"""How the conformance suite reaches each real broker the harness runs.

Each ``*_bridge(name, group)`` function makes a bridge from the environment that
``make brokers-env`` prints (falling back to the harness's defaults); the suite's kill -9
case runs them in a child process by their ``module:function`` path.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from bus._check_bridge import BridgeKit
from bus.abc import Bridge

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE = "trio-bus-conformance"
HERE = Path(__file__).parent
CHILD_ENV = {"PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), str(HERE)])}


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _in_asyncio(make: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    def run() -> None:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            runner.run(make())

    return run


def rabbitmq_bridge(name: str, group: str) -> Bridge:
    from bridges.rabbitmq import RabbitMQBridge

    url = _env("RABBITMQ_URL", RABBITMQ_URL)
    return RabbitMQBridge(url, name=name, group=group, exchange=EXCHANGE)


def rabbitmq_kit(restart: Callable[[], None]) -> BridgeKit:
    from bridges.rabbitmq import FEATURES, RabbitMQBridge

    url = _env("RABBITMQ_URL", RABBITMQ_URL)

    async def write_raw(topic: str, data: bytes) -> None:
        async def publish() -> None:
            import aio_pika

            connection = await aio_pika.connect(url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(EXCHANGE)
                await exchange.publish(aio_pika.Message(body=data), routing_key=topic)

        await trio.to_thread.run_sync(_in_asyncio(publish))

    async def restart_broker() -> None:
        await trio.to_thread.run_sync(restart)

    return BridgeKit(
        name="rabbitmq",
        features=FEATURES,
        make=rabbitmq_bridge,
        write_raw=write_raw,
        restart_broker=restart_broker,
        child="kits:rabbitmq_bridge",
        env=CHILD_ENV,
        unreachable=lambda: RabbitMQBridge("amqp://guest:guest@127.0.0.1:1/", name="nowhere"),
        settle=0.2,
    )
