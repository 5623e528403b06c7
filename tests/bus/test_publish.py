"""Typed topics, publish, envelopes, bad input and the bus lifetime."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, TypedDict

import attrs
import msgspec
import pydantic
import pytest
import trio

from bus import (
    BusClosedError,
    ConfigurationError,
    Envelope,
    PayloadTypeError,
    TopicError,
    UnknownTopicError,
    open_bus,
)


class Order(msgspec.Struct):
    id: str
    amount: int


@dataclasses.dataclass
class DataOrder:
    id: str


@attrs.define
class AttrsOrder:
    id: str


class DictOrder(TypedDict):
    id: str
    amount: int


class PydanticOrder(pydantic.BaseModel):
    id: str


async def test_publish_reaches_a_typed_handler_with_a_full_envelope() -> None:
    got: list[Envelope[Order]] = []
    async with open_bus(name="shop") as bus:
        orders = bus.topic("order.created", Order)
        bus.subscribe("order.created", got.append)
        sent = await orders.publish(Order("o1", 5), key="c1", headers={"traceparent": "00-x"})
    [env] = got
    assert env is sent
    assert env.payload == Order("o1", 5)
    assert (env.topic, env.key, env.headers, env.attempt, env.source) == (
        "order.created", "c1", {"traceparent": "00-x"}, 1, "shop"
    )
    assert env.time > 1.7e9
    attrs_ = env.cloudevent_attributes()
    assert attrs_["type"] == "order.created" and attrs_["id"] == env.id
    assert attrs_["source"] == "shop" and attrs_["partitionkey"] == "c1"
    assert attrs_["time"].endswith("Z")


async def test_ids_are_unique_and_sort_in_publish_order() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        ids = [(await bus.publish("t", i)).id for i in range(300)]
    assert len(set(ids)) == 300
    assert ids == sorted(ids)


async def test_a_published_id_reads_as_a_string_everywhere() -> None:
    """A bus keeps an id as its integer until it is read: every read shows the string."""
    async with open_bus() as bus:
        bus.topic("t", int)
        env = await bus.publish("t", 1)
        after = await bus.publish("t", 2)
    assert type(env.id) is str and env.id.startswith("0x")
    assert int(after.id, 16) == int(env.id, 16) + 1
    assert f"id={env.id!r}" in repr(env)
    assert msgspec.structs.replace(env, attempt=2).id == env.id
    assert Envelope(id="given", topic="t", payload=1).id == "given"


@pytest.mark.parametrize(
    ("tp", "good", "bad"),
    [
        (Order, Order("a", 1), {"id": "a", "amount": 1}),
        (DataOrder, DataOrder("a"), Order("a", 1)),
        (AttrsOrder, AttrsOrder("a"), DataOrder("a")),
        (DictOrder, {"id": "a", "amount": 1}, {"id": "a", "amount": "one"}),
        (dict, {"any": "thing"}, ["not", "a", "dict"]),
        (PydanticOrder, PydanticOrder(id="a"), AttrsOrder("a")),
    ],
)
async def test_each_payload_kind_is_checked(tp: Any, good: Any, bad: Any) -> None:
    got: list[Any] = []
    async with open_bus() as bus:
        bus.topic("t", tp)
        bus.subscribe("t", lambda env: got.append(env.payload))
        await bus.publish("t", good)
        with pytest.raises(PayloadTypeError, match="topic 't' expects"):
            await bus.publish("t", bad)
    assert got == [good]


async def test_codecs_round_trip_each_payload_kind() -> None:
    async with open_bus() as bus:
        for name, tp, value in [
            ("a", Order, Order("x", 2)),
            ("b", DataOrder, DataOrder("x")),
            ("c", DictOrder, {"id": "x", "amount": 3}),
            ("d", PydanticOrder, PydanticOrder(id="x")),
        ]:
            bus.topic(name, tp)
            codec = bus.codec(name)
            assert codec.decode(codec.encode(value)) == value


async def test_wrong_type_error_names_topic_expected_and_actual() -> None:
    async with open_bus() as bus:
        bus.topic("order.created", Order)
        with pytest.raises(PayloadTypeError) as info:
            await bus.publish("order.created", "oops")
    message = str(info.value)
    assert "'order.created'" in message and "Order" in message and "str" in message


async def test_undeclared_topic_on_strict_bus_says_how_to_declare() -> None:
    async with open_bus() as bus:
        with pytest.raises(UnknownTopicError, match=r"bus.topic\('nope', PayloadType\)"):
            await bus.publish("nope", 1)


async def test_non_strict_bus_accepts_any_topic() -> None:
    got: list[object] = []
    async with open_bus(strict=False) as bus:
        bus.subscribe("#", lambda env: got.append(env.payload))
        await bus.publish("free.form", {"x": 1})
    assert got == [{"x": 1}]


async def test_invalid_topic_and_pattern_are_rejected() -> None:
    async with open_bus() as bus:
        with pytest.raises(TopicError):
            bus.topic("bad topic", int)
        with pytest.raises(TopicError):
            bus.subscribe("bad..pattern", print)
        with pytest.raises(TopicError):
            await bus.publish("order.*", 1)


async def test_redeclaring_with_another_type_fails() -> None:
    async with open_bus() as bus:
        bus.topic("t", Order)
        bus.topic("t", Order)  # same type: fine
        with pytest.raises(ConfigurationError, match="already declared with type Order"):
            bus.topic("t", DataOrder)


async def test_key_must_be_a_string() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        with pytest.raises(PayloadTypeError, match="key must be a str"):
            await bus.publish("t", 1, key=5)  # type: ignore[arg-type]


async def test_publish_and_subscribe_after_close_fail_clearly() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
    with pytest.raises(BusClosedError, match="is closed"):
        await bus.publish("t", 1)
    with pytest.raises(BusClosedError, match="inside 'async with open_bus"):
        bus.subscribe("t", print)


async def test_unsupported_handler_is_rejected() -> None:
    async with open_bus() as bus:
        with pytest.raises(ConfigurationError, match="handler must be a callable"):
            bus.subscribe("t", 42)


async def test_an_error_in_the_body_surfaces_unwrapped_and_cancels_actors() -> None:
    cancelled, in_hand = trio.Event(), trio.Event()

    async def slow(env: Envelope[int]) -> None:
        try:
            in_hand.set()
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with pytest.raises(KeyError, match="boom"):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", slow)
            await bus.publish("t", 1)
            with trio.fail_after(5):
                await in_hand.wait()
            raise KeyError("boom")
    assert cancelled.is_set()


async def test_stats_count_topics_and_actors() -> None:
    def handler(env: Envelope[int]) -> None:
        time.sleep(0.002)  # a real, measurable handler duration

    async with open_bus() as bus:
        bus.topic("a", int)
        bus.topic("b", int)
        bus.subscribe("#", handler, name="all")
        for i in range(3):
            await bus.publish("a", i)
        await bus.publish("b", 9)
        await bus.drain()
        stats = bus.stats()
    assert stats.topics["a"].published == 3 and stats.topics["b"].published == 1
    assert stats.actors["all"].delivered == 4 and stats.actors["all"].mailbox_depth == 0
    assert stats.published == 4 and stats.delivered == 4
    # timing is sampled (one call in 16, and the first of a burst): at least one was
    # timed, and what was timed is the handler's real duration
    timed = stats.actors["all"]
    assert 0.002 <= timed.handler_seconds_max < 1.0
    assert 0.002 <= timed.handler_seconds_mean <= timed.handler_seconds_max


async def test_fan_out_waits_for_room_where_a_mailbox_is_full_and_drops_where_told() -> None:
    """Several plain subscribers take publish's fan-out path: a full ``block`` mailbox
    makes publish wait for room, a full ``drop_newest`` one drops."""
    got: dict[str, list[int]] = {"a": [], "b": []}
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: got["a"].append(env.payload), name="a", capacity=1)
        bus.subscribe(
            "t", lambda env: got["b"].append(env.payload), name="b", capacity=1,
            overflow="drop_newest",
        )
        for i in range(5):
            await bus.publish("t", i)
    assert got["a"] == [0, 1, 2, 3, 4]
    assert got["b"][0] == 0 and got["b"] == sorted(got["b"])
    stats = bus.stats()
    assert stats.actors["b"].delivered + stats.actors["b"].dropped == 5
