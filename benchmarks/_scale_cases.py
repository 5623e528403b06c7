"""The cases of ``bus bench scale``: one bus measured at a small and a large size.

Each function opens a fresh bus in its own ``trio.run`` through the public API only (so
``python -m benchmarks.scale OLD NEW`` can run it against an older ``bus`` too), builds
the application's size outside the timed part, and returns what it timed: a rate
(messages, deliveries or round trips per second) or a cost (seconds per call). The
suite (``benchmarks/scale.py``) pairs a small and a large call of the same function in
each round and reports their quotient.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from ._messages import Tick

if TYPE_CHECKING:
    from bus import Bus, Envelope

TOPIC = "bench.tick"
CAPACITY = 1024  # the bus's default mailbox
_now = time.perf_counter


def _idle(env: Envelope[Any]) -> None:
    """The handler of every subscriber that is part of the scenery."""


def _counter(n: int) -> tuple[Callable[[Envelope[Any]], None], trio.Event]:
    """A sync handler that sets the event at its *n*-th message."""
    done = trio.Event()
    count = 0

    def handler(env: Envelope[Any]) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    return handler, done


async def _memoise(bus: Bus, names: list[str]) -> None:
    """Publish once to every topic (each route is built and memoised), drain, and
    collect: what setting the application up allocated is old by the time it runs
    steadily, so the timed part does not pay for the collector's first pass over it."""
    tick = Tick(n=0)
    for name in names:
        await bus.publish(name, tick)
    await bus.drain()
    gc.collect()


# -- topics and patterns: the steady state ---------------------------------------------


def steady_1to1(n: int, topics: int, patterns: int) -> float:
    """1→1 msg/s on one topic of a bus that also has *topics* other topics (every route
    memoised) and *patterns* wildcard subscribers (``g<j>.*``, each matching
    ``topics / patterns`` of them)."""
    from bus import open_bus

    async def main() -> float:
        handler, done = _counter(n)
        async with open_bus() as bus:
            names = [f"g{i % max(1, patterns)}.t{i}" for i in range(topics)]
            for name in names:
                bus.topic(name, Tick)
            for j in range(patterns):
                bus.subscribe(f"g{j}.*", _idle, name=f"p{j}")
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="h", capacity=CAPACITY)
            await _memoise(bus, names)
            t0 = _now()
            for i in range(n):
                await bus.publish(TOPIC, Tick(n=i))
            await done.wait()
            return n / (_now() - t0)

    return trio.run(main)


# -- routes after a subscription change ---------------------------------------------------

ROUTE_CHANGES = ("subscribe_all", "close_all", "subscribe_one", "close_one", "delete_topic")
"""The changes between the memoised loops: a ``#`` subscriber comes and goes (every
route changes), an exact subscriber comes and goes (one route), an unrelated topic is
deleted and declared again (no route)."""


def routes_after_change(topics: int, patterns: int, cycles: int) -> dict[str, Any]:
    """Seconds per publish of a loop publishing once to each of *topics* topics, right
    after each kind of subscription change and again once every route is memoised.

    Every topic ``r<j>.e<i>`` is matched by one of *patterns* wildcard subscribers
    (``r<j>.*``). Only the publish loops are timed (the handlers run in an untimed
    ``drain`` between loops); each figure is the fastest of *cycles* loops, the cost of
    the work without the moments another process took the CPU. Returns
    ``{"memoised": s, "<change>": s, ...}``.
    """
    from bus import open_bus

    async def main() -> dict[str, Any]:
        async with open_bus() as bus:
            names = [f"r{i % max(1, patterns)}.e{i}" for i in range(topics)]
            for name in names:
                bus.topic(name, Tick)
            for j in range(patterns):
                bus.subscribe(f"r{j}.*", _idle, name=f"p{j}")
            bus.topic("other.topic", Tick)
            await _memoise(bus, names)
            tick = Tick(n=0)

            async def loop() -> float:
                gc.collect()  # the same collector state before every loop
                t0 = _now()
                for name in names:
                    await bus.publish(name, tick)
                elapsed = _now() - t0
                await bus.drain()
                return elapsed

            after = dict.fromkeys(ROUTE_CHANGES, math.inf)
            memoised = math.inf
            for cycle in range(cycles):
                changing: Any = None
                for change in ROUTE_CHANGES:
                    if change == "subscribe_all":
                        changing = bus.subscribe("#", _idle, name=f"all{cycle}")
                    elif change == "subscribe_one":
                        changing = bus.subscribe(names[0], _idle, name=f"one{cycle}")
                    elif change in ("close_all", "close_one"):
                        changing.close()
                        await changing.wait_closed()
                    else:
                        bus.delete_topic("other.topic")
                        bus.topic("other.topic", Tick)
                    after[change] = min(after[change], await loop())
                    memoised = min(memoised, await loop())
            out: dict[str, Any] = {k: v / len(names) for k, v in after.items()}
            out["memoised"] = memoised / len(names)
            return out

    return trio.run(main)


# -- keys ---------------------------------------------------------------------------------

