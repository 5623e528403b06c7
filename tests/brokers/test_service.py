"""`bus bridge CONFIG.toml` as an operator runs it: a subprocess between real Kafka and
RabbitMQ, killed with -9 mid-stream and restarted, stopped with SIGTERM, scraped.

What is counted is what reached the brokers: the RabbitMQ queue bound to the mirrored
topics (every message there, duplicates counted), the dead-letter queue (every poison
record there, with its reason), and for RabbitMQ -> Kafka a fresh Kafka consumer group.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import signal
import socket
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from bus import Envelope, open_bus
from bus._codec import RawCodec
from bus.abc import H_ERROR

sys.path.insert(0, str(Path(__file__).parent))
kits = importlib.import_module("kits")

pytestmark = pytest.mark.brokers

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD_VAR = "TRIO_BUS_TEST_RABBITMQ_PASSWORD"


class Setup:
    """One run's names: topics, exchange, queues, group, and the config file."""

    def __init__(self, brokers: Any, tmp_path: Path) -> None:
        self.p = p = f"svc{uuid.uuid4().hex[:10]}"
        self.kafka = brokers.env("KAFKA_SERVER")
        url = brokers.env("RABBITMQ_URL")
        self.rabbit_url = url
        parts = url.split("://", 1)[1].split("@", 1)
        user, self.password = parts[0].split(":", 1)
        self.rabbit_url_no_password = f"amqp://{user}@{parts[1]}"
        self.exchange = f"{p}-x"
        self.orders = [f"{p}.orders.created", f"{p}.orders.paid"]
        self.payments = f"{p}.payments.card.settled"
        self.check_queue = f"{p}.check"
        self.dead_topic = f"{p}.dead_letter"
        self.dead_queue = f"{p}.dead"
        self.port = _free_port()
        self.config = tmp_path / "bridge.toml"
        self.log = tmp_path / "service.log"
        self.tmp = tmp_path

    def write_config(self, **export: int) -> None:
        export_table = "".join(f"{k} = {v}\n" for k, v in export.items())
        self.config.write_text(f"""
[service]
name = "{self.p}"
log_level = "info"
drain_timeout = 30
metrics_port = {self.port}
dead_letter = {{ broker = "rabbitmq", topic = "{self.dead_topic}", queue = "{self.dead_queue}" }}

[brokers.kafka]
type = "kafka"
bootstrap_servers = "{self.kafka}"
group_id = "{self.p}-mirror"
commit_interval = 0.2
# static membership: a restarted service takes its partitions back at once
consumer_options = {{ group_instance_id = "{self.p}-1", session_timeout_ms = 6000 }}

[brokers.rabbitmq]
type = "rabbitmq"
url = "{self.rabbit_url_no_password}"
password_env = "{PASSWORD_VAR}"
exchange = "{self.exchange}"

[brokers.rabbitmq.export]
{export_table}
[[topics]]
pattern = "{self.p}.orders.*"
payload = "json"
import_from = "kafka"
export_to = "rabbitmq"

[[topics]]
pattern = "{self.p}.payments.#"
import_from = ["rabbitmq"]
export_to = ["kafka"]
""")

    async def start(self) -> trio.Process:
        env = {**os.environ, "PYTHONPATH": str(ROOT), PASSWORD_VAR: self.password}
        log = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            return await trio.lowlevel.open_process(
                [sys.executable, "-m", "bus._cli", "bridge", str(self.config)],
                env=env, stdout=log, stderr=log,
            )
        finally:
            os.close(log)

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def rabbit(self, name: str, queue: str | None = None) -> Any:
        from bridges.rabbitmq import RabbitMQBridge

        return RabbitMQBridge(self.rabbit_url, name=name, exchange=self.exchange, queue=queue)

    async def prepare(self) -> None:
        """Kafka topics of 4 partitions; the queue that receives the mirrored orders."""
        await kits.kafka_kit(lambda: None).prepare(self.orders)
        admin = self.rabbit("admin")
        await admin.open()
        try:
            await admin.create_topic(f"{self.p}.orders.#", queue=self.check_queue)
        finally:
            await admin.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(port: int, path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def _until_healthy(setup: Setup, proc: trio.Process, within: float = 60) -> None:
    with trio.move_on_after(within):
        while proc.poll() is None:
            try:
                status, _ = await _get(setup.port, "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            await trio.sleep(0.1)
    raise AssertionError(
        f"the service did not become healthy (exit {proc.poll()}):\n{setup.log_tail()}"
    )


async def _until(what: str, check: Any, within: float, setup: Setup) -> None:
    with trio.move_on_after(within):
        while not await check():  # noqa: ASYNC110 - the brokers' state: poll it
            await trio.sleep(0.2)
        return
    raise AssertionError(f"timed out waiting for {what}:\n{setup.log_tail()}")


async def _stop(proc: trio.Process, signum: int = signal.SIGTERM, within: float = 40) -> int:
    proc.send_signal(signum)
    with trio.move_on_after(within):
        return await proc.wait()
    proc.kill()
    await proc.wait()
    raise AssertionError(f"the service did not exit within {within}s of {signum}")


class Producer:
    """Publishes numbered JSON orders (and a poison record every 250th) into Kafka
    through a bus of its own, paced; stops when told, having sent what it counted."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.sent = 0
        self.poison: list[str] = []
        self.stop = trio.Event()
        self.finished = trio.Event()

    async def run(self, limit: int | None = None, per_tick: int = 40, tick: float = 0.05) -> None:
        from bridges.kafka import KafkaBridge

        s = self.setup
        try:
            async with open_bus(name="producer") as bus:
                bus._declare_pattern(f"{s.p}.orders.*", RawCodec())
                await bus.attach(
                    KafkaBridge(s.kafka, name="producer", group_id=f"{s.p}-producer"),
                    export=[f"{s.p}.orders.*"],
                )
                while not self.stop.is_set() and (limit is None or self.sent < limit):
                    for _ in range(per_tick):
                        i = self.sent
                        topic = s.orders[i % 2]
                        if i % 250 == 125:
                            key = f"poison-{i}"
                            self.poison.append(key)
                            await bus.publish(topic, b"\xff not json " + str(i).encode(), key=key)
                        await bus.publish(topic, b'{"n": %d}' % i, key=f"k{i % 16}")
                        self.sent += 1
                    await trio.sleep(tick)
        finally:
            self.finished.set()


class Counts:
    """Polls the ready counts of the check and dead-letter queues with one connection."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.bridge: Any = None

    async def __aenter__(self) -> Counts:
        self.bridge = self.setup.rabbit("count")
        await self.bridge.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bridge.aclose()

    async def mirrored(self) -> int:
        ready, _ = await self.bridge.queue_counts(self.setup.check_queue)
        return int(ready)

    async def dead(self) -> int:
        ready, _ = await self.bridge.queue_counts(self.setup.dead_queue)
        return int(ready)


async def _drain_queues(
    setup: Setup, mirrored: int, dead: int
) -> tuple[list[int], list[Envelope[Any]]]:
    """Consume the check queue (*mirrored* messages) and the dead-letter queue."""
    numbers: list[int] = []
    letters: list[Envelope[Any]] = []
    async with open_bus(name="checker") as bus:
        bus._declare_pattern(f"{setup.p}.orders.*", RawCodec())
        bus._declare_pattern(setup.dead_topic, RawCodec())
        bus.subscribe(
            f"{setup.p}.orders.*",
            lambda env: numbers.append(msgspec.json.decode(env.payload)["n"]),
        )
        bus.subscribe(setup.dead_topic, letters.append)
        await bus.attach(
            setup.rabbit("check", setup.check_queue), import_=[f"{setup.p}.orders.#"]
        )
        await bus.attach(setup.rabbit("check-dl", setup.dead_queue), import_=[setup.dead_topic])
        with trio.move_on_after(60):
            while len(numbers) < mirrored or len(letters) < dead:  # noqa: ASYNC110
                await trio.sleep(0.1)
    return numbers, letters


def _report(numbers: list[int], sent: int) -> tuple[int, int]:
    counts = Counter(numbers)
    duplicates = sum(c - 1 for c in counts.values())
    lost = sent - len(set(numbers) & set(range(sent)))
    return duplicates, lost


@pytest.mark.timeout(170)
async def test_kill9_three_times_mid_stream_loses_nothing(brokers: Any, tmp_path: Path) -> None:
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = Setup(brokers, tmp_path)
    # small export batches and bursts of records: the service always has a backlog
    # queued for RabbitMQ when it is killed, not yet confirmed there, so not committed
    setup.write_config(batch=16)
    await setup.prepare()
    producer = Producer(setup)
    kills = 0
    in_flight: list[int] = []  # imported, not done (so not committed) when killed
    async with Counts(setup) as counts, trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(producer.run, per_tick=600, tick=0.5))
        proc = await setup.start()
        try:
            for _ in range(3):
                await _until_healthy(setup, proc)
                seen = await counts.mirrored()
                # kill only while messages are flowing through it
                await _until("messages to flow", lambda: _more(counts, seen + 1200), 60, setup)  # noqa: B023
                assert not producer.finished.is_set()
                # and at a moment it holds imported messages that are not done: on a quiet
                # machine a burst goes through in milliseconds, between two of them
                # nothing is in flight
                with trio.fail_after(30):
                    while True:
                        samples = await _metrics(setup)
                        held = int(samples[("trio_bus_bridge_in_flight", "kafka")])
                        if held > 0:
                            break
                        await trio.sleep(0.005)
                in_flight.append(held)
                proc.kill()  # SIGKILL
                await proc.wait()
                kills += 1
                proc = await setup.start()
            producer.stop.set()
            await producer.finished.wait()
            await _until_healthy(setup, proc)
            sent = producer.sent
            await _until("every message at the destination",
                         lambda: _more(counts, sent), 90, setup)
            await _until("every poison record in the dead-letter queue",
                         lambda: _at_least(counts.dead, len(producer.poison)), 30, setup)
            assert await _stop(proc) == 0, setup.log_tail()
            mirrored, dead = await counts.mirrored(), await counts.dead()
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
    numbers, letters = await _drain_queues(setup, mirrored, dead)
    duplicates, lost = _report(numbers, sent)
    dead_keys = Counter(env.key for env in letters)
    print(
        f"kill -9 x{kills} (in flight at each kill: {in_flight}): {sent} sent, "
        f"{len(set(numbers))} mirrored, {duplicates} "
        f"duplicates, {lost} lost; {len(producer.poison)} poison, {len(dead_keys)} "
        f"dead-lettered ({sum(dead_keys.values()) - len(dead_keys)} duplicates)"
    )
    assert sent >= 3000 and kills == 3 and all(n > 0 for n in in_flight)
    assert lost == 0
    assert set(numbers) == set(range(sent))
    assert set(dead_keys) == set(producer.poison)
    assert all("cannot decode" in env.headers[H_ERROR] for env in letters)


async def _metrics(setup: Setup) -> dict[tuple[str, str], float]:
    """/metrics parsed with prometheus_client's parser: (sample name, bridge or
    subscriber or topic label) -> value."""
    status, body = await _get(setup.port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "") if sample.labels else ""
            if "direction" in sample.labels:
                label = f"{sample.labels['bridge']}:{sample.labels['direction']}"
            samples[(sample.name, label)] = sample.value
    return samples


async def _more(counts: Counts, target: int) -> bool:
    return await counts.mirrored() >= target


async def _at_least(read: Any, target: int) -> bool:
    return bool(await read() >= target)


async def _publish_payments(setup: Setup, start: int, count: int) -> None:
    """*count* payments into RabbitMQ (to the service's pre-bound queue), confirmed."""
    async with open_bus(name="payer") as bus:
        bus._declare_pattern(f"{setup.p}.payments.#", RawCodec())
        await bus.attach(setup.rabbit("payer"), export=[f"{setup.p}.payments.#"])
        for m in range(start, start + count):
            await bus.publish(setup.payments, b'{"m": %d}' % m, key=f"c{m % 8}",
                              confirm=m == start + count - 1)


async def _read_payments(setup: Setup, expected: int) -> list[int]:
    """Every payment the service put in Kafka, read by a new consumer group; waits a
    little after the expected count for duplicates, if any."""
    from bridges.kafka import KafkaBridge

    got: list[int] = []
    async with open_bus(name="verify") as bus:
        bus._declare_pattern(f"{setup.p}.payments.#", RawCodec())
        bus.subscribe(f"{setup.p}.payments.#",
                      lambda env: got.append(msgspec.json.decode(env.payload)["m"]))
        bridge = KafkaBridge(setup.kafka, name="verify", group_id=f"{setup.p}-verify")
        await bus.attach(bridge, import_=[f"{setup.p}.payments.#"])
        with trio.move_on_after(60):
            while len(got) < expected:  # noqa: ASYNC110 - filled by the bridge
                await trio.sleep(0.1)
        await trio.sleep(1.5)
    return got


@pytest.mark.timeout(120)
async def test_sigterm_drains_mid_stream_without_duplicates(
    brokers: Any, tmp_path: Path
) -> None:
    """Two clean stops mid-stream, both directions flowing: exit 0 each time, quickly,
    and nothing arrives twice (what was in flight was finished and acknowledged)."""
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = Setup(brokers, tmp_path)
    setup.write_config()
    await setup.prepare()
    await kits.kafka_kit(lambda: None).prepare([setup.payments])
    admin = setup.rabbit("admin")
    await admin.open()
    try:  # the service's own queue, bound before it starts: payments wait there
        await admin.create_topic(f"{setup.p}.payments.#", queue=f"{setup.exchange}.rabbitmq")
    finally:
        await admin.aclose()
    await _publish_payments(setup, 0, 600)
    producer = Producer(setup)
    stops: list[float] = []
    async with Counts(setup) as counts, trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(producer.run, per_tick=100, tick=0.1))
        for run in range(2):
            proc = await setup.start()
            try:
                await _until_healthy(setup, proc)
                seen = await counts.mirrored()
                await _until("messages to flow", lambda: _more(counts, seen + 1000), 60, setup)  # noqa: B023
                if run == 1:
                    await _publish_payments(setup, 600, 600)
                    assert (await _get(setup.port, "/healthz"))[0] == 200  # probes lag too
                    samples = await _metrics(setup)
                    print("lag:", {k[1]: v for k, v in samples.items()
                                   if k[0] == "trio_bus_bridge_lag"})
                    assert ("trio_bus_bridge_lag", "kafka") in samples
                    assert ("trio_bus_bridge_lag", "rabbitmq") in samples
                    assert samples[("trio_bus_bridge_imported_total", "kafka")] >= 1000
                    assert samples[("trio_bus_bridge_confirmed_total", "rabbitmq")] >= 1000
                    assert samples[("trio_bus_bridge_up", "kafka")] == 1
                    assert samples[("trio_bus_service_state", "running")] == 1
                    assert ("trio_bus_subscriber_mailbox_depth", "rabbitmq:export") in samples
                    await _until(
                        "the payments to be exported to Kafka",
                        lambda: _exported(setup, 600), 30, setup,  # by this process
                    )
                    # each of them acknowledged to RabbitMQ once Kafka confirmed it, and
                    # the queue drained: its lag (messages waiting) back to 0
                    await _until(
                        "the payments to be acknowledged and RabbitMQ's lag to reach 0",
                        lambda: _metric_at(setup, {("trio_bus_bridge_acked_total", "rabbitmq"):
                                                   (600, None),
                                                   ("trio_bus_bridge_lag", "rabbitmq"): (0, 0)}),
                        30, setup,
                    )
                    producer.stop.set()
                    await producer.finished.wait()
                    sent = producer.sent
                    await _until("every order mirrored",
                                 functools.partial(_more, counts, sent), 60, setup)
                    await _until(  # all of Kafka consumed and committed
                        "Kafka's lag to reach 0",
                        lambda: _metric_at(setup, {("trio_bus_bridge_lag", "kafka"): (0, 0)}),
                        30, setup,
                    )
                assert not producer.finished.is_set() or run == 1
                started = trio.current_time()
                assert await _stop(proc) == 0, setup.log_tail()
                stops.append(trio.current_time() - started)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    await proc.wait()
        mirrored, dead = await counts.mirrored(), await counts.dead()
    numbers, letters = await _drain_queues(setup, mirrored, dead)
    duplicates, lost = _report(numbers, sent)
    payments = await _read_payments(setup, 1200)
    print(
        f"SIGTERM x2 mid-stream, exits after {[round(s, 2) for s in stops]} s: {sent} orders "
        f"sent, {len(set(numbers))} mirrored, {duplicates} duplicates, {lost} lost; "
        f"1200 payments, {len(set(payments))} in Kafka, "
        f"{len(payments) - len(set(payments))} duplicates"
    )
    assert lost == 0 and duplicates == 0
    assert sorted(payments) == list(range(1200))
    assert sorted(env.key for env in letters) == sorted(producer.poison)


