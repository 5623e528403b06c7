"""Duplicates a ``kill -9`` causes with a long retry in flight: in-place backoff vs tiers.

A consuming child imports one topic (one Kafka partition, one RabbitMQ queue, one Kinesis
shard, one Pub/Sub subscription) with a
subscriber of 4 lanes. The first message is poison (its handler always fails, alone on
its lane: its key is chosen so); the others go to the other lanes. Mode ``blocking``
retries it in place with a backoff of ``--retry`` seconds (today's default behaviour);
mode ``tiers`` sends it to one retry tier of ``--retry`` seconds
(``subscribe(retry_tiers=[...])``). Once the child handled every other message, it is
killed with SIGKILL; a second child starts, and every message it handles again is a
duplicate. Three markers (one per lane, published after the second child started) say
when it has caught up. Nothing may be lost: every message is handled at least once.

``python -m benchmarks.retry_kill9 [--brokers kafka,rabbitmq,kinesis,pubsub] [--messages 2000]
[--retry 600]`` prints one line per broker and mode, and ``--json PATH`` writes them.
The child: ``python -m benchmarks.retry_kill9 child KIND MODE TOPIC GROUP OUT RETRY``.
Talks to the harness's brokers (``make brokers-env``); names are random per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

import msgspec
import trio

KAFKA = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
LANES = 4
POISON_KEY = "poison"
MARKER = 1_000_000_000  # marker numbers start here


class Order(msgspec.Struct, frozen=True):
    n: int


def _lane(key: str) -> int:
    return zlib.crc32(key.encode()) % LANES  # the bus's per-key lane (bus/_group.key_slot)


def keys() -> list[str]:
    """One key per lane other than the poison's: the others never wait behind it."""
    taken, found = {_lane(POISON_KEY)}, []
    for i in range(1000):
        key = f"k{i}"
        if _lane(key) not in taken:
            taken.add(_lane(key))
            found.append(key)
    return found


