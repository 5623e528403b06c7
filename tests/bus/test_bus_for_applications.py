"""What applications built on the core (the facade, the service) use instead of the bus's
privates: declare_pattern, declared + Topic.retention, new_id, route, subscriptions(topic)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio

from bus import (
    ConfigurationError,
    Envelope,
    NotDeliveredError,
    Retention,
    RetryPolicy,
    UnknownTopicError,
    open_bus,
)
from bus.abc import Delivery, RawCodec


class Order(msgspec.Struct):
    id: int


async def test_declare_pattern_declares_matching_topics_on_first_use() -> None:
    async with open_bus() as bus:
        bus.declare_pattern("raw.#", RawCodec())
        assert bus.declared("raw.a.b") is None  # not before it is used
        got: list[bytes] = []
        bus.subscribe("raw.#", lambda env: got.append(env.payload))
        await bus.publish("raw.a.b", b"\x00\x01")
        declared = bus.declared("raw.a.b")
        assert declared is not None and declared.type is bytes
        with pytest.raises(UnknownTopicError):
            await bus.publish("other", b"")  # strict: no family covers it
        await bus.drain()
    assert got == [b"\x00\x01"]


async def test_declared_tells_type_and_retention_without_declaring() -> None:
    async with open_bus() as bus:
        assert bus.declared("orders") is None
        assert "orders" not in bus.topics()
        bus.topic("orders", Order)
        handle = bus.declared("orders")
        assert handle is not None and (handle.name, handle.type) == ("orders", Order)
        assert handle.retention is None
        bus.topic("orders", Order, retain=Retention(max_count=5))
        assert handle.retention == Retention(max_count=5)  # read now, not when made
        bus.delete_topic("orders")
        assert handle.retention is None and bus.declared("orders") is None


async def test_route_delivers_an_envelope_made_elsewhere_as_it_is() -> None:
    async with open_bus() as bus:
        bus.topic("orders", Order)
        got: list[Envelope[Any]] = []
        bus.subscribe("orders", got.append)
        first, second = bus.new_id(), bus.new_id()
        assert first < second and len(first) == len(second)
        env = Envelope(
            id=first, topic="orders", payload=Order(1), key="k", headers={"h": "v"},
            time=12.5, source="elsewhere",
        )
        await bus.route(env)
        await bus.drain()
        published = await bus.publish("orders", Order(2))
    assert got == [env, published]  # the same envelope: id, time and source kept
    assert got[0] is env and second < published.id  # one sequence with publish's ids


async def test_route_confirm_waits_until_done_and_says_who_failed() -> None:
    async with open_bus(retry=RetryPolicy(attempts=1)) as bus:
        bus.topic("orders", Order)
        handled: list[int] = []

        async def slow(env: Envelope[Order]) -> None:
            await trio.sleep(0.01)
            if env.payload.id < 0:
                raise ValueError("negative")
            handled.append(env.payload.id)

        bus.subscribe("orders", slow, name="slow")
        env = Envelope(id=bus.new_id(), topic="orders", payload=Order(1), delivery=Delivery())
        await bus.route(env, confirm=True)
        assert handled == [1]  # done before route returned
        bad = Envelope(id=bus.new_id(), topic="orders", payload=Order(-1), delivery=Delivery())
        with pytest.raises(NotDeliveredError, match=r"slow: dead_lettered \(negative\)"):
            await bus.route(bad, confirm=True)
        untracked = Envelope(id=bus.new_id(), topic="orders", payload=Order(3))
        with pytest.raises(ConfigurationError, match=r"delivery=Delivery\(\)"):
            await bus.route(untracked, confirm=True)


async def test_subscriptions_of_a_topic_are_those_it_reaches() -> None:
    async with open_bus(strict=False) as bus:
        direct = bus.subscribe("orders.*", lambda env: None, name="direct")
        first = bus.subscribe("orders.#", lambda env: None, name="m1", group="g")
        second = bus.subscribe("orders.#", lambda env: None, name="m2", group="g")
        other = bus.subscribe("payments.*", lambda env: None, name="other")
        assert set(bus.subscriptions("orders.created")) == {direct, first, second}
        assert bus.subscriptions("orders") == [first, second]  # '#' matches zero segments
        assert bus.subscriptions("payments.x") == [other]
        assert bus.subscriptions("nothing") == []
        assert bus.subscriptions(bus.reply_topic) == []  # the reply router is no subscription
        assert set(bus.subscriptions()) == {direct, first, second, other}
        direct.close()
        assert set(bus.subscriptions("orders.created")) == {first, second}
