"""Retained topics read as logs (``bus.read``): offsets, groups, commit after handling."""

from __future__ import annotations

import gc

import msgspec
import pytest
import trio
import trio.testing

from bus import (
    ConfigurationError,
    Retention,
    UnknownTopicError,
    open_bus,
)


class Event(msgspec.Struct):
    n: int


async def _fill(bus: object, topic: str, *ns: int) -> None:
    for n in ns:
        await bus.publish(topic, Event(n))  # type: ignore[attr-defined]


async def test_read_from_beginning_ends_at_end_of_log() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1, 2, 3)
        assert [e.payload.n async for e in bus.read("t")] == [1, 2, 3]
        assert [e.payload.n async for e in bus.read("t")] == [1, 2, 3]  # private cursor
        assert [e.payload.n async for e in bus.read("t", from_beginning=False)] == []
        assert [e.payload.n async for e in bus.read("t", offset=1)] == [2, 3]


async def test_offsets_are_absolute_across_trimming() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=2))
        await _fill(bus, "t", 0, 1, 2, 3, 4)
        assert [e.payload.n async for e in bus.read("t")] == [3, 4]
        assert [e.payload.n async for e in bus.read("t", offset=4)] == [4]
        assert [e.payload.n async for e in bus.read("t", offset=0)] == [3, 4]  # trimmed


async def test_follow_waits_for_new_messages_and_ends_when_the_bus_closes() -> None:
    got: list[int] = []
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1)

        async def follow() -> None:
            async for env in bus.read("t", follow=True):
                got.append(env.payload.n)

        bus._nursery.start_soon(follow)  # type: ignore[union-attr]
        await trio.testing.wait_all_tasks_blocked()
        await _fill(bus, "t", 2, 3)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [1, 2, 3]
    assert got == [1, 2, 3]  # the follower ended with the bus, or this block would hang


async def test_group_commits_only_after_handling_and_resumes() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1, 2, 3)
        reader = bus.read("t", group="g")
        assert (await anext(reader)).payload.n == 1
        assert reader.position is not None and reader.position.committed == 0  # in hand
        assert (await anext(reader)).payload.n == 2  # asking for the next commits 1
        assert reader.position.committed == 1
        reader.commit()
        assert reader.position.committed == 2
        await reader.aclose()
        # a later reader of the group resumes after what was committed
        assert [e.payload.n async for e in bus.read("t", group="g")] == [3]
        assert [e.payload.n async for e in bus.read("t", group="g")] == []
        # another group starts afresh
        assert [e.payload.n async for e in bus.read("t", group="h")] == [1, 2, 3]


async def test_uncommitted_message_goes_back_to_the_group() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1, 2)
        async with bus.read("t", group="g") as reader:
            assert (await anext(reader)).payload.n == 1
        assert [e.payload.n async for e in bus.read("t", group="g")] == [1, 2]

        async for env in bus.read("t", group="k"):  # break without commit
            assert env.payload.n == 1
            break
        gc.collect()  # the abandoned reader gives message 1 back
        assert [e.payload.n async for e in bus.read("t", group="k")] == [1, 2]


async def test_readers_of_one_group_share_its_messages() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1, 2, 3, 4)
        a, b = bus.read("t", group="g"), bus.read("t", group="g")
        got = [(await anext(a)).payload.n, (await anext(b)).payload.n]
        got += [(await anext(a)).payload.n, (await anext(b)).payload.n]
        assert sorted(got) == [1, 2, 3, 4]


async def test_group_overtaken_by_retention_jumps_to_oldest() -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=2))
        await _fill(bus, "t", 1)
        reader = bus.read("t", group="g")
        assert (await anext(reader)).payload.n == 1
        reader.commit()
        await _fill(bus, "t", 2, 3, 4)
        assert [e.payload.n async for e in reader] == [3, 4]
        assert reader.position is not None and reader.position.committed == 4


async def test_cancelled_waiting_reader_holds_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        reader = bus.read("t", group="g", follow=True)
        with trio.move_on_after(5):
            await anext(reader)
        await _fill(bus, "t", 1)
        assert [e.payload.n async for e in bus.read("t", group="g")] == [1]


async def test_delete_topic_ends_readers_and_forgets_the_log() -> None:
    ended = trio.Event()
    async with open_bus() as bus:
        bus.topic("t", Event, retain=Retention(max_count=10))
        await _fill(bus, "t", 1)

        async def follow() -> None:
            async for _ in bus.read("t", follow=True):
                pass
            ended.set()

        bus._nursery.start_soon(follow)  # type: ignore[union-attr]
        await trio.testing.wait_all_tasks_blocked()
        bus.delete_topic("t")
        with trio.fail_after(5):
            await ended.wait()
        assert "t" not in bus.topics()
        with pytest.raises(UnknownTopicError, match="not declared"):
            bus.delete_topic("t")
        with pytest.raises(ConfigurationError, match="cannot be deleted"):
            bus.delete_topic(bus.dead_letter_topic)


async def test_read_needs_retention_and_sane_options() -> None:
    async with open_bus() as bus:
        bus.topic("plain", Event)
        with pytest.raises(ConfigurationError, match="retain=Retention"):
            bus.read("plain")
        bus.topic("t", Event, retain=Retention(max_count=10))
        with pytest.raises(ConfigurationError, match="not both"):
            await anext(bus.read("t", group="g", offset=0))
        with pytest.raises(ConfigurationError, match="offset"):
            await anext(bus.read("t", offset=-1))
        with pytest.raises(ConfigurationError, match="group"):
            await anext(bus.read("t", group=""))


async def test_replay_is_in_publish_order_across_topics() -> None:
    """Retained messages of several topics are replayed merged in publish order (not
    topic by topic, nor newest first), before any live message."""
    got: list[tuple[str, int]] = []
    async with open_bus() as bus:
        # declared b before a, so a topic-by-topic replay would give b's first
        bus.topic("acct.b", Event, retain=Retention(max_count=100))
        bus.topic("acct.a", Event, retain=Retention(max_count=100))
        sent = [("acct.a", 1), ("acct.b", 2), ("acct.a", 3), ("acct.b", 4), ("acct.a", 5)]
        for topic, n in sent:
            await bus.publish(topic, Event(n))
        bus.subscribe("acct.*", lambda env: got.append((env.topic, env.payload.n)), replay=True)
        await bus.publish("acct.b", Event(6))
    assert got == [*sent, ("acct.b", 6)]


async def test_retention_max_age_keeps_a_message_exactly_max_age_old(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The boundary: age == max_age is kept, any older is gone (times exact in binary)."""
    async with open_bus() as bus:
        bus.topic("t", int, retain=Retention(max_age=8.0))
        await trio.sleep_until(16.0)
        await bus.publish("t", 1)
        await trio.sleep_until(24.0)  # exactly 8 s old
        assert [e.payload for e in bus.retained("t")] == [1]
        await trio.sleep_until(24.0 + 2**-10)
        assert bus.retained("t") == []
        assert bus.stats().topics["t"].retained == 0
