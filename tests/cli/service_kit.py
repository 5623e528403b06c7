"""`bus bridge CONFIG.toml` as a subprocess for the broker tests: each broker's table in
the file and its test-side clients, the process's life, and what it serves.

Shared by ``test_service.py`` (kill -9, SIGTERM) and ``test_service_dead_letters.py``,
which import it as ``tests.cli.service_kit`` (the repository is on pytest's path,
pyproject's ``pythonpath``). Every name a run makes starts with its prefix ``p``
(``svc<hex>``), so runs on one set of brokers never meet, and :meth:`Setup.cleanup`
deletes what kinesis-mock (50 shards in all) and the Pub/Sub emulator (memory) would
otherwise keep.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio
from prometheus_client.parser import text_string_to_metric_families

from bus import Envelope, open_bus
from bus._codec import RawCodec
from bus.abc import Bridge
from tests.conformance import kits

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD_VAR = "TRIO_BUS_TEST_RABBITMQ_PASSWORD"
AWS_SECRET_VAR = "TRIO_BUS_TEST_AWS_SECRET"
KINDS = ("kafka", "rabbitmq", "kinesis", "pubsub")


class Setup:
    """One run's names, clients and config file. The bridge of each broker in the file is
    named after its type (``kafka``, ``rabbitmq``, ``kinesis``, ``pubsub``)."""

    def __init__(self, brokers: Any, tmp_path: Path) -> None:
        self.brokers = brokers
        self.p = p = f"svc{uuid.uuid4().hex[:10]}"
        self.kafka = brokers.env("KAFKA_SERVER")
        url = brokers.env("RABBITMQ_URL")
        self.rabbit_url = url
        parts = url.split("://", 1)[1].split("@", 1)
        user, self.password = parts[0].split(":", 1)
        self.rabbit_url_no_password = f"amqp://{user}@{parts[1]}"
        self.kinesis_endpoint = brokers.env("KINESIS_ENDPOINT_URL")
        self.pubsub_host = brokers.env("PUBSUB_EMULATOR_HOST")
        self.project = os.environ.get("GCP_PROJECT_ID") or brokers.env("PUBSUB_PROJECT_ID")
        self.exchange = f"{p}-x"
        self.group = f"{p}-mirror"
        self.orders = [f"{p}.orders.created", f"{p}.orders.paid"]
        self.payments = f"{p}.payments.card.settled"
        self.check_queue = f"{p}.check"
        self.dead_topic = f"{p}.dead_letter"
        self.dead_queue = f"{p}.dead"
        self.port = free_port()
        self.config = tmp_path / "bridge.toml"
        self.log = tmp_path / "service.log"
        self.tmp = tmp_path
        self._streams: Any = None  # kinesis admin, once used
        self._pubsub_used = False

    # -- the file -------------------------------------------------------------------

    def service_table(self, dead_letter_broker: str = "rabbitmq") -> str:
        queue = f', queue = "{self.dead_queue}"' if dead_letter_broker == "rabbitmq" else ""
        return f"""
[service]
name = "{self.p}"
log_level = "info"
drain_timeout = 30
metrics_port = {self.port}
dead_letter = {{ broker = "{dead_letter_broker}", topic = "{self.dead_topic}"{queue} }}
"""

    def broker_table(self, kind: str) -> str:
        """``[brokers.KIND]`` for the harness's broker of that type; ingress tuned for
        the emulators (they answer in milliseconds: poll and rediscover faster)."""
        if kind == "kafka":
            return f"""
[brokers.kafka]
type = "kafka"
bootstrap_servers = "{self.kafka}"
group_id = "{self.group}"
commit_interval = 0.2
# static membership: a restarted service takes its partitions back at once
consumer_options = {{ group_instance_id = "{self.p}-1", session_timeout_ms = 6000 }}
"""
        if kind == "rabbitmq":
            return f"""
[brokers.rabbitmq]
type = "rabbitmq"
url = "{self.rabbit_url_no_password}"
password_env = "{PASSWORD_VAR}"
exchange = "{self.exchange}"
"""
        if kind == "kinesis":
            return f"""
