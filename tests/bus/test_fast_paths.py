"""The publish fast paths deliver what the general route delivers (bus/_mailbox.py,
"Fast-path protocol").

``publish`` (one plain mailbox, several, keyed lanes, inlined), ``publish_nowait`` (its
own inlined append, ``await publish`` where it says WouldBlock), ``publish_batch`` (one
``extend`` per mailbox for what fits) and ``Bus.route`` (the general route,
``Router.deliver``, with and without a :class:`~bus.abc.Delivery` to track) run the same
messages into the same subscribers; every subscriber's every lane must get the same
messages in the same order, drop and refuse the same ones, and the topic must retain and
count the same. (Keyless messages to a subscriber with several lanes are compared by
subscriber, not lane: spreading them round-robin promises no lane, and a publish_nowait
that says WouldBlock has already turned the wheel once.) The subscribers share one
overflow policy per example: with ``block`` the publisher waits and the workers run, so
everything arrives; with the others it never waits, so what is dropped is decided before
any worker runs (mixing the two would make the outcome depend on the scheduler, not on
the path).

"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import Envelope, MailboxFullError, Retention, open_bus
from bus.abc import Delivery

WAYS = ("publish", "publish_nowait", "publish_batch", "route", "route_tracked")


@dataclass(frozen=True)
class Scenario:
    overflow: str
    subscribers: tuple[tuple[int, int], ...]  # (capacity, concurrency) of each
    keys: tuple[str | None, ...]  # one per message, in order
    retain: bool


@dataclass
class Outcome:
    lanes: dict[tuple[int, int], list[int]]  # (subscriber, lane) -> payloads handled
    spread: dict[int, list[int]]  # subscriber -> keyless payloads it spread over its lanes
    dropped: list[int]  # per subscriber
    refused: list[int]  # payloads a full overflow="error" mailbox refused
    retained: list[int]
    published: int
    undone: int = 0  # tracked envelopes routed but never done


async def _run(scenario: Scenario, way: str) -> Outcome:
    lanes: dict[tuple[int, int], list[int]] = {}
    spread: dict[int, list[int]] = {}
    refused: list[int] = []
    tracked: list[Delivery] = []
    workers: dict[Any, tuple[int, int]] = {}
    async with open_bus(capacity=4) as bus:
        bus.topic("t", int, retain=Retention(max_count=1000) if scenario.retain else None)

        def handler(env: Envelope[int]) -> None:
            sub, lane = workers[trio.lowlevel.current_task()]
            if env.key is None and scenario.subscribers[sub][1] > 1:
                spread.setdefault(sub, []).append(env.payload)
            else:
                lanes.setdefault((sub, lane), []).append(env.payload)

        subs = [
            bus.subscribe("t", handler, name=f"s{i}", capacity=capacity,
                          concurrency=concurrency, overflow=scenario.overflow)
            for i, (capacity, concurrency) in enumerate(scenario.subscribers)
        ]
        await trio.testing.wait_all_tasks_blocked()
        for i, sub in enumerate(subs):
            for lane in sub.lanes:
                workers[lane.worker] = (i, lane.index)

        async def one(n: int, key: str | None) -> None:
            if way == "publish":
                await bus.publish("t", n, key=key)
            elif way == "publish_nowait":
                try:
                    bus.publish_nowait("t", n, key=key)
                except trio.WouldBlock:
                    await bus.publish("t", n, key=key)
            else:
                delivery = Delivery() if way == "route_tracked" else None
                env = Envelope(bus.new_id(), "t", n, key, {}, 0.0, 1, bus.name, delivery)
                await bus.route(env)
                if delivery is not None:
                    tracked.append(delivery)

        messages = list(enumerate(scenario.keys))
        if way == "publish_batch":
            for key, run in itertools.groupby(messages, key=lambda m: m[1]):
                rest = [n for n, _ in run]
                while rest:  # each message all-or-nothing: go on after a refused one
                    before = bus.stats().topics["t"].published
                    try:
                        await bus.publish_batch("t", rest, key=key)
                        rest = []
                    except MailboxFullError:
                        went = bus.stats().topics["t"].published - before
                        refused.append(rest[went])
                        rest = rest[went + 1:]
        else:
            for n, key in messages:
                try:
                    await one(n, key)
                except MailboxFullError:
                    refused.append(n)
        await bus.drain()
        stats = bus.stats()
        retained = [env.payload for env in bus.retained("t")]
    return Outcome(
        lanes=lanes,
        spread={sub: sorted(payloads) for sub, payloads in spread.items()},
        dropped=[stats.actors[f"s{i}"].dropped for i in range(len(subs))],
        refused=refused,
        retained=retained,
        published=stats.topics["t"].published,
        undone=sum(not delivery.done for delivery in tracked),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    overflow = draw(st.sampled_from(["block", "drop_oldest", "drop_newest", "error"]))
    subscribers = draw(st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from([1, 1, 2, 3])), min_size=1, max_size=3,
    ))
    keys = draw(st.lists(st.sampled_from([None, "a", "b", "c"]), max_size=16))
    return Scenario(overflow, tuple(subscribers), tuple(keys), draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_every_publish_path_delivers_what_the_general_route_delivers(
    scenario: Scenario,
) -> None:
    general = trio.run(_run, scenario, "route")
    assert general.undone == 0
    assert general.published == len(scenario.keys) - len(general.refused)
    if scenario.overflow == "block":
        handled = sum(map(len, [*general.lanes.values(), *general.spread.values()]))
        assert handled == general.published * len(scenario.subscribers)
    for way in WAYS:
        if way != "route":
            assert trio.run(_run, scenario, way) == general, way


def test_the_scenarios_reach_every_fast_path() -> None:
    """The inlined paths are taken by the scenarios above: a topic whose one target is
    one plain mailbox, several plain mailboxes, one subscriber's keyed lanes."""
    async def memo(subscribers: list[int]) -> tuple[bool, bool, bool]:
        async with open_bus() as bus:
            bus.topic("t", int)
            for i, concurrency in enumerate(subscribers):
                bus.subscribe("t", lambda env: None, name=f"s{i}", concurrency=concurrency)
            await bus.publish("t", 0)
            spec = bus._topics.specs["t"]
            return spec.lane is not None, spec.lanes is not None, spec.keyed is not None

    assert trio.run(memo, [1]) == (True, False, False)
    assert trio.run(memo, [1, 1]) == (False, True, False)
    assert trio.run(memo, [3]) == (False, False, True)