_KEYS: list[str] = []
_key_start = 0


def _keys(count: int) -> list[str]:
    """The first *count* keys (``order-<i>``), built once per process."""
    if len(_KEYS) < count:
        _KEYS.extend(f"order-{i}" for i in range(len(_KEYS), count))
    return _KEYS


def keyed(n: int, keys: int) -> float:
    """msg/s through one subscriber with ``concurrency=4``, keys rotating over *keys*
    distinct values (each round goes on where the last one stopped)."""
    from bus import open_bus

    global _key_start
    pool = _keys(keys)
    start = _key_start % keys
    _key_start = start + n

    async def main() -> float:
        handler, done = _counter(n)
        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="keyed", concurrency=4, capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = _now()
            k = start
            for i in range(n):
                await bus.publish(TOPIC, Tick(n=i), key=pool[k])
                k += 1
                if k == keys:
                    k = 0
            await done.wait()
            return n / (_now() - t0)

    return trio.run(main)


# -- fan-out --------------------------------------------------------------------------------

BATCH = 256


def fanout(n: int, subscribers: int, batch: bool = False) -> float:
    """Deliveries/s from one topic to *subscribers* sync subscribers, through ``publish``
    or ``publish_batch`` (lists of ``BATCH``)."""
    from bus import open_bus

    async def main() -> float:
        handler, done = _counter(n * subscribers)
        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            for j in range(subscribers):
                bus.subscribe(TOPIC, handler, name=f"h{j}", capacity=CAPACITY)
            await trio.lowlevel.checkpoint()
            t0 = _now()
            if batch:
                for first in range(0, n, BATCH):
                    await bus.publish_batch(
                        TOPIC, [Tick(n=i) for i in range(first, min(n, first + BATCH))]
                    )
            else:
                for i in range(n):
                    await bus.publish(TOPIC, Tick(n=i))
            await done.wait()
            return n * subscribers / (_now() - t0)

    return trio.run(main)


# -- many publishers, many requests --------------------------------------------------------


