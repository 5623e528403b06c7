"""Two `bus bridge` instances of one service file mirroring Kafka -> RabbitMQ in one
Kafka consumer group: one killed with SIGKILL mid-stream (while it holds imported
messages that are not done); the other takes its partitions over, and every order
reaches RabbitMQ (duplicates counted). The service file is the same for both: the
metrics port is 0 (each instance picks a free one and logs it) and no static
membership, which would need an id per instance.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from bus import Envelope, open_bus
from tests.cli import service_kit
from tests.scaleout import scale_kit
from tests.scaleout.scale_app import Order

pytestmark = pytest.mark.brokers

METRICS_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)/metrics")


def _config(setup: Any) -> str:
    return f"""
[service]
name = "{setup.p}"
drain_timeout = 30
metrics_port = 0
dead_letter = {{ broker = "rabbitmq", topic = "{setup.dead_topic}", queue = "{setup.dead_queue}" }}

[brokers.kafka]
type = "kafka"
bootstrap_servers = "{setup.kafka}"
group_id = "{setup.group}"
commit_interval = 0.2
# a member killed with -9 holds its partitions until its session times out: 6 s
consumer_options = {{ session_timeout_ms = 6000, heartbeat_interval_ms = 1000 }}
{setup.broker_table("rabbitmq")}
[[topics]]
pattern = "{setup.p}.orders.*"
payload = "json"
import_from = "kafka"
export_to = "rabbitmq"
"""


class Instance:
    """One `bus bridge` process; its output goes to a log file, and its metrics port is
    known once it logged it."""

    def __init__(self, setup: Any, name: str) -> None:
        self.setup, self.name = setup, name
        self.log = setup.tmp / f"{name}.log"
        self.port: int | None = None
        self.listening = trio.Event()
        self.proc: trio.Process | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        env = {**os.environ, "PYTHONPATH": str(service_kit.ROOT),
               service_kit.PASSWORD_VAR: self.setup.password}
        self.proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bus", "bridge", str(self.setup.config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        task_status.started()
        assert self.proc.stdout is not None
        with self.log.open("ab") as log:
            async with self.proc.stdout:
                while chunk := await self.proc.stdout.receive_some(65536):
                    log.write(chunk)
                    log.flush()
                    if self.port is None and (found := METRICS_URL.search(self.log.read_bytes())):
                        self.port = int(found.group(1))
                        self.listening.set()
        await self.proc.wait()

    async def sample(self, name: str) -> float:
        assert self.port is not None
        return (await service_kit.metrics(self.port)).get((name, "kafka"), 0.0)

    def tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""


class Mirror:
    """The orders that reached RabbitMQ (the queue bound to them), as they arrive."""

    def __init__(self, setup: Any) -> None:
        self.setup = setup
        self.numbers: list[int] = []
        self.changed = trio.Event()

    def _got(self, env: Envelope[Order]) -> None:
        self.numbers.append(env.payload.n)
        self.changed.set()
        self.changed = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.setup
        async with open_bus(name="mirror") as bus:
            bus.topic(s.orders[0], Order)
            bus.subscribe(s.orders[0], self._got)
            await bus.attach(s.bridge("rabbitmq", "check", queue=s.check_queue),
                             import_=[f"{s.p}.orders.#"])
            task_status.started()
            await trio.sleep_forever()

    async def until(self, what: str, check: Any, within: float, *instances: Instance) -> None:
        with trio.move_on_after(within):
            while not check():
                await self.changed.wait()
            return
        logs = "\n".join(f"--- {i.name}:\n{i.tail()}" for i in instances)
        raise AssertionError(f"timed out waiting for {what} ({len(self.numbers)} there)\n{logs}")


@pytest.mark.timeout(150)
async def test_two_bridge_instances_one_killed_lose_nothing(
    brokers: Any, tmp_path: Path
) -> None:
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = service_kit.Setup(brokers, tmp_path)
    setup.write(_config(setup))
    topic = setup.orders[0]
    await setup.prepare("kafka", [topic])  # 4 partitions
    await setup.bind(f"{setup.p}.orders.#", setup.check_queue)
    producer = scale_kit.Producer(topic)
    mirror = Mirror(setup)
    a, b = Instance(setup, "a"), Instance(setup, "b")
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(mirror.run)
            await nursery.start(a.run)
            await nursery.start(b.run)
            nursery.start_soon(producer.run, setup.bridge("kafka", "producer"))
            for instance in (a, b):
                with trio.move_on_after(60):
                    await instance.listening.wait()
                if not instance.listening.is_set():
                    raise AssertionError(f"{instance.name} did not start:\n{instance.tail()}")
            # both instances mirror a share, and "a" holds imported messages not yet
            # confirmed by RabbitMQ when it is killed
            held: list[float] = []
            await setup.until(
                "both instances to import and a to hold messages in flight",
                lambda: _sharing(a, b, held), 60)
            assert a.proc is not None
            a.proc.kill()
            await a.proc.wait()
            at_kill = len(mirror.numbers)
            await mirror.until("orders to keep flowing after the kill",
                               lambda: len(mirror.numbers) >= at_kill + 500, 60, a, b)
            producer.stop.set()
            await producer.finished.wait()
            sent = producer.sent
            await mirror.until("every order at RabbitMQ",
                               lambda: set(mirror.numbers) >= set(range(sent)), 60, a, b)
            assert b.proc is not None
            assert await service_kit.stop(b.proc) == 0, b.tail()
        finally:
            for instance in (a, b):
                if instance.proc is not None and instance.proc.returncode is None:
                    instance.proc.kill()
            nursery.cancel_scope.cancel()
    lost, duplicates = scale_kit.lost_and_duplicates(mirror.numbers, sent)
    print(
        f"2 bus bridge instances Kafka -> RabbitMQ, one killed -9 holding {held[0]:.0f} "
        f"in flight: {sent} sent, {len(set(mirror.numbers))} mirrored, {lost} lost, "
        f"{duplicates} duplicates"
    )
    assert held[0] > 0
    assert lost == 0


async def _sharing(a: Instance, b: Instance, held: list[float]) -> bool:
    """Both have imported some, and *a* holds messages not done (appended to *held*)."""
    imported = [await i.sample("trio_bus_bridge_imported_total") for i in (a, b)]
    held[:] = [await a.sample("trio_bus_bridge_in_flight")]
    return min(imported) >= 100 and held[0] > 0
