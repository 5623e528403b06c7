"""The facade's consumer groups on a real Kafka (docs/facade.md, "Kafka: groups and
rebalances"): one Kafka group per facade group and topic, a group's start fixed before
``pull``/``subscribe`` returns and kept through later rebalances, and consumers that
leave their group however their scope ends.

Group membership is read from Kafka itself (``DescribeGroups`` through aiokafka's admin
client). A member that does not leave its group stalls the next join until its session
times out; these tests give the consumers a 60 s session, longer than the facade's 10 s
start-up bound, so a member left behind fails the next ``pull`` instead of slowing it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bus.events import BaseEvent

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(180)]

PROGRAM = Path(__file__).parent / "programs" / "kafka_break_and_exit.py"
LONG_SESSION = {"session_timeout_ms": 60_000}


def group_id(group: str, topic: str) -> str:
    """The Kafka group id of a facade group on a topic, as docs/facade.md gives it."""
    return f"{group}~{topic}"


class Step(msgspec.Struct):
    id: str


def _events(server: str, prefix: str, **options: Any) -> BaseEvent[Step]:
    return BaseEvent(model=Step, event_type="kafka", topic_prefix=prefix,
                     bootstrap_servers=server, **options)


async def _members(server: str, group: str) -> tuple[str, int]:
    """``(state, number of members)`` of Kafka group *group*, as the broker says now."""

    async def describe() -> tuple[str, int]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=server)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
            (found,) = response.groups
            return str(found[2]), len(found[5])  # (error, id, state, type, protocol, members)
        finally:
            await admin.close()

    return await trio.to_thread.run_sync(asyncio.run, describe())


class Seen:
    """What callbacks handled, in order, and a way to wait for it (no polling)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = trio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def until(self, done: Any, seconds: float = 60) -> None:
        with trio.fail_after(seconds):
            while not done(self.items):
                self._changed = trio.Event()
                await self._changed.wait()


@pytest.fixture
def server(brokers: Any) -> str:
    brokers.require("kafka")
    return str(brokers.env("KAFKA_SERVER"))


@pytest.fixture
def prefix(unique: str) -> str:
    return unique.replace("trio-bus-smoke-", "kgroups")


async def test_four_sibling_subscriptions_each_get_what_is_pushed_after_it_returned(
    server: str, prefix: str
) -> None:
    """The seed's saga: four awaited ``pull(callback=...)`` in the default group, on four
    topics. Each is a Kafka group of its own, so a new one does not take the others'
    partitions away: what is pushed right after a subscription returned (while the next
    ones join) and after all four is delivered, once."""
    names = ["created", "reserved", "processed", "failed"]
    events = _events(server, prefix)
    got = Seen()
    async with events:
        for name in names:
            await events.create_topic(name)
        for name in names:

            async def handle(step: Step, name: str = name) -> None:
                got.add((name, step.id))

            await events.pull(name, callback=handle)
            await events.push(name, Step(id="early"))
        for name in names:
            await events.push(name, Step(id="late"))
        await got.until(lambda items: len(items) >= 8)
        assert sorted(got.items) == sorted((n, i) for n in names for i in ("early", "late"))
        for name in names:
            assert await _members(server, group_id("events", events.topic(name))) == (
                "Stable", 1
            )
        for name in names:
            await events.delete_topic(name)


async def test_a_groups_start_holds_for_its_next_members_and_rebalances(
    server: str, prefix: str
) -> None:
    """A callback of group ``g`` returns and goes away without reading anything: the
    group's start was fixed when it returned, so the message pushed then goes to the
    group's next member (which alone would start at new messages). A third member joining
    (a rebalance) and the first one leaving (another) lose nothing either."""
    handled = Seen()

    def handler(who: str) -> Any:
        async def handle(step: Step) -> None:
            handled.add((who, step.id))

        return handle

    first = _events(server, prefix)
    await first.create_topic("steps")
    await first.pull("steps", callback=handler("first"), group="g")
    await first.disconnect()  # it left, having read nothing
    second, third = _events(server, prefix), _events(server, prefix)
    try:
        await second.push("steps", Step(id="1"), key="k")
        await second.pull("steps", callback=handler("second"), group="g")
        await handled.until(lambda items: ("second", "1") in items)
        await third.pull("steps", callback=handler("third"), group="g")  # a rebalance
        await second.push("steps", Step(id="2"), key="k")
        await handled.until(lambda items: any(i == "2" for _, i in items))
        await second.disconnect()  # a rebalance: the third member takes the partition
        await third.push("steps", Step(id="3"), key="k")
        await handled.until(lambda items: ("third", "3") in items)
        assert sorted(i for _, i in handled.items) == ["1", "2", "3"]  # once each, first none
        await third.delete_topic("steps")
    finally:
        with trio.CancelScope(shield=True):
            await second.disconnect()
            await third.disconnect()


@pytest.mark.parametrize("how", ["break", "exception", "cancel"])
async def test_a_pull_leaves_its_group_however_its_scope_ends(
    server: str, prefix: str, how: str
) -> None:
    """After ``break``, an exception or a cancellation in ``async for``, the pull's
    consumer leaves its group: the group's next consumer is its only member and gets the
    message that was in hand first. With a 60 s session, a member left behind would hold
    that join past the facade's 10 s start-up bound (``BackendUnavailableError``)."""
    events = _events(server, prefix, consumer_options=LONG_SESSION)
    async with events:
        await events.create_topic("moves")
        for n in ("a", "b"):
            await events.push("moves", Step(id=n), key="k")
        with trio.CancelScope() as scope:
            try:
                async for step in events.pull("moves", group="g"):
                    assert step.id == "a"  # in hand, not handled
                    if how == "break":
                        break
                    if how == "exception":
                        raise LookupError("the handler failed")
                    scope.cancel()
                    await trio.sleep_forever()
            except LookupError:
                assert how == "exception"
        handled = Seen()

        async def handle(step: Step) -> None:
            handled.add(step.id)

        await events.pull("moves", callback=handle, group="g")
        group = group_id("g", events.topic("moves"))
        assert await _members(server, group) == ("Stable", 1)  # the pull's member is gone
        await handled.until(lambda items: len(items) >= 2)
        assert handled.items == ["a", "b"]
        await events.delete_topic("moves")


async def test_a_process_that_ends_right_after_a_break_leaves_its_group(
    server: str, prefix: str
) -> None:
    """A program that breaks out of a pull and ends (no ``disconnect``, no ``async
    with``): its consumer has left the group by the time the process exited. Three
    programs in turn, as one left behind only some of the time (the trio run's end
    cancelled the asyncio loop of its consumer's client before the consumer left)."""
    events = _events(server, prefix, consumer_options=LONG_SESSION)
    async with events:
        await events.create_topic("exits")
        await events.push("exits", Step(id="a"), key="k")
        for _ in range(3):
            done = await trio.run_process(
                [sys.executable, str(PROGRAM), server, prefix, "exits", "g"],
                capture_stdout=True, capture_stderr=True, check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout.decode() == "a\n"
            group = group_id("g", events.topic("exits"))
            assert await _members(server, group) == ("Empty", 0)
        handled = Seen()

        async def handle(step: Step) -> None:
            handled.add(step.id)

        await events.pull("exits", callback=handle, group="g")
        await handled.until(bool)
        assert handled.items == ["a"]  # the message in hand when the program broke
        await events.delete_topic("exits")