@pytest.mark.parametrize("shape", ["one", "fanout", "keyed"])
@pytest.mark.parametrize("way", ["publish", "publish_nowait", "publish_batch"])
async def test_a_newcomer_queues_behind_waiting_publishers_on_every_fast_path(
    way: str, shape: str, mock_clock: trio.testing.MockClock
) -> None:
    """Rule 1 of the protocol: while publishers wait, a mailbox the worker has begun to
    empty (fewer messages than its capacity, none admitted yet) is still full to a
    newcomer: it queues behind them (``publish_nowait`` says WouldBlock), whichever
    inlined path it takes (one plain mailbox, several, one subscriber's keyed lanes)."""
    capacity = 4
    handled: dict[str, list[int]] = {}
    key = "k" if shape == "keyed" else None

    def slow(name: str) -> Any:
        async def handle(env: Envelope[int]) -> None:
            await trio.sleep(1)  # the worker takes one message, then waits here
            handled.setdefault(name, []).append(env.payload)

        return handle

    async with open_bus() as bus:
        bus.topic("t", int)
        names = ["a", "b"] if shape == "fanout" else ["a"]
        for name in names:
            bus.subscribe("t", slow(name), name=name, capacity=capacity,
                          concurrency=2 if shape == "keyed" else 1)
        for n in range(capacity):
            await bus.publish("t", n, key=key)  # full
        async with trio.open_nursery() as nursery:
            for n in (capacity, capacity + 1):
                nursery.start_soon(partial(bus.publish, "t", n, key=key))
                await trio.testing.wait_all_tasks_blocked()  # both wait, in this order
            spec = bus._topics.specs["t"]
            inlined = {"one": spec.lane, "fanout": spec.lanes, "keyed": spec.keyed}[shape]
            assert inlined is not None  # the path under test is the one taken
            first = next(lane for lane in bus.subscriptions()[0].lanes if lane.items)
            assert len(first.items) == capacity - 1  # the worker took one
            assert first.limit == 0  # and the room it made is kept for those waiting
            if way == "publish_nowait":
                with pytest.raises(trio.WouldBlock):
                    bus.publish_nowait("t", 99, key=key)
            else:
                publish = bus.publish if way == "publish" else bus.publish_batch
                nursery.start_soon(partial(publish, "t", 99 if way == "publish" else [99],
                                           key=key))
            mock_clock.autojump_threshold = 0
        await bus.drain()
    expected = [*range(capacity + 2), *([] if way == "publish_nowait" else [99])]
    assert handled["a"] == expected
    if shape == "fanout":
        # Publishers admitted together to the first mailbox go on to the second in the
        # order trio runs them (it may reverse a batch): compare those two as a set.
        second = handled["b"]
        assert second[:capacity] == expected[:capacity]
        assert sorted(second[capacity:capacity + 2]) == [capacity, capacity + 1]
        assert second[capacity + 2:] == expected[capacity + 2:]
