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
from typing import Any

import trio

from bus.abc import Bridge
from bus.testing import BridgeKit

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
PUBSUB_EMULATOR_HOST = "127.0.0.1:8085"
GCP_PROJECT_ID = "trio-bus-test"
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


def pubsub_bridge(name: str, group: str) -> Bridge:
    from bridges.pubsub import PubSubBridge

    # Small pulls: with ordering keys, a member that pulled a key holds it until it
    # acked; small pulls leave keys for the other members of the group.
    return PubSubBridge(
        _env("GCP_PROJECT_ID", GCP_PROJECT_ID), name=name, group=group,
        emulator_host=_env("PUBSUB_EMULATOR_HOST", PUBSUB_EMULATOR_HOST), pull_max=8,
    )


def pubsub_kit() -> BridgeKit:
    """Google's emulator keeps everything in memory: no restart case (Features says so)."""
    from bridges.pubsub import FEATURES, PubSubBridge

    project = _env("GCP_PROJECT_ID", GCP_PROJECT_ID)
    host = _env("PUBSUB_EMULATOR_HOST", PUBSUB_EMULATOR_HOST)

    async def prepare(topics: list[str]) -> None:
        bridge = PubSubBridge(project, name="prepare", emulator_host=host)
        await bridge.open()
        try:
            for topic in topics:
                await bridge.create_topic(topic)
        finally:
            await bridge.aclose()

    async def write_raw(topic: str, data: bytes) -> None:
        def publish() -> None:
            import grpc
            from google.cloud import pubsub_v1
            from google.pubsub_v1.services.publisher.transports.grpc import (
                PublisherGrpcTransport,
            )

            transport = PublisherGrpcTransport(channel=grpc.insecure_channel(host))
            client = pubsub_v1.PublisherClient(transport=transport)
            try:
                client.publish(client.topic_path(project, topic), data).result(timeout=10)
            finally:
                client.stop()
                client.transport.close()

        await trio.to_thread.run_sync(publish)

    return BridgeKit(
        name="pubsub",
        features=FEATURES,
        make=pubsub_bridge,
        prepare=prepare,
        write_raw=write_raw,
        child="kits:pubsub_bridge",
        env=CHILD_ENV,
        unreachable=lambda: PubSubBridge(project, name="nowhere", emulator_host="127.0.0.1:1"),
        settle=0.5,
        scale=0.5,
    )


def pubsub_resources() -> set[str]:
    """Every topic and subscription on the emulator (full resource paths)."""
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.subscriber import SubscriberClient

    project = f"projects/{_env('GCP_PROJECT_ID', GCP_PROJECT_ID)}"
    pub, sub = _pubsub_admin(PublisherClient, SubscriberClient)
    try:
        return {t.name for t in pub.list_topics(project=project)} | {
            s.name for s in sub.list_subscriptions(project=project)
        }
    finally:
        pub.transport.close()
        sub.transport.close()


def pubsub_cleanup(before: set[str]) -> None:
    """Delete what a case made (it names everything ``ct<hex>...``): left behind, the
    emulator keeps redelivering unacknowledged backlogs and slows down for everyone."""
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.subscriber import SubscriberClient

    made = sorted(n for n in pubsub_resources() - before if n.rsplit("/", 1)[-1].startswith("ct"))
    pub, sub = _pubsub_admin(PublisherClient, SubscriberClient)
    try:
        for name in made:
            if "/subscriptions/" in name:
                sub.delete_subscription(subscription=name)
        for name in made:
            if "/topics/" in name:
                pub.delete_topic(topic=name)
    finally:
        pub.transport.close()
        sub.transport.close()


def _pubsub_admin(publisher: Any, subscriber: Any) -> tuple[Any, Any]:
    import grpc
    from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

    host = _env("PUBSUB_EMULATOR_HOST", PUBSUB_EMULATOR_HOST)
    return (
        publisher(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))),
        subscriber(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))),
    )
