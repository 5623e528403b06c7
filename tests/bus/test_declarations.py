"""Declarations that used to be silently bent now fail, or have a defined meaning
(issue 6, items 8, 9, 10)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import trio

from bus import ConfigurationError, Envelope, Retention, open_bus
from bus.testing import Recorder

# -- item 8: a topic's retention is part of its declaration ------------------------------


async def test_redeclaring_a_topic_with_another_retention_raises() -> None:
    async with open_bus() as bus:
        bus.topic("t", int, retain=Retention(max_count=10))
        with pytest.raises(ConfigurationError, match=r"'t' is already declared with Retention"):
            bus.topic("t", int, retain=Retention(max_count=20))
        with pytest.raises(ConfigurationError, match="max_age=5"):
            bus.topic("t", int, retain=Retention(max_age=5))
        # the same retention again, or none (a handle on the topic as it is), is fine
        bus.topic("t", int, retain=Retention(max_count=10))
        bus.topic("t", int)
        for i in range(15):
            await bus.publish("t", i)
        assert [e.payload for e in bus.retained("t")] == list(range(5, 15))  # still 10


async def test_a_topic_without_retention_may_gain_one() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        await bus.publish("t", 0)
        bus.topic("t", int, retain=Retention(max_count=2))
        await bus.publish("t", 1)
        assert [e.payload for e in bus.retained("t")] == [1]


# -- item 9: subscriber names are unique ------------------------------------------------


async def test_an_explicit_duplicate_subscriber_name_raises() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        first = bus.subscribe("t", lambda env: None, name="dup")
        with pytest.raises(ConfigurationError, match="a subscriber named 'dup' already exists"):
            bus.subscribe("t", lambda env: None, name="dup")
        assert [sub.name for sub in bus.subscriptions()] == ["dup"]
        await bus.publish("t", 1)
        await bus.drain()
        assert bus.stats().actors["dup"].delivered == 1
        assert bus.subscriptions() == [first]


async def test_a_closed_and_stopped_subscription_frees_its_name() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        old = bus.subscribe("t", lambda env: None, name="svc")
        old.close()
        with pytest.raises(ConfigurationError, match="already exists"):
            bus.subscribe("t", lambda env: None, name="svc")  # closed, not stopped yet
        with trio.fail_after(5):
            await old.wait_closed()
        new = bus.subscribe("t", lambda env: None, name="svc")
        await bus.publish("t", 1)
        await bus.drain()
        assert bus.subscriptions() == [new]
        assert bus.stats().actors["svc"].delivered == 1


async def test_names_derived_from_the_handler_get_a_suffix() -> None:
    def handle(env: Envelope[Any]) -> None:
        pass

    async with open_bus() as bus:
        bus.topic("t", int)
        a = bus.subscribe("t", handle)
        b = bus.subscribe("t", handle)
        assert (a.name, b.name) == (handle.__qualname__, f"{handle.__qualname__}#2")
        first, second = Recorder.attach(bus), Recorder.attach(bus)
        assert [s.name for s in bus.subscriptions()][2:] == ["recorder", "recorder#2"]
        await bus.publish("t", 7)
        await bus.drain()
        assert first.payloads() == second.payloads() == [7]


@pytest.mark.parametrize("bad", ["", 3])
async def test_a_subscriber_name_must_be_a_non_empty_str(bad: Any) -> None:
    async with open_bus() as bus:
        with pytest.raises(ConfigurationError, match="name must be a non-empty str"):
            bus.subscribe("#", lambda env: None, name=bad)


# -- item 10: group= with concurrency=N -------------------------------------------------


@pytest.mark.parametrize(("members", "lanes"), [(2, 2), (2, 3), (3, 3)])
async def test_group_members_with_lanes_keep_each_key_on_one_lane_in_order(
    members: int, lanes: int
) -> None:
    """Each member of a group has N lanes; a key stays on one lane of one member, in
    order, and the keys of a member spread over all of its lanes."""
    seen: dict[str, list[tuple[str, int, int]]] = defaultdict(list)  # key -> (member, lane, n)

    def member(name: str) -> Any:
        async def handle(env: Envelope[int]) -> None:
            task = trio.lowlevel.current_task()
            seen[env.key or ""].append((name, id(task), env.payload))
            await trio.lowlevel.checkpoint()  # let the other lanes run in between

        return handle

    keys = [f"k{i}" for i in range(64)]
    with trio.fail_after(10):
        async with open_bus() as bus:
            bus.topic("t", int)
            names = [f"m{i}" for i in range(members)]
            for name in names:
                bus.subscribe("t", member(name), name=name, group="g", concurrency=lanes)
            for n in range(5):
                for key in keys:
                    await bus.publish("t", n, key=key)
    lanes_used: dict[str, set[int]] = defaultdict(set)
    for key in keys:
        places = {(m, lane) for m, lane, _ in seen[key]}
        assert len(places) == 1, f"key {key} moved between lanes/members: {places}"
        assert [n for _, _, n in seen[key]] == list(range(5)), f"key {key} out of order"
        [(m, lane)] = places
        lanes_used[m].add(lane)
    assert sorted(lanes_used) == names
    assert {m: len(used) for m, used in lanes_used.items()} == dict.fromkeys(names, lanes)
    assert sum(bus.stats().actors[m].delivered for m in names) == 64 * 5
