"""How the conformance suite reaches each real broker the harness runs.

Each ``*_bridge(name, group)`` function makes a bridge from the environment that
``make brokers-env`` prints (falling back to the harness's defaults); the suite's kill -9
case runs them in a child process by their ``module:function`` path
(``tests.conformance.kits:...``: the child has the repository on its path, as pytest has
from pyproject's ``pythonpath``). The service tests use these functions too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from bus.abc import Bridge
from bus.testing import BridgeKit

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
PUBSUB_EMULATOR_HOST = "127.0.0.1:8085"
GCP_PROJECT_ID = "trio-bus-test"
EXCHANGE = "trio-bus-conformance"
ROOT = Path(__file__).parents[2]
CHILD_ENV = {"PYTHONPATH": str(ROOT)}
"""The kill -9 child imports ``tests.conformance.kits`` from the repository."""
MODULE = "tests.conformance.kits"


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
        child=f"{MODULE}:rabbitmq_bridge",
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


def kafka_confluent_bridge(name: str, group: str) -> Bridge:
    """The confluent-kafka (librdkafka) client of the Kafka bridge."""
    from bridges.kafka import ConfluentKafkaBridge

    return ConfluentKafkaBridge(_env("KAFKA_SERVER", KAFKA_SERVER), name=name, group_id=group)


def kafka_confluent_kit(restart: Callable[[], None]) -> BridgeKit:
    """The aiokafka kit (topics, raw records) with confluent-kafka bridges."""
    from bridges.kafka import ConfluentKafkaBridge

    return replace(
        kafka_kit(restart),
        name="kafka[confluent]",
        make=kafka_confluent_bridge,
        child=f"{MODULE}:kafka_confluent_bridge",
        unreachable=lambda: ConfluentKafkaBridge("127.0.0.1:1", name="nowhere"),
        settle=3.0,  # a second member got its share only after ~1-3 s with librdkafka here
    )


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
        child=f"{MODULE}:kafka_bridge",
        env=CHILD_ENV,
        unreachable=lambda: KafkaBridge("127.0.0.1:1", name="nowhere", runtime=runtime),  # type: ignore[arg-type]
        settle=1.0,
    )


# -- Kinesis (kinesis-mock) ----------------------------------------------------------

KINESIS_CHECKPOINTS = Path(os.environ.get("TMPDIR", "/tmp")) / "trio-bus-kinesis-conformance.sqlite"
"""One SQLite file for every bridge of the suite (groups keep them apart); the kill -9
child and its successors find their checkpoints here."""


def kinesis_bridge(name: str, group: str) -> Bridge:
    from bridges.kinesis import KinesisBridge

    # kinesis-mock answers GetRecords in milliseconds: poll and rediscover faster than
    # the defaults (sized for AWS's 5 reads/s per shard) so the suite stays short.
    return KinesisBridge(
        name=name,
        group=group,
        region=_env("AWS_REGION", "us-east-1"),
        access_key_id=_env("AWS_ACCESS_KEY_ID", "testing"),
        secret_access_key=_env("AWS_SECRET_ACCESS_KEY", "testing"),
        endpoint_url=_env("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568"),
        shard_count=2,
        checkpoints=KINESIS_CHECKPOINTS,
        poll_interval=0.05,
        discover_interval=0.5,
        checkpoint_interval=0.2,
        lease_ttl=1.5,  # a member that joins gets its share within a second
    )


class _KinesisStreams:
    """Streams a kit made (prepared, or created by its bridges' exports), deleted by
    :meth:`cleanup` after each case: kinesis-mock allows 50 shards in all (SHARD_LIMIT)
    and keeps streams across its restarts."""

    def __init__(self) -> None:
        self.prefixes: set[str] = set()

    async def admin(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        from bridges._runtime import open_runtime
        from bridges.kinesis._client import KinesisClient

        client = KinesisClient(
            region=_env("AWS_REGION", "us-east-1"),
            key_id=_env("AWS_ACCESS_KEY_ID", "testing"),
            secret=_env("AWS_SECRET_ACCESS_KEY", "testing"),
            endpoint_url=_env("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568"),
            connect_timeout=5, read_timeout=30, max_attempts=3,
        )

        async def call() -> Any:
            await client.connect()
            try:
                return await fn(client, *args)
            finally:
                await client.close()

        async with open_runtime("thread") as rt:
            return await rt.run(call)

    async def prepare(self, topics: list[str]) -> None:
        self.prefixes.update(t.split(".", 1)[0] + "." for t in topics)

        async def run(client: Any) -> None:
            for topic in topics:
                await client.create_stream(topic, 2)

        await self.admin(run)

    async def write_raw(self, topic: str, data: bytes) -> None:
        async def run(client: Any) -> None:
            await client.put_raw(topic, [(data, "raw")])

        await self.admin(run)

    async def cleanup(self) -> None:
        prefixes = tuple(self.prefixes)
        if not prefixes:
            return

        async def run(client: Any) -> None:
            for stream in await client.list_streams():
                if stream.startswith(prefixes):
                    await client.delete_stream(stream)

        await self.admin(run)


@dataclass
class KinesisKit(BridgeKit):
    streams: _KinesisStreams = field(default_factory=_KinesisStreams)

    async def cleanup(self) -> None:
        """Delete the streams of the case that ran with this kit."""
        await self.streams.cleanup()


def kinesis_kit(restart: Callable[[], None]) -> KinesisKit:
    from bridges.kinesis import FEATURES, KinesisBridge

    async def restart_broker() -> None:
        await trio.to_thread.run_sync(restart)

    kit = KinesisKit(
        name="kinesis",
        features=FEATURES,
        make=kinesis_bridge,
        restart_broker=restart_broker,
        child=f"{MODULE}:kinesis_bridge",
        env={**CHILD_ENV, "TMPDIR": str(KINESIS_CHECKPOINTS.parent)},
        unreachable=lambda: KinesisBridge(
            name="nowhere", endpoint_url="http://127.0.0.1:1", access_key_id="x",
            secret_access_key="y", connect_timeout=1, max_attempts=1,
        ),
        settle=1.0,  # group members share the shards (leases renewed every 0.5 s)
        scale=1.0,  # the full counts take ~30 s on kinesis-mock
    )
    kit.prepare, kit.write_raw = kit.streams.prepare, kit.streams.write_raw
    return kit
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
        child=f"{MODULE}:pubsub_bridge",
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


# -- Redis Streams -------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_bridge(name: str, group: str) -> Bridge:
    from bridges.redis import RedisBridge

    # A member's pending entries are claimed after 2 s (default 30 s) so the kill -9
    # case's successors take over within the suite's bounds.
    return RedisBridge(_env("REDIS_URL", REDIS_URL), name=name, group=group, claim_idle=2.0,
                       discover_interval=0.2)


def redis_kit(restart: Callable[[], None]) -> BridgeKit:
    """Raw entries come from a bare redis-py client (a ``data`` field alone: a foreign
    producer); the harness's Redis keeps an append-only file, so it restarts with its
    entries."""
    from bridges.redis import FEATURES, RedisBridge

    url = _env("REDIS_URL", REDIS_URL)

    async def write_raw(topic: str, data: bytes) -> None:
        def add() -> None:
            import redis

            client = redis.Redis.from_url(url)
            try:
                client.xadd(topic, {"data": data})
            finally:
                client.close()

        await trio.to_thread.run_sync(add)

    async def restart_broker() -> None:
        await trio.to_thread.run_sync(restart)

    return BridgeKit(
        name="redis",
        features=FEATURES,
        make=redis_bridge,
        write_raw=write_raw,
        restart_broker=restart_broker,
        child=f"{MODULE}:redis_bridge",
        env=CHILD_ENV,
        unreachable=lambda: RedisBridge("redis://127.0.0.1:1/0", name="nowhere",
                                        connect_timeout=1),
        settle=0.3,  # pattern imports find a new stream within discover_interval
    )


def redis_cleanup(prefix: str = "ct") -> None:
    """Delete the streams the suite's cases made (named ``ct<hex>...``)."""
    import redis

    client = redis.Redis.from_url(_env("REDIS_URL", REDIS_URL))
    try:
        for key in client.scan_iter(match=f"{prefix}*", _type="stream"):
            client.delete(key)
    finally:
        client.close()
