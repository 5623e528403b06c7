"""A small application of the scale-out tests, run as several processes in one group.

``python -m tests.scaleout.scale_app BROKER TOPIC GROUP NAME [WORK]`` imports *TOPIC*
through the harness's *BROKER* (``kafka``, ``rabbitmq`` or ``pubsub``; settings from the
environment ``make brokers-env`` prints) as member *NAME* of consumer group *GROUP*. It
handles each keyed order with four workers (per-key order inside the process), then
writes one line ``handled N KEY SEQ`` to stdout, unbuffered: what the test read was
handled, even if the process is killed the next instant. It prints ``ready`` once its
bridge is attached and leaves cleanly on SIGTERM.

Its handler pretends to work for 0, 1 or 2 times *WORK* seconds (by the order's number;
default 0.001): uneven, so orders of one key handled by different workers would finish
out of order. Nothing else here is test-specific: it is the application an operator
would start N times.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import msgspec
import trio

from bus import Envelope, open_bus
from bus.abc import Bridge


class Order(msgspec.Struct):
    n: int
    """Its number among everything the producer sent (0, 1, 2, ...)."""
    seq: int
    """Its number among the orders of its key (0, 1, 2, ... per key)."""


def make_bridge(broker: str, name: str, group: str, exchange: str | None = None) -> Bridge:
    """The harness's *broker*, with a group member that notices a dead peer quickly
    (RabbitMQ: on *exchange*, default ``$SCALE_EXCHANGE`` or the group's name)."""
    env = os.environ.get
    if broker == "kafka":
        from bridges.kafka import KafkaBridge

        # a member killed with -9 holds its partitions until the session times out:
        # 6 s rather than aiokafka's 10 s (heartbeats every second)
        options: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
        return KafkaBridge(
            env("KAFKA_SERVER") or "127.0.0.1:9092", name=name, group_id=group,
            commit_interval=0.2, consumer_options=options,
        )
    if broker == "rabbitmq":
        from bridges.rabbitmq import RabbitMQBridge

        url = env("RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/"
        exchange = exchange or env("SCALE_EXCHANGE") or group
        return RabbitMQBridge(url, name=name, group=group, exchange=exchange)
    if broker == "pubsub":
        from bridges.pubsub import PubSubBridge

        return PubSubBridge(
            env("GCP_PROJECT_ID") or env("PUBSUB_PROJECT_ID") or "trio-bus-test", name=name,
            group=group, emulator_host=env("PUBSUB_EMULATOR_HOST") or "127.0.0.1:8085",
        )
    raise SystemExit(f"scale_app: unknown broker {broker!r}: kafka, rabbitmq or pubsub")


def _say(line: str) -> None:
    os.write(1, f"{line}\n".encode())


async def main(broker: str, topic: str, group: str, name: str, work: str = "0.001") -> None:
    seconds = float(work)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_bus(name=name, drain_timeout=20) as bus:
            bus.topic(topic, Order)

            async def handle(env: Envelope[Order]) -> None:
                await trio.sleep(seconds * (env.payload.n % 3))  # the application's work
                _say(f"handled {env.payload.n} {env.key} {env.payload.seq}")

            # per-key order inside the process with four workers
            bus.subscribe(topic, handle, concurrency=4)
            await bus.attach(make_bridge(broker, name, group), import_=[topic])
            _say("ready")
            async for _ in signals:
                break


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:6])