async def _metric_at(
    setup: Setup, bounds: dict[tuple[str, str], tuple[float, float | None]]
) -> bool:
    """Every sample named in *bounds* is within its (low, high) bounds; high None: any."""
    samples = await _metrics(setup)
    for name, (low, high) in bounds.items():
        value = samples.get(name)
        if value is None or value < low or (high is not None and value > high):
            return False
    return True


async def _exported(setup: Setup, count: int) -> bool:
    samples = await _metrics(setup)
    return samples.get(("trio_bus_bridge_confirmed_total", "kafka"), 0) >= count


@pytest.mark.timeout(90)
async def test_second_signal_exits_at_once_and_loses_nothing(
    brokers: Any, tmp_path: Path
) -> None:
    """A slow drain (one record per RabbitMQ publish) interrupted by a second SIGTERM:
    the service exits at once, non-zero, saying what was left; a restart delivers it."""
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = Setup(brokers, tmp_path)
    setup.write_config(batch=1)
    await setup.prepare()
    producer = Producer(setup)
    await producer.run(limit=6000, per_tick=6000, tick=0)  # more than the mailbox holds
    sent = producer.sent
    async with Counts(setup) as counts:
        proc = await setup.start()
        try:
            await _until_healthy(setup, proc)
            await _until("a backlog in flight", lambda: _in_flight(setup, 500), 30, setup)
            assert (await _get(setup.port, "/healthz"))[0] == 200  # probes lag too
            lag = (await _metrics(setup))[("trio_bus_bridge_lag", "kafka")]
            assert lag > 0  # the export mailbox is full: Kafka holds the rest
            proc.send_signal(signal.SIGTERM)
            await trio.sleep(0.2)
            assert proc.poll() is None, "the drain ended before the second signal"
            started = trio.current_time()
            code = await _stop(proc, within=10)
            elapsed = trio.current_time() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        said = [line for line in setup.log_tail().splitlines() if "second SIGTERM" in line]
        assert code == 128 + signal.SIGTERM and elapsed < 2, (code, elapsed)
        assert len(said) == 1
        assert said[0].startswith("bus bridge: error: second SIGTERM: exiting now; left: ")
        assert re.search(r"kafka: \d+ imported message\(s\) not done", said[0])
        assert re.search(r"rabbitmq: \d+ queued for export", said[0])
        setup.write_config()
        proc = await setup.start()
        try:
            await _until("every message after the restart",
                         functools.partial(_more, counts, sent), 60, setup)
            await _until("the dead letters", lambda: _at_least(counts.dead, len(producer.poison)),
                         30, setup)
            assert await _stop(proc) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        mirrored, dead = await counts.mirrored(), await counts.dead()
    numbers, _ = await _drain_queues(setup, mirrored, dead)
    duplicates, lost = _report(numbers, sent)
    print(f"Kafka lag {lag:.0f} behind a full mailbox; second SIGTERM after {elapsed:.2f} s: "
          f"{said[0]}; after a restart: {sent} sent, "
          f"{duplicates} duplicates, {lost} lost")
    assert lost == 0