def _bridge(kind: str, name: str, group: str, exchange: str) -> Any:
    if kind == "kafka":
        from bridges.kafka import KafkaBridge

        return KafkaBridge(KAFKA, name=name, group_id=group)
    if kind == "kinesis":
        from bridges.kinesis import KinesisBridge

        # kinesis-mock answers at once: poll and take over a dead member's lease faster
        # than the defaults (sized for AWS), as the conformance suite's kit does
        return KinesisBridge(
            name=name, group=group, region=os.environ.get("AWS_REGION", "us-east-1"),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            endpoint_url=os.environ.get("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568"),
            checkpoints=Path(tempfile.gettempdir()) / f"{group.removesuffix('-out')}.sqlite",
            poll_interval=0.05, discover_interval=0.5, lease_ttl=1.5,
        )
    if kind == "pubsub":
        from bridges.pubsub import PubSubBridge

        return PubSubBridge(
            os.environ.get("GCP_PROJECT_ID", "trio-bus-test"), name=name, group=group,
            emulator_host=os.environ.get("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
        )
    from bridges.rabbitmq import RabbitMQBridge

    return RabbitMQBridge(RABBITMQ_URL, name=name, group=group, exchange=exchange)


# -- the child ----------------------------------------------------------------------------


async def child(kind: str, mode: str, topic: str, group: str, out: str, retry: float) -> None:
    from bus import Envelope, RetryPolicy, open_bus
    from bus.abc import H_ORIGIN

    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(line: str) -> None:
        os.write(fd, f"{line}\n".encode())  # unbuffered: what is written was handled

    dlq = f"{topic}.dlq"
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_bus(name="child", dead_letter_topic=dlq, drain_timeout=2) as bus:
            bus.topic(topic, Order)

            async def handle(env: Envelope[Order]) -> None:
                if env.payload.n == 0:
                    write(f"p{env.attempt}")
                    raise ValueError("poison")
                write(str(env.payload.n))

            if mode == "tiers":
                bus.subscribe(topic, handle, name="work", concurrency=LANES,
                              retry=RetryPolicy(attempts=1), retry_tiers=[retry])
                imports, exports = [topic, f"{topic}.retry.*"], [f"{topic}.retry.*", dlq]

                def arrived(env: Envelope[Order]) -> None:
                    if H_ORIGIN in env.headers:  # back from the broker: in its tier's hands
                        write("tier-in")

                bus.subscribe(f"{topic}.retry.*", arrived, name="tier-audit")
            else:
                bus.subscribe(topic, handle, name="work", concurrency=LANES, retry=RetryPolicy(
                    attempts=2, base_delay=retry, max_delay=retry, jitter=0))
                imports, exports = [topic], [dlq]
            bus.subscribe(dlq, lambda env: write("dead"), name="dlq")
            exchange = topic.split(".")[0]
            await bus.attach(_bridge(kind, kind, group, exchange), import_=imports,
                             export=exports)
            write("ready")
            async for _ in signals:
                break
    os.close(fd)


# -- the parent ---------------------------------------------------------------------------


def _asyncio(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


async def _kafka_topics(names: list[str], create: bool) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:
            if create:
                await admin.create_topics([NewTopic(n, 1, 1) for n in names])
                while not set(names) <= set(await admin.list_topics()):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            else:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    await trio.to_thread.run_sync(_asyncio, run())


async def _admin_topics(kind: str, names: list[str], create: bool) -> None:
    """Create (one shard) or delete *names* through a bridge of *kind*."""
    from bus import open_bus

    bridge = _bridge(kind, "admin", "admin", "")
    async with open_bus(name="admin") as bus:
        await bus.attach(bridge, export=["retry-kill9.admin"])  # attach needs a pattern
        for name in names:
            if create:
                await bridge.create_topic(name)
            else:
                await bridge.delete_topic(name)


async def _rabbitmq_delete(exchange: str, queue: str) -> None:
    import aio_pika

    async def run() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection, connection.channel() as ch:
            await ch.queue_delete(queue)
            await ch.exchange_delete(exchange)

    await trio.to_thread.run_sync(_asyncio, run())


class Run:
    """One measurement: its names, its output file, its children."""

    def __init__(self, kind: str, mode: str, retry: float) -> None:
        self.kind, self.mode, self.retry = kind, mode, retry
        tag = uuid.uuid4().hex[:10]
        self.topic = f"rk{tag}.orders"
        self.group = f"g-rk{tag}"
        self.out = Path(tempfile.gettempdir()) / f"retry-kill9-{tag}.out"

    def lines(self) -> list[str]:
        return self.out.read_text().split() if self.out.exists() else []

    async def until(self, what: str, check: Any, seconds: float = 120) -> None:
        with trio.fail_after(seconds):
            while not check(self.lines()):  # noqa: ASYNC110 - a file other processes fill
                await trio.sleep(0.05)

    async def start(self) -> trio.Process:
        before = self.lines().count("ready")
        cmd = [sys.executable, "-m", "benchmarks.retry_kill9", "child", self.kind, self.mode,
               self.topic, self.group, str(self.out), str(self.retry)]
        proc = await trio.lowlevel.open_process(cmd)
        await self.until("ready", lambda lines: lines.count("ready") > before, 60)
        return proc

    async def publish(self, numbers: list[tuple[int, str]]) -> None:
        from bus import open_bus

        async with open_bus(name="producer") as bus:
            bus.topic(self.topic, Order)
            exchange = self.topic.split(".")[0]
            await bus.attach(_bridge(self.kind, "out", f"{self.group}-out", exchange),
                             export=[self.topic])
            for i, (n, key) in enumerate(numbers):
                await bus.publish(self.topic, Order(n), key=key,
                                  confirm=i == len(numbers) - 1)


def _stop(proc: trio.Process, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


async def measure(kind: str, mode: str, messages: int, retry: float,
                  until_poison: str | None = None, settle: float = 2.0,
                  kill_after: str | None = None) -> dict[str, Any]:
    """Kill the consumer once with a *retry*-second retry of the poison in flight, *settle*
    seconds after it caught up (the scenario, not a synchronisation); count what the next
    consumer handles again. *until_poison* (e.g. ``"dead"``): also wait for that line of
    the poison's path before stopping the second consumer, and *kill_after* (e.g.
    ``"tier-in"``: the poison's copy came back to the first consumer's tier) before the
    kill (tests use short tiers)."""
    run = Run(kind, mode, retry)
    lane_keys = keys()
    work = [(0, POISON_KEY)] + [(n, lane_keys[n % len(lane_keys)]) for n in range(1, messages)]
    others = {str(n) for n in range(1, messages)}
    topics = [run.topic, f"{run.topic}.retry.{_label(retry)}", f"{run.topic}.dlq"]
    if kind == "kafka":
        await _kafka_topics(topics, create=True)
    elif kind in ("kinesis", "pubsub"):
        await _admin_topics(kind, topics, create=True)
    try:
        first = await run.start()
        try:
            await run.publish(work)
            await run.until("every other message", lambda lines: others <= set(lines))
            if kill_after is not None:
                await run.until(kill_after, lambda lines: kill_after in lines)
            # the scenario: killed a while after it caught up (4 Kafka commit intervals),
            # the poison's retry still in flight
            await trio.sleep(settle)
        finally:
            _stop(first, signal.SIGKILL)
            await first.wait()
        handled_before = len([x for x in run.lines() if x in others])
        second = await run.start()
        try:
            markers = [(MARKER + i, key) for i, key in enumerate(lane_keys)]
            await run.publish(markers)
            await run.until("the markers", lambda lines: {str(n) for n, _ in markers} <= set(lines))
            if until_poison is not None:
                await run.until(until_poison, lambda lines: until_poison in lines)
        finally:
            _stop(second, signal.SIGTERM)
            with trio.move_on_after(30):
                await second.wait()
            _stop(second, signal.SIGKILL)
            await second.wait()
        lines = run.lines()
    finally:
        run.out.unlink(missing_ok=True)
        with trio.CancelScope(shield=True):
            if kind == "kafka":
                await _kafka_topics(topics, create=False)
            elif kind in ("kinesis", "pubsub"):
                await _admin_topics(kind, topics, create=False)
                (Path(tempfile.gettempdir()) / f"{run.group}.sqlite").unlink(missing_ok=True)
            else:
                exchange = run.topic.split(".")[0]
                await _rabbitmq_delete(exchange, f"{exchange}.{run.group}")
    handled = [x for x in lines if x in others]
    lost = others - set(handled)
    return {
        "broker": kind, "mode": mode, "retry_seconds": retry, "messages": messages,
        "handled_before_kill": handled_before, "handled": len(handled),
        "duplicates": len(handled) - len(set(handled)), "lost": len(lost),
        "poison": [x for x in lines if x.startswith("p") or x == "dead"],
    }


def _label(delay: float) -> str:
    from bus.abc import tier_topic

    return tier_topic("x", delay).rsplit(".", 1)[1]


async def main(brokers: list[str], messages: int, retry: float, out: str | None) -> None:
    results = []
    for kind in brokers:
        for mode in ("blocking", "tiers"):
            result = await measure(kind, mode, messages, retry)
            results.append(result)
            print(f"{kind:9} {mode:9} retry {retry:g} s: {messages} sent, "
                  f"{result['handled_before_kill']} handled before kill -9, "
                  f"{result['duplicates']} duplicates after it, {result['lost']} lost")
    if out:
        await trio.Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        k, m, t, g, o, r = sys.argv[2:8]
        trio.run(child, k, m, t, g, o, float(r))
    else:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--brokers", default="kafka,rabbitmq,kinesis,pubsub")
        p.add_argument("--messages", type=int, default=2000)
        p.add_argument("--retry", type=float, default=600.0)
        p.add_argument("--json", default=None)
        a = p.parse_args()
        trio.run(main, a.brokers.split(","), a.messages, a.retry, a.json)
