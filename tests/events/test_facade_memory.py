"""The memory backend on the bus: logs, groups, callbacks as actors, lifecycle."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from bus import (
    BusClosedError,
    ConfigurationError,
    NotDeliveredError,
    PayloadTypeError,
    TopicError,
    open_bus,
)
from bus.abc import H_ERROR, H_FAILED_SUBSCRIBER, H_ORIGINAL_TOPIC
from bus.events import EventMessage, InMemoryAdapter, shared_bus


def msg(topic: str, n: int, key: str | None = None) -> EventMessage:
    return EventMessage(topic=topic, data={"n": n}, key=key, headers={"h": str(n)})


async def publish_all(adapter: InMemoryAdapter, topic: str, count: int) -> None:
    for n in range(count):
        await adapter.publish(msg(topic, n))


async def test_round_trip_preserves_key_headers_timestamp() -> None:
    adapter = InMemoryAdapter()
    data: dict[str, Any] = {"a": [1, 2]}
    sent = EventMessage(topic="t", data=data, key="k", headers={"x": "y"}, timestamp=7)
    await adapter.publish(sent)
    data["a"].append(3)  # the bus holds a private copy
    assert [m async for m in adapter.consume("t")] == [
        EventMessage(topic="t", data={"a": [1, 2]}, key="k", headers={"x": "y"}, timestamp=7)
    ]


async def test_adapters_of_a_run_share_one_bus_named_buses_are_apart() -> None:
    a, b, other = InMemoryAdapter(), InMemoryAdapter("default"), InMemoryAdapter("other")
    await a.publish(msg("shared", 1))
    assert "shared" in await b.list_topics()
    assert "shared" not in await other.list_topics()
    assert (await shared_bus()).retained("shared")[0].payload == {"n": 1}


async def test_one_engine_the_facade_on_your_own_bus() -> None:
    seen: list[tuple[str, Any, str | None]] = []
    async with open_bus() as bus:
        bus.subscribe("orders.#", lambda env: seen.append((env.topic, env.payload, env.key)))
        adapter = InMemoryAdapter(bus)
        await adapter.publish(EventMessage(topic="orders.created", data={"id": 1}, key="c1"))
        await bus.drain()
        assert seen == [("orders.created", {"id": 1}, "c1")]
        assert bus.stats().topics["orders.created"].published == 1
        # and what the application publishes there, the facade reads
        await bus.publish("orders.created", {"id": 2})
        assert [m.data async for m in adapter.consume("orders.created")] == [{"id": 1}, {"id": 2}]
    with pytest.raises(BusClosedError):
        await adapter.publish(msg("orders.created", 3))


async def test_consume_ends_at_end_of_log_unless_follow() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 2)
    assert [m.data["n"] async for m in adapter.consume("t")] == [0, 1]
    assert [m async for m in adapter.consume("t", from_beginning=False)] == []
    got: list[int] = []
    async with trio.open_nursery() as nursery:

        async def follow() -> None:
            async for message in adapter.consume("t", follow=True):
                got.append(message.data["n"])
                if len(got) == 3:
                    return

        nursery.start_soon(follow)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [0, 1]
        await adapter.publish(msg("t", 2))
    assert got == [0, 1, 2]


async def test_max_length_bounds_the_log() -> None:
    adapter = InMemoryAdapter()
    await adapter.create_topic("t", max_length=2)
    await publish_all(adapter, "t", 5)
    assert [m.data["n"] async for m in adapter.consume("t")] == [3, 4]


async def test_group_commits_after_handling_and_resumes() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 3)
    reader = adapter.consume("t", group="g")
    assert (await anext(reader)).data["n"] == 0
    reader.commit()
    async for message in reader:  # holds 1 without committing, then drops the reader
        assert message.data["n"] == 1
        break
    del reader
    gc.collect()
    assert [m.data["n"] async for m in adapter.consume("t", group="g")] == [1, 2]
    assert [m.data["n"] async for m in adapter.consume("t", group="g")] == []


async def test_push_returns_once_callbacks_handled_it() -> None:
    adapter = InMemoryAdapter()
    seen: list[int] = []

    async def handler(message: EventMessage) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(message.data["n"])

    await adapter.subscribe("t", handler)
    await publish_all(adapter, "t", 3)
    assert seen == [0, 1, 2]


async def test_subscribe_from_beginning_replays_then_live() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 2)
    late: list[int] = []
    fresh: list[int] = []

    async def replayed(message: EventMessage) -> None:
        late.append(message.data["n"])

    async def live(message: EventMessage) -> None:
        fresh.append(message.data["n"])

    await adapter.subscribe("t", replayed, from_beginning=True)
    await adapter.subscribe("t", live)
    await adapter.publish(msg("t", 2))
    await adapter.drain()
    assert late == [0, 1, 2]
    assert fresh == [2]


async def test_group_members_compete_groups_each_get_everything() -> None:
    adapter = InMemoryAdapter()
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def handler(name: str) -> Any:
        async def handle(message: EventMessage) -> None:
            got[name].append(message.data["n"])

        return handle

    await adapter.subscribe("t", handler("a"), group="g")
    await adapter.subscribe("t", handler("b"), group="g")
    await adapter.subscribe("t", handler("c"), group="h")
    await publish_all(adapter, "t", 4)
    assert sorted(got["a"] + got["b"]) == [0, 1, 2, 3]
    assert got["a"] and got["b"]
    assert got["c"] == [0, 1, 2, 3]


async def test_failing_callback_dead_letters_and_the_publisher_is_told() -> None:
    adapter = InMemoryAdapter()

    async def handler(message: EventMessage) -> None:
        raise RuntimeError(f"cannot take {message.data['n']}")

    await adapter.subscribe("t", handler, name="picky")
    with pytest.raises(NotDeliveredError, match="cannot take 7"):
        await adapter.publish(msg("t", 7))
    [dead] = [m async for m in adapter.consume(adapter.dead_letter_topic)]
    assert dead.data == {"n": 7}
    assert dead.headers[H_ERROR] == "cannot take 7"
    assert dead.headers[H_ORIGINAL_TOPIC] == "t"
    assert dead.headers[H_FAILED_SUBSCRIBER] == "picky"


async def test_callback_publishing_to_its_own_topic_does_not_wait_for_itself() -> None:
    adapter = InMemoryAdapter()
    seen: list[int] = []

    async def handler(message: EventMessage) -> None:
        n = message.data["n"]
        seen.append(n)
        if n < 3:
            await adapter.publish(msg("t", n + 1))

    await adapter.subscribe("t", handler)
    await adapter.publish(msg("t", 0))
    await adapter.drain()
    assert seen == [0, 1, 2, 3]


async def test_chain_of_callbacks_completes_before_push_returns() -> None:
    adapter = InMemoryAdapter()
    order: list[str] = []

    async def first(message: EventMessage) -> None:
        await adapter.publish(EventMessage(topic="b", data={}))
        order.append("a done")

    async def second(message: EventMessage) -> None:
        await trio.lowlevel.checkpoint()
        order.append("b done")

    await adapter.subscribe("a", first)
    await adapter.subscribe("b", second)
    await adapter.publish(EventMessage(topic="a", data={}))
    assert order == ["b done", "a done"]


async def test_topic_management() -> None:
    adapter = InMemoryAdapter()
    await adapter.create_topic("x.one", partitions=3, replication_factor=1)
    await adapter.create_topic("x.one")  # exists: no-op
    await adapter.publish(msg("x.two", 0))  # created on use
    topics = await adapter.list_topics()
    assert {"x.one", "x.two", "bus.dead_letter"} <= set(topics)
    await adapter.delete_topic("x.one")
    assert "x.one" not in await adapter.list_topics()
    with pytest.raises(TopicError, match="not declared"):
        await adapter.delete_topic("x.one")
    with pytest.raises(ConfigurationError, match="unknown option"):
        await adapter.create_topic("x.three", retention_ms=5)


async def test_delete_topic_ends_readers() -> None:
    adapter = InMemoryAdapter()
    await publish_all(adapter, "t", 1)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:

        async def follow() -> None:
            async for message in adapter.consume("t", follow=True):
                seen.append(message.data["n"])

        nursery.start_soon(follow)
        await trio.testing.wait_all_tasks_blocked()
        await adapter.delete_topic("t")
    assert seen == [0]


@pytest.mark.parametrize("topic", ["", "has space", "a..b", "wild.*", 42])
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
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        await adapter.subscribe("t", handler, retry=3)
    with pytest.raises(ConfigurationError, match="callable"):
        await adapter.subscribe("t", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        InMemoryAdapter(bus=3)  # type: ignore[arg-type]
    with pytest.raises(PayloadTypeError):
        await adapter.publish(EventMessage(topic="t", data={"x": object()}))


async def test_lifecycle_lazy_connect_disconnect_reconnect() -> None:
    adapter = InMemoryAdapter()
    assert not adapter.is_connected
    await adapter.publish(msg("t", 0))  # connects lazily
    assert adapter.is_connected
    reader = adapter.consume("t", follow=True)
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


async def test_disconnect_stops_subscriptions() -> None:
    publisher, subscriber = InMemoryAdapter(), InMemoryAdapter()
    seen: list[int] = []

    async def handler(message: EventMessage) -> None:
        seen.append(message.data["n"])

    await subscriber.subscribe("t", handler)
    await publisher.publish(msg("t", 0))
    await subscriber.disconnect()
    await publisher.publish(msg("t", 1))
    await publisher.drain()
    assert seen == [0]


async def test_waiting_uses_no_timers(autojump_clock: trio.testing.MockClock) -> None:
    adapter = InMemoryAdapter()
    start = trio.current_time()
    with trio.move_on_after(100):
        await anext(adapter.consume("t", follow=True))
    assert trio.current_time() - start == 100  # parked until the deadline, no polling

