"""The backlog case: resident size while a large backlog waits on a real broker.

SPEC §6 asks that resident size stay flat (within ±10 %) while a 100k-message backlog
waits on a broker. The backlog is produced first (through an exporting bus); then a bus
imports it through the bridge into a deliberately slow subscriber (``HANDLER_RATE``
messages/s) for *seconds*. Backpressure must hold the backlog on the broker — the
mailbox stays at its capacity, the bridge pauses its consumer — so RSS sampled after a
warm-up stays within ±10 % of the first sample. The figures: RSS at the reference point
and its largest deviation, the mailbox's largest depth, messages handled.

``python -m benchmarks.backlog kafka|rabbitmq [--json PATH]`` is the command; brokers
from the environment (``make -s brokers-env``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio

from bus import Envelope, open_bus
from bus.abc import Bridge

from ._messages import Tick
from .local import quiet_logs
from .memory import rss_bytes

HANDLER_RATE = 2_000.0
"""Messages/s the slow subscriber handles: over *seconds* it takes a fraction of the
backlog, so most of it waits on the broker while RSS is sampled."""
CAPACITY = 1024
SAMPLE_EVERY = 0.5
WARMUP = 3.0


def make_bridge(broker: str, name: str, group: str) -> Bridge:
    """A bridge to *broker* as the harness runs it (settings from the environment)."""
    if broker == "kafka":
        from bridges.kafka import KafkaBridge

        return KafkaBridge(os.environ.get("KAFKA_SERVER", "127.0.0.1:9092"), name=name,
                           group_id=group)
    if broker == "rabbitmq":
        from bridges.rabbitmq import RabbitMQBridge

        url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
        return RabbitMQBridge(url, name=name, group=group, exchange="trio-bus-bench")
    raise ValueError(f"unknown broker {broker!r}: use kafka or rabbitmq")


async def _produce(broker: str, topic: str, group: str, count: int,
                   progress: Callable[[str], None]) -> float:
    """Register the consumer group, then export *count* messages; returns seconds."""
    async with open_bus(name="backlog-register") as reg:
        reg.topic(topic, Tick)
        att = await reg.attach(make_bridge(broker, "register", group), import_=[topic])
        await att.detach()
    t0 = time.perf_counter()
    async with open_bus(name="backlog-producer", drain_timeout=600) as bus:
        bus.topic(topic, Tick)
        await bus.attach(make_bridge(broker, "producer", f"{group}-p"), export=[topic],
                         capacity=8192)
        for i in range(count):
            await bus.publish(topic, Tick(i, time.perf_counter_ns()), key=f"k{i % 64}")
            if i % 20_000 == 0:
                progress(f"produced {i:,}/{count:,}")
    return time.perf_counter() - t0


async def measure(broker: str, *, count: int = 100_000, seconds: float = 30.0,
                  progress: Callable[[str], None] = print) -> dict[str, Any]:
    topic = f"bench.backlog.{uuid.uuid4().hex[:8]}"
    group = f"bench-backlog-{uuid.uuid4().hex[:8]}"
    with quiet_logs():
        produce_s = await _produce(broker, topic, group, count, progress)
        progress(f"backlog of {count:,} on {broker} in {produce_s:.1f}s; consuming slowly")
        handled = [0]
        depth_max = 0
        samples: list[tuple[float, int]] = []
        async with open_bus(name="backlog-consumer", drain_timeout=1) as bus:
            bus.topic(topic, Tick)
            per_sleep = 5

            async def slow(env: Envelope[Tick]) -> None:
                handled[0] += 1
                if handled[0] % per_sleep == 0:
                    await trio.sleep(per_sleep / HANDLER_RATE)

            sub = bus.subscribe(topic, slow, name="slow", capacity=CAPACITY)
            await bus.attach(make_bridge(broker, "consumer", group), import_=[topic])
            t0 = time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds:
                await trio.sleep(SAMPLE_EVERY)
                depth_max = max(depth_max, sub.stats().mailbox_depth)
                if elapsed >= WARMUP:
                    samples.append((elapsed, rss_bytes()))
            rate = handled[0] / (time.perf_counter() - t0)
    ref = samples[0][1]
    deviation = max(abs(rss - ref) / ref for _, rss in samples)
    return {
        "broker": broker,
        "backlog": count,
        "seconds": seconds,
        "handled": handled[0],
        "handled_rate": round(rate, 1),
        "left_on_broker": count - handled[0],
        "mailbox_capacity": CAPACITY,
        "mailbox_depth_max": depth_max,
        "rss_reference_mb": round(ref / 2**20, 1),
        "rss_max_deviation": round(deviation, 4),
        "flat_within_10pct": deviation <= 0.10,
        "samples": [(round(t, 2), rss) for t, rss in samples],
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog")
    parser.add_argument("broker", choices=["kafka", "rabbitmq"])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    report = trio.run(lambda: measure(args.broker, count=args.count, seconds=args.seconds))
    shown = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0 if report["flat_within_10pct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
