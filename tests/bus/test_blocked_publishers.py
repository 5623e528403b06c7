"""Publishers blocked on a full ``block`` mailbox: served in arrival order, each woken
once, when its message is already in the mailbox, on every path that makes room (sync
bursts, async handlers, batches, traced bursts, parking, a retry, closing)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from bus import BusClosedError, Envelope, RetryPolicy, open_bus
from bus._trace import TRACEPARENT

_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Wakeups(trio.abc.Instrument):
    """How many times each task was scheduled to run."""

    def __init__(self) -> None:
        self.count: Counter[trio.lowlevel.Task] = Counter()

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.count[task] += 1


def _handler(kind: str, handled: list[int]) -> tuple[Any, dict[str, Any]]:
    """A handler of *kind* that fails once on its first message (so the worker sleeps in
    a retry while the test lines publishers up), recording what it handled."""
    failed: list[bool] = []

    def note(value: int) -> None:
        if not failed:
            failed.append(True)
            raise RuntimeError("once")
        handled.append(value)

    if kind == "async":
        async def handle_async(env: Envelope[int]) -> None:
            note(env.payload)

        return handle_async, {}
    if kind == "batch":
        def handle_batch(envs: list[Envelope[int]]) -> None:
            if not failed:
                note(-1)
            for env in envs:
                handled.append(env.payload)

        return handle_batch, {"batch": 3}

    def handle(env: Envelope[int]) -> None:
        note(env.payload)

    return handle, {}


@pytest.mark.parametrize("kind", ["sync", "async", "batch", "traced"])
async def test_blocked_publishers_are_served_in_arrival_order_each_woken_once(
    kind: str, mock_clock: trio.testing.MockClock
) -> None:
    capacity, waiting = 4, 12
    handled: list[int] = []
    handler, options = _handler(kind, handled)
    wakeups = Wakeups()
    headers = {TRACEPARENT: _PARENT} if kind == "traced" else None
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe(
            "t", handler, capacity=capacity, retry=RetryPolicy(base_delay=1, jitter=0),
            **options,
        )
        await bus.publish("t", 0, headers=headers)
        await trio.testing.wait_all_tasks_blocked()  # the worker sleeps before a retry
        for i in range(1, capacity + 1):
            await bus.publish("t", i, headers=headers)  # full now
        trio.lowlevel.add_instrument(wakeups)
        publishers = []
        async with trio.open_nursery() as nursery:
            for i in range(capacity + 1, capacity + 1 + waiting):
                nursery.start_soon(bus.publish, "t", i)
                await trio.testing.wait_all_tasks_blocked()  # blocked, in this order
                publishers.extend(t for t in nursery.child_tasks if t not in publishers)
            with pytest.raises(trio.WouldBlock):
                bus.publish_nowait("t", -2)  # a newcomer may not take their place
            mock_clock.jump(1)
        await bus.drain()
        trio.lowlevel.remove_instrument(wakeups)
    expected = list(range(capacity + 1 + waiting))
    assert handled == expected
    assert len(publishers) == waiting
    # scheduled once to start, once when admitted: never woken to find the mailbox full
    assert [wakeups.count[task] for task in publishers] == [2] * waiting


async def test_thousands_of_blocked_publishers_cost_one_wakeup_each() -> None:
    capacity, waiting = 16, 3000
    handled: list[int] = []
    wakeups = Wakeups()
    gate = trio.Event()

    async def slow_start(env: Envelope[int]) -> None:
        await gate.wait()
        handled.append(env.payload)

    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", slow_start, capacity=capacity)
        await bus.publish("t", 0)
        await trio.testing.wait_all_tasks_blocked()  # the worker holds 0
        for i in range(1, capacity + 1):  # and its mailbox 1..16
            await bus.publish("t", i)
        trio.lowlevel.add_instrument(wakeups)
        async with trio.open_nursery() as nursery:
            for i in range(capacity + 1, capacity + 1 + waiting):
                nursery.start_soon(bus.publish, "t", i)
                if i % 500 == 0:
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            publishers = list(nursery.child_tasks)
            gate.set()
        await bus.drain()
        trio.lowlevel.remove_instrument(wakeups)
    assert sorted(handled) == list(range(capacity + 1 + waiting))
    assert handled[: capacity + 1] == list(range(capacity + 1))
    assert sum(wakeups.count[task] for task in publishers) == 2 * waiting


async def test_a_cancelled_blocked_publisher_leaves_the_queue_and_the_rest_keep_order() -> None:
    gate = trio.Event()
    handled: list[int] = []

    async def handler(env: Envelope[int]) -> None:
        await gate.wait()
        handled.append(env.payload)

    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", handler, capacity=2)
        await bus.publish("t", 0)
        await trio.testing.wait_all_tasks_blocked()  # 0 in hand
        for i in (1, 2):  # 1 and 2 queued
            await bus.publish("t", i)
        scopes = {}

        async def publish(i: int) -> None:
            with trio.CancelScope() as scopes[i]:
                await bus.publish("t", i)

        async with trio.open_nursery() as nursery:
            for i in (3, 4, 5):
                nursery.start_soon(publish, i)
                await trio.testing.wait_all_tasks_blocked()
            scopes[4].cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert sub.lanes[0].putters_waiting == 2
            gate.set()
    assert handled == [0, 1, 2, 3, 5]
    assert sub.lanes[0].putters_waiting == 0
    assert sub.lanes[0].limit == sub.lanes[0].capacity


async def test_closing_a_full_mailbox_refuses_the_publishers_still_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """...and the bus leaves as soon as the closed subscriber's worker has stopped (it
    wakes drain() as a worker going idle does, not after the drain timeout)."""
    gate = trio.Event()

    async def handler(env: Envelope[int]) -> None:
        await gate.wait()

    outcomes: dict[int, str] = {}
    start = trio.current_time()
    async with open_bus() as bus:
        bus.topic("t", int)
        sub = bus.subscribe("t", handler, capacity=1)
        await bus.publish("t", 0)
        await trio.testing.wait_all_tasks_blocked()
        await bus.publish("t", 1)

        async def publish(i: int) -> None:
            try:
                await bus.publish("t", i)
            except BusClosedError as exc:
                outcomes[i] = str(exc)
            else:
                outcomes[i] = "ok"

        async with trio.open_nursery() as nursery:
            for i in (2, 3):
                nursery.start_soon(publish, i)
                await trio.testing.wait_all_tasks_blocked()
            sub.close()
        gate.set()
    assert trio.current_time() == start  # no drain timeout (10 s) waited out
    assert outcomes == {
        2: "subscriber 'test_closing_a_full_mailbox_refuses_the_publishers_still_waiting."
        "<locals>.handler' closed while full",
        3: outcomes[2],
    }


async def _cascade() -> tuple[int, int]:
    """ping and pong (mailboxes of 2) each answer a message with 3 to the other, handed
    to tasks of their own (the way out of a publish cycle, docs/design.md), 4 hops."""
    handled = 0

    def bounce(bus: Any, other: str, nursery: trio.Nursery) -> Any:
        async def handle(env: Envelope[int]) -> None:
            nonlocal handled
            handled += 1
            for _ in range(3 if env.payload else 0):
                nursery.start_soon(bus.publish, other, env.payload - 1)

        return handle

    async with trio.open_nursery() as nursery, open_bus(drain_timeout=30) as bus:
        start = trio.current_time()
        for name, other in (("ping", "pong"), ("pong", "ping")):
            bus.topic(name, int)
            bus.subscribe(name, bounce(bus, other, nursery), name=name, capacity=2)
        await bus.publish("ping", 4)
    return handled, int(trio.current_time() - start)


def test_drain_waits_for_publishes_handed_to_tasks_every_time() -> None:
    """drain() sees quiet mailboxes at moments when the cascade's next messages are in
    tasks that have not run yet (with admitted publishers no longer counted as blocked,
    every other scheduling batch); it must not close the bus then: 30 runs, each with
    trio's scheduling order shuffled differently, all delivered, none timed out."""
    for _ in range(30):
        clock = trio.testing.MockClock(autojump_threshold=0)
        assert trio.run(_cascade, clock=clock) == (1 + 3 + 9 + 27 + 81, 0)
