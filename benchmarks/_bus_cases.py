"""The bus cases: 1→1, 1→4 fan-out, keyed with 4 workers, request/reply, latency.

Each case opens a fresh bus in its own ``trio.run``, subscribes counting handlers,
then times from the first ``publish`` until the handlers have seen every message (a
``trio.Event`` set at the last one: publish only checkpoints when a mailbox is full, so
"publish returned" says nothing about delivery). Opening and closing the bus are not
timed. The keyed case checks per-key order in its handler on every message (and worker
affinity on a sample) and fails loudly (:class:`CaseFailed`) when order broke.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio

from ._harness import CaseFailed, Sample
from ._messages import Tick

if TYPE_CHECKING:
    from bus import Envelope

TOPIC = "bench.tick"
CAPACITY = 1024
KEYS = 64
AFFINITY_SAMPLE_MASK = 15
"""The keyed handler checks order on every message, worker affinity on one in 16."""
LATENCY_BATCH = 16
LATENCY_WARMUP = 0.02
"""Fraction of the latency samples dropped from the front (cold caches, first allocations)."""


def bus_1to1(n: int) -> Sample:
    return _one_to_one(n, async_handler=False)


def bus_1to1_async(n: int) -> Sample:
    return _one_to_one(n, async_handler=True)


def bus_1to1_traced(n: int) -> Sample:
    """1->1 with a W3C ``traceparent`` on every message: a version that propagates trace
    context handles each in it (bus/_trace.py); an older one just carries the header."""
    return _one_to_one(n, async_handler=False, headers={"traceparent": _TRACEPARENT})


_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _NoOp:
    """A middleware that only passes each message on: what one hook costs."""

    async def publish(self, env: Any, call_next: Any) -> Any:
        return await call_next(env)

    async def handle(self, env: Any, call_next: Any) -> None:
        await call_next(env)


def bus_1to1_middleware(n: int) -> Sample:
    """1->1 on a bus with one no-op middleware (publish and handle hooks, bus-wide): the
    cost per message of having middleware at all. Needs a version with middleware."""
    return _one_to_one(n, async_handler=False, middleware=[_NoOp()])


def _one_to_one(
    n: int, *, async_handler: bool, headers: dict[str, str] | None = None,
    middleware: list[Any] | None = None,
) -> Sample:
    from bus import open_bus

    async def main() -> Sample:
        done = trio.Event()
        count = 0

        def handler(env: Envelope[Tick]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        async def async_handler_(env: Envelope[Tick]) -> None:
            handler(env)

        options: dict[str, Any] = {} if middleware is None else {"middleware": middleware}
        async with open_bus(**options) as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(
                TOPIC, async_handler_ if async_handler else handler, name="h",
                concurrency=1, capacity=CAPACITY,
            )
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                await bus.publish(TOPIC, Tick(n=i), headers=headers)
            await done.wait()
            elapsed = time.perf_counter() - t0
        return Sample(count, elapsed)

    return trio.run(main)


def bus_1to1_nowait(n: int) -> Sample:
    """1→1 through ``publish_nowait`` (``await publish`` only on ``trio.WouldBlock``), the
    way ``trio_drain`` sends: what the coroutine of ``await publish`` costs."""
    from bus import open_bus

    async def main() -> Sample:
        done = trio.Event()
        count = 0

        def handler(env: Envelope[Tick]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="h", concurrency=1, capacity=CAPACITY)
            publish_nowait = bus.publish_nowait
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                tick = Tick(n=i)
                try:
                    publish_nowait(TOPIC, tick)
                except trio.WouldBlock:
                    await bus.publish(TOPIC, tick)
            await done.wait()
            elapsed = time.perf_counter() - t0
        return Sample(count, elapsed)

    return trio.run(main)


BATCH = 256


def bus_1to1_batch(n: int) -> Sample:
    """1→1 through ``publish_batch``: lists of ``BATCH`` payloads, one sync handler."""
    from bus import open_bus

    async def main() -> Sample:
        done = trio.Event()
        count = 0

        def handler(env: Envelope[Tick]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="h", concurrency=1, capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                await bus.publish_batch(
                    TOPIC, [Tick(n=i) for i in range(start, min(n, start + BATCH))]
                )
            await done.wait()
            elapsed = time.perf_counter() - t0
        return Sample(count, elapsed)

    return trio.run(main)


def bus_fanout_1to4(n: int) -> Sample:
    from bus import open_bus

    async def main() -> Sample:
        done = trio.Event()
        total = 4 * n
        count = 0

        def handler(env: Envelope[Tick]) -> None:
            nonlocal count
            count += 1
            if count == total:
                done.set()

        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            for j in range(4):
                bus.subscribe(TOPIC, handler, name=f"h{j}", concurrency=1, capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                await bus.publish(TOPIC, Tick(n=i))
            await done.wait()
            elapsed = time.perf_counter() - t0
        return Sample(count, elapsed, {"messages_per_s": round(n / elapsed, 1)})

    return trio.run(main)


def check_keyed(violations: int, switches: int, n: int) -> None:
    """Fail the keyed case (the run exits 1) if per-key order or key affinity broke."""
    if violations:
        raise CaseFailed(f"per-key order broken: {violations} of {n} messages out of order")
    if switches:
        raise CaseFailed(f"same key ran on different workers {switches} times")


def bus_keyed_4workers(n: int) -> Sample:
    from bus import open_bus

    keys = [f"k{i}" for i in range(KEYS)]

    async def main() -> Sample:
        done = trio.Event()
        count = 0
        violations = 0
        last: dict[str | None, int] = {}
        worker_of: dict[str | None, object] = {}
        switches = 0
        current_task = trio.lowlevel.current_task

        def handler(env: Envelope[Tick]) -> None:
            nonlocal count, violations, switches
            key, seq = env.key, env.payload.n
            if last.get(key, -1) >= seq:
                violations += 1
            last[key] = seq
            count += 1
            if not count & AFFINITY_SAMPLE_MASK:
                task = current_task()
                if worker_of.setdefault(key, task) is not task:
                    switches += 1
            if count == n:
                done.set()

        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="keyed", concurrency=4, capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for i in range(n):
                await bus.publish(TOPIC, Tick(n=i), key=keys[i % KEYS])
            await done.wait()
            elapsed = time.perf_counter() - t0
        workers = len({id(t) for t in worker_of.values()})
        check_keyed(violations, switches, n)
        extra = {
            "order_ok": violations == 0 and switches == 0,
            "order_violations": violations,
            "keys": KEYS,
            "workers_used": workers,
            "key_worker_switches": switches,
        }
        return Sample(count, elapsed, extra)

    return trio.run(main)


def bus_request_reply(n: int) -> Sample:
    """Sequential round trips; each one's duration is recorded (p50/p99 in the extras)."""
    from bus import open_bus

    now_ns = time.perf_counter_ns
    lat: list[int] = []

    async def main() -> Sample:
        async with open_bus() as bus:
            bus.topic("bench.req", Tick)

            async def responder(env: Envelope[Tick]) -> None:
                await bus.reply(env, Tick(n=env.payload.n))

            bus.subscribe("bench.req", responder, name="responder", capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            before = now_ns()
            for i in range(n):
                reply = await bus.request("bench.req", Tick(n=i), timeout=5.0)
                after = now_ns()
                lat.append(after - before)
                before = after
                if reply.payload.n != i:
                    raise CaseFailed(f"reply {reply.payload.n} answered request {i}")
            elapsed = time.perf_counter() - t0
        return Sample(n, elapsed, latency_summary(lat, n / elapsed))

    return trio.run(main)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def bus_latency(n: int, rate: float) -> Sample:
    """Publish→handler latency with the publisher paced at ``rate`` messages/s.

    The publisher sends whatever is due (at most ``LATENCY_BATCH`` at a time), then
    yields with ``trio.sleep(0)``; when nothing is due for more than 2 ms it sleeps.
    Each payload carries ``perf_counter_ns()`` taken just before its ``publish``.
    """
    from bus import open_bus

    async def main() -> Sample:
        done = trio.Event()
        lat: list[int] = []
        now_ns = time.perf_counter_ns

        def handler(env: Envelope[Tick]) -> None:
            lat.append(now_ns() - env.payload.t)
            if len(lat) == n:
                done.set()

        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="h", concurrency=1, capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            sent = 0
            while sent < n:
                due = min(n, int((time.perf_counter() - t0) * rate) + 1) - sent
                if due <= 0:
                    wait = t0 + sent / rate - time.perf_counter()
                    if wait > 0.002:
                        await trio.sleep(wait - 0.001)  # epoll sleeps in whole ms
                    else:
                        await trio.lowlevel.checkpoint()
                    continue
                for _ in range(min(due, LATENCY_BATCH)):
                    await bus.publish(TOPIC, Tick(n=sent, t=now_ns()))
                    sent += 1
                await trio.lowlevel.checkpoint()
            await done.wait()
            elapsed = time.perf_counter() - t0
        return Sample(n, elapsed, latency_summary(lat, rate))

    return trio.run(main)


def latency_summary(lat_ns: list[int], rate: float) -> dict[str, Any]:
    kept = sorted(lat_ns[int(len(lat_ns) * LATENCY_WARMUP) :])
    return {
        "target_rate": round(rate, 1),
        "samples": len(kept),
        "p50_ms": percentile(kept, 0.50) / 1e6,
        "p99_ms": percentile(kept, 0.99) / 1e6,
        "p999_ms": percentile(kept, 0.999) / 1e6,
        "max_ms": (kept[-1] if kept else 0) / 1e6,
    }
