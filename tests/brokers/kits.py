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

from bus.abc import Bridge
from bus.testing import BridgeKit

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


KAFKA_SERVER = "127.0.0.1:9092"


def kafka_bridge(name: str, group: str, runtime: str | None = None) -> Bridge:
    """*runtime* None: the bridge's defaults (each direction on its measured best)."""
    from bridges.kafka import KafkaBridge

    server = _env("KAFKA_SERVER", KAFKA_SERVER)
    return KafkaBridge(server, name=name, group_id=group, runtime=runtime)  # type: ignore[arg-type]


def kafka_kit(restart: Callable[[], None], runtime: str | None = None) -> BridgeKit:
    """Topics get 4 partitions; raw records come from a bare aiokafka producer."""
    from bridges.kafka import FEATURES, KafkaBridge

    server = _env("KAFKA_SERVER", KAFKA_SERVER)

    async def prepare(topics: list[str]) -> None:
        async def create() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=server)
            await admin.start()
            try:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=4, replication_factor=1) for t in topics]
                )
                async with asyncio.timeout(20):
                    while not set(topics) <= set(await admin.list_topics()):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                await admin.close()

        await trio.to_thread.run_sync(_in_asyncio(create))

    async def write_raw(topic: str, data: bytes) -> None:
        async def send() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=server)
            await producer.start()
            try:
                await producer.send_and_wait(topic, data)
            finally:
                await producer.stop()

        await trio.to_thread.run_sync(_in_asyncio(send))

    async def restart_broker() -> None:
        await trio.to_thread.run_sync(restart)

    return BridgeKit(
        name=f"kafka[{runtime or 'default'}]",
        features=FEATURES,
        make=lambda name, group: kafka_bridge(name, group, runtime),
        prepare=prepare,
        write_raw=write_raw,
        restart_broker=restart_broker,
        child="kits:kafka_bridge",
        env=CHILD_ENV,
        unreachable=lambda: KafkaBridge("127.0.0.1:1", name="nowhere", runtime=runtime),  # type: ignore[arg-type]
        settle=1.0,
    )
