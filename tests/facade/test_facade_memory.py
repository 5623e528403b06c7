"""The memory backend: log, retention, consumer groups, commits, waiting, lifecycle."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bus import (
    BusClosedError,
    ConfigurationError,
    EventMessage,
    InMemoryAdapter,
    MemoryBroker,
    PayloadTypeError,
    TopicError,
)


def msg(topic: str, n: int, key: str | None = None) -> EventMessage:
    return EventMessage(topic=topic, data={"n": n}, key=key, headers={"h": str(n)})


async def publish_all(adapter: InMemoryAdapter, topic: str, count: int) -> None:
    for n in range(count):
        await adapter.publish(msg(topic, n))


async def test_round_trip_preserves_key_headers_timestamp() -> None:
    adapter = InMemoryAdapter()
    sent = EventMessage(topic="t", data={"a": [1, 2]}, key="k", headers={"x": "y"}, timestamp=7)
    await adapter.publish(sent)
    async for received in adapter.consume("t"):
        assert received == sent
        assert received is not sent  # stored encoded: consumers never share objects
        break


async def test_named_brokers_are_shared_private_ones_are_not() -> None:
    a, b = InMemoryAdapter(), InMemoryAdapter("default")
    private = InMemoryAdapter(MemoryBroker())
    await a.publish(msg("shared", 1))
    assert await b.list_topics() == ["shared"]
    assert await private.list_topics() == []


async def test_consume_from_beginning_then_follows_live() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 2)
    seen: list[int] = []

    async def reader() -> None:
        async for message in adapter.consume("t"):
            seen.append(message.data["n"])
            if len(seen) == 4:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [0, 1]  # parked, waiting for more (no polling)
        await adapter.publish(msg("t", 2))
        await adapter.publish(msg("t", 3))
    assert seen == [0, 1, 2, 3]


async def test_consume_from_end_and_follow_false() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 3)
    assert [m.data["n"] async for m in adapter.consume("t", follow=False)] == [0, 1, 2]
    late = adapter.consume("t", from_beginning=False, follow=False)
    assert [m async for m in late] == []


async def test_max_length_drops_oldest() -> None:
    broker = MemoryBroker(max_length=3)
    adapter = InMemoryAdapter(broker)
    await publish_all(adapter, "t", 5)
    assert [m.data["n"] for m in broker.messages("t")] == [2, 3, 4]
    assert broker.offsets("t") == (2, 5)
    await adapter.create_topic("small", max_length=1)
    await publish_all(adapter, "small", 2)
    assert [m.data["n"] for m in broker.messages("small")] == [1]


async def test_group_that_fell_behind_retention_skips_dropped_messages() -> None:
    broker = MemoryBroker(max_length=2)
    adapter = InMemoryAdapter(broker)
    await adapter.publish(msg("t", 0))
    async for _ in adapter.consume("t", group="g"):
        break  # creates the group at offset 0 without committing
    await publish_all(adapter, "t", 4)
    got = [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)]
    assert got == [2, 3]
    assert broker.committed("t", "g") == 5


async def test_groups_each_get_everything_members_share() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    await publish_all(adapter, "t", 6)
    a = adapter.consume("t", group="g1", follow=False)
    b = adapter.consume("t", group="g1", follow=False)
    got_a, got_b = [], []
    # Interleave two members of g1: each message goes to exactly one of them.
    for _ in range(3):
        got_a.append((await anext(a)).data["n"])
        got_b.append((await anext(b)).data["n"])
    assert sorted(got_a + got_b) == [0, 1, 2, 3, 4, 5]
    assert not set(got_a) & set(got_b)
    everything = [m.data["n"] async for m in adapter.consume("t", group="g2", follow=False)]
    assert everything == [0, 1, 2, 3, 4, 5]


async def test_committed_offset_after_handling_and_resume() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    await publish_all(adapter, "t", 5)
    reader = adapter.consume("t", group="g")
    assert (await anext(reader)).data["n"] == 0
    assert broker.committed("t", "g") == 0  # handed out, not yet handled
    assert (await anext(reader)).data["n"] == 1
    assert broker.committed("t", "g") == 1  # asking for #1 committed #0
    reader.commit()
    assert broker.committed("t", "g") == 2
    await reader.aclose()
    rest = [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)]
    assert rest == [2, 3, 4]
    assert broker.committed("t", "g") == 5
    assert broker.committed("t", "nobody") is None


async def test_abandoned_reader_gives_message_back_at_least_once() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    await publish_all(adapter, "t", 2)
    async for message in adapter.consume("t", group="g"):
        assert message.data["n"] == 0
        break  # "crash" before committing: the reader is dropped
    again = [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)]
    assert again == [0, 1]


async def test_reader_closed_by_exception_gives_message_back() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    await publish_all(adapter, "t", 1)
    with pytest.raises(RuntimeError):
        async with adapter.consume("t", group="g") as reader:
            async for _ in reader:
                raise RuntimeError("handler crashed")
    assert broker.committed("t", "g") == 0
    assert [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)] == [0]


async def test_cancelled_waiting_reader_holds_nothing() -> None:
    adapter = InMemoryAdapter()
    with trio.move_on_after(1):
        async for _ in adapter.consume("t", group="g"):
            pytest.fail("topic is empty")
    await adapter.publish(msg("t", 0))
    assert [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)] == [0]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_waiting_uses_no_timers(autojump_clock: trio.testing.MockClock) -> None:
    adapter = InMemoryAdapter()
    start = trio.current_time()
    with trio.move_on_after(3600):
        async for _ in adapter.consume("t"):
            pass
    assert trio.current_time() - start == pytest.approx(3600)


async def test_inline_subscribe_delivers_in_publisher_task_in_order() -> None:
    adapter = InMemoryAdapter()
    seen: list[tuple[int, object]] = []

    async def handler(message: EventMessage) -> None:
        seen.append((message.data["n"], trio.lowlevel.current_task()))

    await adapter.subscribe("t", handler)
    await publish_all(adapter, "t", 3)
    me = trio.lowlevel.current_task()
    assert seen == [(0, me), (1, me), (2, me)]


async def test_subscribe_starts_at_end_unless_from_beginning_or_group_committed() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 2)
    late: list[int] = []
    early: list[int] = []

    async def to(target: list[int]) -> object:
        async def handler(message: EventMessage) -> None:
            target.append(message.data["n"])

        return handler

    await adapter.subscribe("t", await to(late))  # type: ignore[arg-type]
    await adapter.subscribe("t", await to(early), from_beginning=True)  # type: ignore[arg-type]
    assert early == [0, 1]  # backlog delivered before subscribe returned
    await adapter.publish(msg("t", 2))
    assert late == [2] and early == [0, 1, 2]


async def test_inline_group_round_robin_and_separate_groups() -> None:
    adapter = InMemoryAdapter()
    a: list[int] = []
    b: list[int] = []
    other: list[int] = []

    def collect(target: list[int]) -> object:
        async def handler(message: EventMessage) -> None:
            target.append(message.data["n"])

        return handler

    await adapter.subscribe("t", collect(a), group="workers")  # type: ignore[arg-type]
    await adapter.subscribe("t", collect(b), group="workers")  # type: ignore[arg-type]
    await adapter.subscribe("t", collect(other))  # type: ignore[arg-type]
    await publish_all(adapter, "t", 4)
    assert a == [0, 2] and b == [1, 3] and other == [0, 1, 2, 3]


async def test_inline_failure_reaches_publisher_and_is_redelivered_first() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    seen: list[int] = []
    healthy: list[int] = []
    fail = {0}

    async def flaky(message: EventMessage) -> None:
        n = message.data["n"]
        if n in fail:
            fail.discard(n)
            raise ValueError("boom")
        seen.append(n)

    async def fine(message: EventMessage) -> None:
        healthy.append(message.data["n"])

    await adapter.subscribe("t", flaky, group="g")
    await adapter.subscribe("t", fine)
    with pytest.raises(ValueError, match="boom"):
        await adapter.publish(msg("t", 0))
    assert healthy == [0]  # the other group was still served
    assert broker.messages("t")[0].data == {"n": 0}  # stored despite the failure
    assert broker.committed("t", "g") == 0
    await adapter.publish(msg("t", 1))
    assert seen == [0, 1]  # retried first, order kept
    assert broker.committed("t", "g") == 2


async def test_reentrant_publish_from_callback_keeps_order() -> None:
    adapter = InMemoryAdapter()
    seen: list[int] = []

    async def echo(message: EventMessage) -> None:
        n = message.data["n"]
        seen.append(n)
        if n < 3:
            await adapter.publish(msg("t", n + 10))

    await adapter.subscribe("t", echo)
    await adapter.publish(msg("t", 0))
    assert seen == [0, 10]
    await adapter.publish(msg("t", 1))
    assert seen == [0, 10, 1, 11]


async def test_background_subscription_and_drain() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)
    seen: list[int] = []

    async def slow(message: EventMessage) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(message.data["n"])

    async with trio.open_nursery() as nursery:
        await adapter.subscribe("t", slow, nursery=nursery, group="bg")
        await publish_all(adapter, "t", 5)
        assert len(seen) < 5  # publish did not wait for the background task
        await adapter.drain()
        assert seen == [0, 1, 2, 3, 4]
        assert broker.committed("t", "bg") == 5
        await adapter.disconnect()  # ends the background task
    assert seen == [0, 1, 2, 3, 4]


async def test_background_failure_surfaces_and_message_is_kept() -> None:
    broker = MemoryBroker()
    adapter = InMemoryAdapter(broker)

    async def boom(message: EventMessage) -> None:
        raise KeyError("bad")

    with pytest.RaisesGroup(KeyError):
        async with trio.open_nursery() as nursery:
            await adapter.subscribe("t", boom, nursery=nursery, group="g")
            await adapter.publish(msg("t", 0))
    assert broker.committed("t", "g") == 0
    assert [m.data["n"] async for m in adapter.consume("t", group="g", follow=False)] == [0]


async def test_topic_management() -> None:
    adapter = InMemoryAdapter()
    await adapter.create_topic("b")
    await adapter.create_topic("a", shard_count=2, partitions=3)  # portable, ignored
    await adapter.create_topic("a")  # exists: not an error
    assert await adapter.list_topics() == ["a", "b"]
    await adapter.delete_topic("a")
    assert await adapter.list_topics() == ["b"]
    with pytest.raises(TopicError, match="does not exist"):
        await adapter.delete_topic("a")
    with pytest.raises(ConfigurationError, match="retention_ms"):
        await adapter.create_topic("c", retention_ms=5)
    with pytest.raises(ConfigurationError, match="max_length"):
        await adapter.create_topic("c", max_length=0)


async def test_delete_topic_ends_readers() -> None:
    adapter = InMemoryAdapter()
    done = trio.Event()

    async def reader() -> None:
        async for _ in adapter.consume("t"):
            pass
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await adapter.delete_topic("t")
    assert done.is_set()


@pytest.mark.parametrize("topic", ["", "has space", "x" * 250, 5])
async def test_invalid_topic_names(topic: object) -> None:
    adapter = InMemoryAdapter()
    with pytest.raises(TopicError):
        await adapter.publish(EventMessage(topic=topic, data={}))  # type: ignore[arg-type]
    with pytest.raises(TopicError):
        await adapter.create_topic(topic)  # type: ignore[arg-type]


async def test_bad_options() -> None:
    adapter = InMemoryAdapter()

    async def handler(message: EventMessage) -> None:
        pass

    with pytest.raises(ConfigurationError, match="unknown option"):
        await adapter.subscribe("t", handler, consumer_group="g")
    with pytest.raises(ConfigurationError, match="unknown option"):
        adapter.consume("t", last_id="0")
    with pytest.raises(ConfigurationError, match="group"):
        await adapter.subscribe("t", handler, group="")
    with pytest.raises(ConfigurationError, match="nursery"):
        await adapter.subscribe("t", handler, nursery="n")
    with pytest.raises(ConfigurationError, match="callable"):
        await adapter.subscribe("t", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        InMemoryAdapter(broker=3)  # type: ignore[arg-type]
    with pytest.raises(PayloadTypeError):
        await adapter.publish(EventMessage(topic="t", data={"x": object()}))


async def test_lifecycle_lazy_connect_disconnect_reconnect() -> None:
    adapter = InMemoryAdapter()
    assert not adapter.is_connected
    await adapter.publish(msg("t", 0))  # connects lazily
    assert adapter.is_connected
    reader = adapter.consume("t")
    seen = []
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            async for message in reader:
                seen.append(message)

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        await adapter.disconnect()  # ends the waiting reader
    assert len(seen) == 1
    with pytest.raises(BusClosedError, match="connect"):
        await adapter.publish(msg("t", 1))
    with pytest.raises(BusClosedError):
        await adapter.list_topics()
    with pytest.raises(BusClosedError):
        await anext(adapter.consume("t"))
    await adapter.disconnect()  # idempotent
    async with adapter:
        await adapter.publish(msg("t", 1))
    assert not adapter.is_connected


async def test_disconnect_stops_inline_subscriptions() -> None:
    publisher, subscriber = InMemoryAdapter(), InMemoryAdapter()
    seen: list[int] = []

    async def handler(message: EventMessage) -> None:
        seen.append(message.data["n"])

    await subscriber.subscribe("t", handler)
    await publisher.publish(msg("t", 0))
    await subscriber.disconnect()
    await publisher.publish(msg("t", 1))
    assert seen == [0]


async def test_reset_ends_everything() -> None:
    broker = MemoryBroker.named("default")
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 2)
    broker.reset()
    assert await adapter.list_topics() == []
    assert [m async for m in adapter.consume("t", follow=False)] == []