def publishers(n: int, tasks: int) -> float:
    """msg/s into one subscriber (default mailbox, ``block``) from *tasks* publisher tasks
    publishing ``n / tasks`` messages each; past the mailbox's size, most of them are
    blocked at any moment."""
    from bus import open_bus

    each = max(1, n // tasks)
    total = each * tasks

    async def main() -> float:
        handler, done = _counter(total)
        go = trio.Event()
        async with open_bus() as bus:
            bus.topic(TOPIC, Tick)
            bus.subscribe(TOPIC, handler, name="h", capacity=CAPACITY)

            async def publisher() -> None:
                await go.wait()
                tick = Tick(n=0)
                for _ in range(each):
                    await bus.publish(TOPIC, tick)

            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(publisher)
                await trio.testing.wait_all_tasks_blocked()
                t0 = _now()
                go.set()
                await done.wait()
                elapsed = _now() - t0
            return total / elapsed

    return trio.run(main)


def trio_parked(n: int, tasks: int) -> float:
    """The floor under :func:`publishers`, with no bus: *tasks* trio tasks each park
    ``n / tasks`` times (``wait_task_rescheduled``) in one FIFO queue, and one driver
    task reschedules up to 512 of them per pass, as a worker admits blocked publishers.
    Wake-ups/s: what one park and wake-up costs trio with that many tasks alive."""
    from collections import deque

    each = max(1, n // tasks)
    total = each * tasks

    async def main() -> float:
        queue: deque[trio.lowlevel.Task] = deque()
        done = 0

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED

        async def parker() -> None:
            nonlocal done
            me = trio.lowlevel.current_task()
            for _ in range(each):
                queue.append(me)
                await trio.lowlevel.wait_task_rescheduled(abort)
                done += 1

        async def driver() -> None:
            while done < total:
                for _ in range(min(512, len(queue))):
                    trio.lowlevel.reschedule(queue.popleft())
                await trio.lowlevel.cancel_shielded_checkpoint()

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(parker)
            await trio.testing.wait_all_tasks_blocked()
            t0 = _now()
            nursery.start_soon(driver)
        return total / (_now() - t0)

    return trio.run(main)


def requests(n: int, tasks: int, capacity: int = CAPACITY) -> float:
    """Round trips/s of *tasks* concurrent requesters (``n / tasks`` requests each) to
    one async responder (a mailbox of *capacity*: past it, requests wait to be sent)."""
    from bus import open_bus

    each = max(1, n // tasks)
    total = each * tasks

    async def main() -> float:
        go = trio.Event()
        async with open_bus() as bus:
            bus.topic("bench.req", Tick)

            async def responder(env: Envelope[Tick]) -> None:
                await bus.reply(env, env.payload)

            bus.subscribe("bench.req", responder, name="responder", capacity=capacity)

            async def requester() -> None:
                await go.wait()
                tick = Tick(n=0)
                for _ in range(each):
                    await bus.request("bench.req", tick, timeout=600.0)

            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(requester)
                await trio.testing.wait_all_tasks_blocked()
                t0 = _now()
                go.set()
            return total / (_now() - t0)

    return trio.run(main)


# -- subscribe and close -------------------------------------------------------------------


def subscribe_close(
    topics: int, subscriptions: int, calls: int, batches: int = 10
) -> dict[str, float]:
    """Seconds per ``subscribe``, per ``close`` and per ``delete_topic`` on a bus with
    *topics* memoised topics and *subscriptions* subscribers, all made by the same
    handler without ``name=`` (derived names ``h``, ``h#2``...), each on an exact topic.

    *calls* new subscribers subscribe to memoised topics (one route changes each), are
    closed, and their topics deleted, in *batches* timed batches each; each figure is
    the fastest batch's time per call (a batch lasts milliseconds: the fastest is the
    one no other process interrupted). Also returns the seconds of one ``stats()`` and
    of leaving the ``async with``.
    """
    from bus import open_bus

    def h(env: Envelope[Any]) -> None:
        pass

    per = max(1, calls // batches)

    async def main() -> dict[str, float]:
        out: dict[str, float] = {}
        t_exit = 0.0
        async with open_bus() as bus:
            names = [f"s{i}.ev" for i in range(max(topics, per * batches))]
            for name in names:
                bus.topic(name, Tick)
            for i in range(subscriptions):
                bus.subscribe(names[i % len(names)], h)
            await _memoise(bus, names)
            chunks = [names[b * per : (b + 1) * per] for b in range(batches)]
            subs: list[list[Any]] = []
            best = math.inf
            for chunk in chunks:
                t0 = _now()
                subs.append([bus.subscribe(name, h) for name in chunk])
                best = min(best, _now() - t0)
            out["subscribe"] = best / per
            await trio.testing.wait_all_tasks_blocked()
            best = math.inf
            for batch in subs:
                t0 = _now()
                for sub in batch:
                    sub.close()
                best = min(best, _now() - t0)
            out["close"] = best / per
            for batch in subs:
                for sub in batch:
                    await sub.wait_closed()
            best = math.inf
            for chunk in chunks:
                t0 = _now()
                for name in chunk:
                    bus.delete_topic(name)
                best = min(best, _now() - t0)
            out["delete_topic"] = best / per
            t0 = _now()
            bus.stats()
            out["stats"] = _now() - t0
            t_exit = _now()
        out["exit"] = _now() - t_exit
        return out

    return trio.run(main)


def route_build(matches: int, reps: int = 5) -> float:
    """Seconds per match of building the route of a topic that *matches* subscribers
    match (``rb.*``, ``#``, ``*.*``, ``rb.#`` and ``*.#`` in turn): the first publish to
    a new topic (route built, then one append per subscriber) less the second one (the
    appends alone), the fastest of *reps* new topics each."""
    from bus import open_bus

    patterns = ("rb.*", "#", "*.*", "rb.#", "*.#")

    async def main() -> float:
        async with open_bus() as bus:
            for i in range(matches):
                bus.subscribe(patterns[i % len(patterns)], _idle, name=f"m{i}")
            tick = Tick(n=0)
            first = again = math.inf
            for rep in range(reps):
                topic = f"rb.t{rep}"
                bus.topic(topic, Tick)
                await bus.drain()
                gc.collect()
                t0 = _now()
                await bus.publish(topic, tick)
                first = min(first, _now() - t0)
                await bus.drain()
                gc.collect()
                t0 = _now()
                await bus.publish(topic, tick)
                again = min(again, _now() - t0)
            await bus.drain()
            return max(first - again, 1e-9) / matches

    return trio.run(main)


# -- retained messages ---------------------------------------------------------------------


def retained_bytes(count: int) -> float:
    """Bytes allocated per retained message (envelope, payload and the log's share), from
    ``tracemalloc``, publishing *count* messages to a retained topic nobody subscribes."""
    import gc
    import tracemalloc

    from bus import Retention, open_bus

    async def main() -> float:
        async with open_bus() as bus:
            bus.topic(TOPIC, Tick, retain=Retention(max_count=count))
            await bus.publish(TOPIC, Tick(n=-1))  # the log and the route exist
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            for i in range(count - 1):
                await bus.publish(TOPIC, Tick(n=i))
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
            return grown / (count - 1)

    return trio.run(main)


def topic_bytes(count: int) -> float:
    """Bytes allocated per topic for *count* topics declared, each published to once (its
    route built and memoised) and matched by one ``#`` subscriber, after the messages
    were handled: what a topic costs the bus while the application runs."""
    import tracemalloc

    from bus import open_bus

    async def main() -> float:
        async with open_bus() as bus:
            bus.subscribe("#", _idle, name="all")
            await bus.drain()
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            names = [f"app{i % 100}.topic{i}" for i in range(count)]
            tick = Tick(n=0)
            for name in names:
                bus.topic(name, Tick)
                await bus.publish(name, tick)
            await bus.drain()
            del names
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            return sum(s.size_diff for s in after.compare_to(before, "filename")) / count

    return trio.run(main)