async def _in_flight(setup: Setup, at_least: int) -> bool:
    samples = await _metrics(setup)
    return samples.get(("trio_bus_bridge_in_flight", "kafka"), 0) >= at_least


async def test_rabbitmq_flags_redeliveries(brokers: Any, tmp_path: Path) -> None:
    """`trio_bus_bridge_redelivered_total` counts what RabbitMQ marks redelivered: the
    messages a consumer held without acknowledging when it went away."""
    brokers.require("rabbitmq")
    setup = Setup(brokers, tmp_path)
    queue, pattern = f"{setup.p}.redelivery", f"{setup.p}.payments.#"
    admin = setup.rabbit("admin")
    await admin.open()
    try:
        await admin.create_topic(pattern, queue=queue)
    finally:
        await admin.aclose()
    await _publish_payments(setup, 0, 20)
    async with open_bus(name="first", drain_timeout=0.2) as first:
        first._declare_pattern(pattern, RawCodec())

        async def never_done(env: Envelope[bytes]) -> None:
            await trio.sleep_forever()

        first.subscribe(pattern, never_done)
        held = await first.attach(setup.rabbit("first", queue), import_=[pattern])
        await _until("the first consumer to hold all 20",
                     lambda: _true(held.port.imported >= 20), 30, setup)
    assert held.port.redelivered == 0 and held.port.acked == 0
    got: list[bytes] = []
    async with open_bus(name="second") as second:
        second._declare_pattern(pattern, RawCodec())
        second.subscribe(pattern, lambda env: got.append(env.payload))
        again = await second.attach(setup.rabbit("second", queue), import_=[pattern])
        await _until("the redeliveries", lambda: _true(again.port.acked >= 20), 30, setup)
    assert len(got) == 20 and again.port.redelivered == 20


async def _true(value: bool) -> bool:
    return value