[brokers.kinesis]
type = "kinesis"
endpoint_url = "{self.kinesis_endpoint}"
region = "us-east-1"
access_key_id = "testing"
secret_access_key_env = "{AWS_SECRET_VAR}"
group = "{self.group}"
shard_count = 1
checkpoints = "{self.tmp / 'kinesis-checkpoints.sqlite'}"
poll_interval = 0.05
discover_interval = 0.5
checkpoint_interval = 0.2
"""
        if kind == "pubsub":
            return f"""
[brokers.pubsub]
type = "pubsub"
project = "{self.project}"
emulator_host = "{self.pubsub_host}"
group = "{self.group}"
"""
        raise ValueError(kind)

    def write(self, *tables: str) -> None:
        self.config.write_text("".join(tables))

    # -- the process ----------------------------------------------------------------

    async def start(self, **env_vars: str) -> trio.Process:
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), PASSWORD_VAR: self.password,
            AWS_SECRET_VAR: "testing", **env_vars,
        }
        log = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            return await trio.lowlevel.open_process(
                [sys.executable, "-m", "bus", "bridge", str(self.config)],
                env=env, stdout=log, stderr=log,
            )
        finally:
            os.close(log)

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    async def until_healthy(self, proc: trio.Process, within: float = 60) -> None:
        with trio.move_on_after(within):
            while proc.poll() is None:
                try:
                    status, _ = await get(self.port, "/healthz")
                    if status == 200:
                        return
                except OSError:
                    pass
                await trio.sleep(0.1)
        raise AssertionError(
            f"the service did not become healthy (exit {proc.poll()}):\n{self.log_tail()}"
        )

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
        with trio.move_on_after(within):
            while not await check():  # noqa: ASYNC110 - the brokers' state: poll it
                await trio.sleep(0.2)
            return
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")

    async def metrics(self) -> dict[tuple[str, str], float]:
        return await metrics(self.port)

    async def metric_at(self, bounds: dict[tuple[str, str], tuple[float, float | None]]) -> bool:
        """Every sample named in *bounds* is within its (low, high); high None: any."""
        samples = await self.metrics()
        for name, (low, high) in bounds.items():
            value = samples.get(name)
            if value is None or value < low or (high is not None and value > high):
                return False
        return True

    # -- the brokers, test side -----------------------------------------------------

    def bridge(self, kind: str, name: str, group: str | None = None, **options: Any) -> Bridge:
        """A bridge to the harness's broker of *kind* (producers, readers, admin)."""
        group = group or f"{self.p}-{name}"
        if kind == "kafka":
            from bridges.kafka import KafkaBridge

            return KafkaBridge(self.kafka, name=name, group_id=group, **options)
        if kind == "rabbitmq":
            from bridges.rabbitmq import RabbitMQBridge

            return RabbitMQBridge(self.rabbit_url, name=name, exchange=self.exchange, **options)
        if kind == "kinesis":
            from bridges.kinesis import KinesisBridge, MemoryCheckpointStore

            return KinesisBridge(
                name=name, group=group, region="us-east-1", access_key_id="testing",
                secret_access_key="testing", endpoint_url=self.kinesis_endpoint,
                shard_count=1, checkpoints=MemoryCheckpointStore(), poll_interval=0.05,
                discover_interval=0.5, **options,
            )
        if kind == "pubsub":
            from bridges.pubsub import PubSubBridge

            self._pubsub_used = True
            return PubSubBridge(
                self.project, name=name, group=group, emulator_host=self.pubsub_host, **options
            )
        raise ValueError(kind)

    async def prepare(self, kind: str, topics: list[str]) -> None:
        """Make *topics* exist on the broker, keeping what is written to them for the
        service (Kafka: 4 partitions; Pub/Sub: the service's subscription)."""
        if kind == "kafka":
            await kits.kafka_kit(lambda: None).prepare(topics)
        elif kind == "kinesis":
            await self._kinesis().prepare(topics)
        elif kind == "pubsub":
            admin = self.bridge("pubsub", "admin", group=self.group)
            await admin.open()
            try:
                for topic in topics:
                    await admin.create_topic(topic, group=True)
            finally:
                await admin.aclose()
        elif kind != "rabbitmq":
            raise ValueError(kind)

    async def bind(self, pattern: str, queue: str) -> None:
        """A durable RabbitMQ queue bound to *pattern* on this run's exchange."""
        admin = self.bridge("rabbitmq", "admin")
        await admin.open()
        try:
            await admin.create_topic(pattern, queue=queue)
        finally:
            await admin.aclose()

    async def write_raw(self, kind: str, topic: str, records: list[tuple[bytes, str]]) -> None:
        """Write (data, key) records as a foreign producer would: no CloudEvents."""
        if kind == "kinesis":

            async def put(client: Any) -> None:
                await client.put_raw(topic, records)

            await self._kinesis().admin(put)
            return
        async with open_bus(name="writer") as bus:
            bus.declare_pattern(f"{self.p}.#", RawCodec())
            await bus.attach(self.bridge(kind, "writer"), export=[f"{self.p}.#"])
            for data, key in records:
                await bus.publish(topic, data, key=key, confirm=True)

    async def read(
        self, kind: str, topic: str, count: int, *, group: str | None = None,
        queue: str | None = None, within: float = 60,
    ) -> list[Envelope[bytes]]:
        """*count* messages of *topic* (RabbitMQ: of *queue*), read by a new consumer (or
        *group*'s), then whatever else arrives while the consumer settles."""
        got: list[Envelope[bytes]] = []
        options = {"queue": queue} if queue is not None else {}
        async with open_bus(name="reader") as bus:
            bus.declare_pattern(topic, RawCodec())
            bus.subscribe(topic, got.append)
            await bus.attach(self.bridge(kind, "reader", group, **options), import_=[topic])
            with trio.move_on_after(within):
                while len(got) < count:  # noqa: ASYNC110 - filled by the bridge
                    await trio.sleep(0.05)
        return got

    def _kinesis(self) -> Any:
        if self._streams is None:
            self._streams = kits._KinesisStreams()
        return self._streams

    async def cleanup(self) -> None:
        """Delete this run's Kinesis streams and Pub/Sub topics and subscriptions."""
        if self._streams is not None:
            self._streams.prefixes.add(f"{self.p}.")
            await self._streams.cleanup()
        if self._pubsub_used:
            await trio.to_thread.run_sync(_pubsub_delete, self.p)


