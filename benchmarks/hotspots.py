"""Where a case spends its time: cProfile of one case, per-message costs in µs.

``python -m benchmarks.hotspots bus_1to1 --messages 200000`` runs the case once
without a profiler (the honest rate), then once under ``cProfile``, and prints the
functions with the most own time as µs per message (``tottime / messages``) beside
their cumulative cost. cProfile inflates every Python call by a roughly constant
amount, so read the per-message numbers as shares of the profiled total, which is
printed next to the unprofiled one. For a sampling view, run the same case under
pyinstrument: ``python -m pyinstrument -m benchmarks.hotspots bus_1to1 --no-profile``.

``--split`` needs no profiler at all: it gives the mailbox room for every message, so
the publisher runs its whole loop before the worker runs once, and times the two sides
apart (bus and raw trio channel, garbage collector off, median of 5).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import trio

from . import _baselines as base
from . import _bus_cases as buscases
from ._harness import Sample, human
from ._messages import Tick
from .local import quiet_logs

CASES: dict[str, Callable[[int], Sample]] = {
    "bus_1to1": buscases.bus_1to1,
    "bus_1to1_async": buscases.bus_1to1_async,
    "bus_fanout_1to4": buscases.bus_fanout_1to4,
    "bus_keyed_4workers": buscases.bus_keyed_4workers,
    "bus_request_reply": buscases.bus_request_reply,
    "trio_drain": base.trio_drain,
    "asyncio_queue": base.asyncio_queue,
}


def profile(name: str, messages: int, top: int) -> str:
    """Run ``name`` plain, then profiled; return the printable report."""
    case = CASES[name]
    case(min(messages, 10_000))  # warm imports and caches
    plain = case(messages)
    profiler = cProfile.Profile()
    profiler.enable()
    profiled = case(messages)
    profiler.disable()
    per = 1e6 / plain.count
    lines = [
        f"{name}: {plain.count} units, plain {human(plain.rate)}/s = "
        f"{plain.seconds * per:.3f} µs/unit; under cProfile {profiled.seconds * per:.3f} µs/unit",
        f"{'calls/unit':>10} {'own µs':>8} {'cum µs':>8}  function",
    ]
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{_short(filename)}:{line}({func})"))
    rows.sort(reverse=True)
    for tt, ct, nc, where in rows[:top]:
        lines.append(f"{nc / plain.count:>10.2f} {tt * per:>8.3f} {ct * per:>8.3f}  {where}")
    return "\n".join(lines)


def split(messages: int, rounds: int = 5) -> str:
    """Publisher-side and worker-side µs per message, bus vs raw trio channel."""
    rows: dict[str, list[tuple[float, float]]] = {"trio channel": [], "bus 1→1": []}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            rows["trio channel"].append(trio.run(_split_trio, messages))
            rows["bus 1→1"].append(trio.run(_split_bus, messages))
    finally:
        if enabled:
            gc.enable()
    lines = [f"{'':14} {'publisher':>10} {'worker':>8} {'total':>8}  (µs per message)"]
    for name, samples in rows.items():
        pub = statistics.median(s[0] for s in samples)
        work = statistics.median(s[1] for s in samples)
        lines.append(f"{name:14} {pub:>10.3f} {work:>8.3f} {pub + work:>8.3f}")
    return "\n".join(lines)


async def _split_trio(n: int) -> tuple[float, float]:
    send, recv = trio.open_memory_channel[Tick](math.inf)
    done = trio.Event()
    count = 0

    async def consumer() -> None:
        nonlocal count
        while count < n:
            try:
                recv.receive_nowait()
            except trio.WouldBlock:
                await recv.receive()
            count += 1
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.lowlevel.checkpoint()
        t0 = time.perf_counter()
        for i in range(n):
            send.send_nowait(Tick(n=i))
        t1 = time.perf_counter()
        await done.wait()
        t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


async def _split_bus(n: int) -> tuple[float, float]:
    from bus import open_bus

    done = trio.Event()
    count = 0

    def handler(env: object) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async with open_bus() as bus:
        bus.topic("bench.tick", Tick)
        bus.subscribe("bench.tick", handler, name="h", capacity=n + 1)
        await trio.lowlevel.checkpoint()
        t0 = time.perf_counter()
        for i in range(n):
            await bus.publish("bench.tick", Tick(n=i))
        t1 = time.perf_counter()
        await done.wait()
        t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotspots")
    parser.add_argument("case", nargs="?", default="bus_1to1", choices=sorted(CASES))
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--no-profile", action="store_true", help="just run the case (for external profilers)"
    )
    parser.add_argument(
        "--split", action="store_true", help="publisher vs worker cost, bus vs trio, no profiler"
    )
    args = parser.parse_args(argv)
    if args.split:
        with quiet_logs():
            print(split(args.messages))
        return 0
    if args.no_profile:
        with quiet_logs():
            sample = CASES[args.case](args.messages)
        print(f"{args.case}: {human(sample.rate)}/s")
        return 0
    with quiet_logs():
        print(profile(args.case, args.messages, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
