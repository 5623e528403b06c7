"""Latency through a broker: local publish → bridge → broker → bridge → local handler.

Two buses in one ``trio.run``: the first exports ``bench.#`` through one bridge, the
second imports it through another bridge on the same broker and its handler records
``time.time_ns() - payload.t`` (same process, same clock). Probe messages go out every
50 ms until one arrives (consumer group joined, queue bound), then ``n`` messages are
published at a fixed pace (``trio.sleep_until`` per message) so the numbers are latency
at a known load (:func:`pace`), not queueing behind a burst. Reports p50/p99/max in milliseconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._brokers import BUS_TOPIC
from ._harness import CaseFailed, Sample
from ._messages import Reading, reading

if TYPE_CHECKING:
    from bus import Envelope
    from bus.abc import Bridge

MAX_RATE = 1000.0
LOAD = 0.1
"""The latency cases publish at ``LOAD`` x the bridge's own measured throughput (the lower
of egress and ingress in the same run), at most ``MAX_RATE``: latency at a known, light
load, not queueing behind a backlog. A tenth, not a half as in the local suite: here one
process runs both buses and both bridges (one GIL) beside the broker, and at a quarter
RabbitMQ's exporter already fell behind on this machine (p50 130 ms instead of 5 ms)."""


def pace(egress: float | None, ingress: float | None) -> float:
    """The rate for a latency case from its bridge's measured medians."""
    measured = [r for r in (egress, ingress) if r]
    return max(10.0, min(MAX_RATE, LOAD * min(measured))) if measured else 100.0
TIMEOUT = 60.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def run(
    n: int,
    make_bridges: Callable[[], tuple[Bridge, Bridge]],
    cleanup: Callable[[], None],
    rate: float,
    topic: str = BUS_TOPIC,
) -> Sample:
    """Measure *n* paced messages on *topic* from an exporting to an importing bus."""
    from bus import open_bus

    latencies: list[float] = []

    async def main() -> float:
        done = trio.Event()
        probed = trio.Event()

        def handle(env: Envelope[Reading]) -> None:
            payload = env.payload
            if payload.n < 0:
                probed.set()
                return
            latencies.append((time.time_ns() - payload.t) / 1e6)
            if len(latencies) == n:
                done.set()

        out_bridge, in_bridge = make_bridges()
        async with open_bus(name="bench-out") as out, open_bus(name="bench-in") as inn:
            out.topic(topic, Reading)
            inn.topic(topic, Reading)
            inn.subscribe(topic, handle)
            await inn.attach(in_bridge, import_=[topic])
            await out.attach(out_bridge, export=[topic], batch=256)
            with trio.fail_after(TIMEOUT):
                while not probed.is_set():
                    await out.publish(topic, reading(-1, time.time_ns()))
                    with trio.move_on_after(0.05):
                        await probed.wait()
                t0 = trio.current_time()
                started = time.perf_counter()
                for i in range(n):
                    await trio.sleep_until(t0 + i / rate)
                    obj = reading(i, time.time_ns())
                    await out.publish(topic, obj, key=obj.key)
                await done.wait()
            return time.perf_counter() - started

    try:
        seconds = trio.run(main)
    except trio.TooSlowError:
        raise CaseFailed(f"{len(latencies)} of {n} messages arrived in {TIMEOUT:.0f} s") from None
    finally:
        cleanup()
    values = sorted(latencies)
    extra: dict[str, Any] = {
        "rate": rate,
        "p50_ms": round(percentile(values, 0.50), 3),
        "p99_ms": round(percentile(values, 0.99), 3),
        "max_ms": round(values[-1], 3),
    }
    return Sample(len(values), seconds, extra)
