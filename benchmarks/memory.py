"""The memory case: resident size under 10x overload with a slow subscriber.

SPEC §6 asks that the bus's resident size stay flat (within ±10 %) through 10x overload
for 60 s with a slow subscriber, and that nothing is dropped under the ``block`` policy.
A publisher tries to publish at ten times the rate its subscriber can handle; with
``block`` the full mailbox holds the publisher back, so memory is bounded by the
mailbox. Side by side, in the same run, the same overload goes through an *unbounded*
trio channel (no backpressure) for a shorter time, to show what the bound prevents.

RSS is read from ``/proc/self/statm`` (Linux). ``bus bench memory`` is the command.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import trio

from ._messages import Tick
from .local import quiet_logs

HANDLER_RATE = 5_000.0
"""Messages/s the slow subscriber is meant to handle (it sleeps 1 ms every 5 messages;
trio's sleeps overshoot a little, so the measured ``handled_rate`` is reported too)."""
OVERLOAD = 10
SAMPLE_EVERY = 0.5
WARMUP = 3.0
"""Seconds before the reference RSS sample: the mailbox fills and allocators settle."""

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


async def _slow_handler(count: list[int]) -> None:
    count[0] += 1
    if count[0] % 5 == 0:
        await trio.sleep(0.001)


async def _overload(
    seconds: float,
    publish: Callable[[Tick], Any],
    progress: Callable[[float], None],
) -> list[tuple[float, int]]:
    """Publish at OVERLOAD x HANDLER_RATE for *seconds*; RSS samples (t, bytes)."""
    rate = HANDLER_RATE * OVERLOAD
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    next_sample = 0.0
    sent = 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(min(due, 256)):
            await publish(Tick(n=sent))
            sent += 1
        if elapsed >= next_sample:
            samples.append((round(elapsed, 3), rss_bytes()))
            next_sample += SAMPLE_EVERY
            progress(elapsed / seconds)
        await trio.sleep(0.001 if due <= 0 else 0)
    return samples


def _summary(samples: list[tuple[float, int]], warmup: float) -> dict[str, Any]:
    steady = [rss for t, rss in samples if t >= warmup] or [samples[-1][1]]
    reference = steady[0]
    return {
        "rss_reference_mb": round(reference / 2**20, 2),
        "rss_min_mb": round(min(steady) / 2**20, 2),
        "rss_max_mb": round(max(steady) / 2**20, 2),
        "rss_end_mb": round(steady[-1] / 2**20, 2),
        "max_deviation": round(max(abs(r - reference) for r in steady) / reference, 4),
        "samples": samples,
    }


def bus_case(seconds: float, progress: Callable[[float], None]) -> dict[str, Any]:
    from bus import open_bus

    async def main() -> dict[str, Any]:
        handled = [0]

        async def handler(env: Any) -> None:
            await _slow_handler(handled)

        async with open_bus(drain_timeout=None) as bus:
            ticks = bus.topic("bench.tick", Tick)
            bus.subscribe("bench.tick", handler, name="slow", capacity=1024)
            samples = await _overload(seconds, ticks.publish, progress)
            handled_in_time = handled[0]
            stats = bus.stats()
            published = stats.topics["bench.tick"].published
            queued = stats.actors["slow"].mailbox_depth
        result = _summary(samples, WARMUP)
        result.update(
            published=published,
            handled=handled[0],
            queued_at_stop=queued,
            dropped=stats.actors["slow"].dropped,
            attempted_rate=HANDLER_RATE * OVERLOAD,
            achieved_publish_rate=round(published / seconds, 1),
            handled_rate=round(handled_in_time / seconds, 1),
        )
        return result

    return trio.run(main)


def unbounded_case(seconds: float, progress: Callable[[float], None]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        send, recv = trio.open_memory_channel[Tick](math.inf)
        handled = [0]

        async def consumer() -> None:
            async for _ in recv:
                await _slow_handler(handled)

        async def publish(tick: Tick) -> None:
            send.send_nowait(tick)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            samples = await _overload(seconds, publish, progress)
            queued = recv.statistics().current_buffer_used
            nursery.cancel_scope.cancel()
        result = _summary(samples, min(WARMUP, seconds / 2))
        result.update(handled=handled[0], queued_at_stop=queued)
        return result

    return trio.run(main)


def run(seconds: float, contrast_seconds: float, progress: Callable[[str, float], None]) -> dict[
    str, Any
]:
    """Both cases; the report's ``met`` says whether the bus stayed within ±10 %."""
    with quiet_logs():
        bus = bus_case(seconds, lambda f: progress("bus, block policy", f))
        unbounded = unbounded_case(contrast_seconds, lambda f: progress("unbounded channel", f))
    # the bus drains on exit, so every published message was handled or dropped
    lost = bus["published"] - bus["handled"] - bus["dropped"]
    return {
        "seconds": seconds,
        "handler_rate": HANDLER_RATE,
        "overload": OVERLOAD,
        "bus": bus,
        "unbounded_channel": unbounded,
        "target": {"max_deviation": 0.10, "dropped": 0, "lost": 0},
        "met": bus["max_deviation"] <= 0.10 and bus["dropped"] == 0 and lost == 0,
        "lost": lost,
    }


def table(report: dict[str, Any]) -> str:
    bus, unb = report["bus"], report["unbounded_channel"]
    lines = [
        f"overload: the publisher asks for {bus['attempted_rate']:.0f} msg/s; the slow "
        f"subscriber handles {bus['handled_rate']:.0f} msg/s "
        f"({bus['attempted_rate'] / max(bus['handled_rate'], 1):.1f}x overload)",
        f"{'case':<22}{'seconds':>8}{'RSS ref MB':>12}{'RSS max MB':>12}{'deviation':>11}"
        f"{'queued':>10}",
        f"{'bus (block)':<22}{report['seconds']:>8.0f}{bus['rss_reference_mb']:>12.1f}"
        f"{bus['rss_max_mb']:>12.1f}{bus['max_deviation']:>10.1%}{bus['queued_at_stop']:>10}",
        f"{'unbounded channel':<22}{unb['samples'][-1][0]:>8.0f}{unb['rss_reference_mb']:>12.1f}"
        f"{unb['rss_max_mb']:>12.1f}{unb['max_deviation']:>10.1%}{unb['queued_at_stop']:>10}",
        f"bus: published {bus['published']}, handled {bus['handled']}, queued "
        f"{bus['queued_at_stop']} at the stop (handled while draining), dropped "
        f"{bus['dropped']}, lost {report['lost']}; "
        f"publisher held to {bus['achieved_publish_rate']:.0f} msg/s",
        f"target: RSS within ±10 % and nothing dropped: {'met' if report['met'] else 'NOT met'}",
    ]
    return "\n".join(lines)