def _pubsub_delete(prefix: str) -> None:
    made = [n for n in kits.pubsub_resources() if n.rsplit("/", 1)[-1].startswith(prefix)]
    pub, sub = kits._pubsub_admin(*_pubsub_clients())
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


def _pubsub_clients() -> tuple[Any, Any]:
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.subscriber import SubscriberClient

    return PublisherClient, SubscriberClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(port: int, path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def metrics(port: int) -> dict[tuple[str, str], float]:
    """/metrics parsed with prometheus_client's parser: (sample name, bridge or
    subscriber or topic label) -> value."""
    status, body = await get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "") if sample.labels else ""
            if "direction" in sample.labels:
                label = f"{sample.labels['bridge']}:{sample.labels['direction']}"
            samples[(sample.name, label)] = sample.value
    return samples


async def stop(proc: trio.Process, signum: int = signal.SIGTERM, within: float = 40) -> int:
    proc.send_signal(signum)
    with trio.move_on_after(within):
        return await proc.wait()
    proc.kill()
    await proc.wait()
    raise AssertionError(f"the service did not exit within {within}s of {signum}")


def numbers_report(numbers: list[int], sent: int) -> tuple[int, int]:
    """(duplicates, lost) of the numbered messages that arrived, out of *sent*."""
    counts = Counter(numbers)
    duplicates = sum(c - 1 for c in counts.values())
    lost = sent - len(set(numbers) & set(range(sent)))
    return duplicates, lost


def numbered(env: Envelope[bytes], field: str = "n") -> int:
    return int(msgspec.json.decode(env.payload)[field])
