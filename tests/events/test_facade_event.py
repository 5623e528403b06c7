"""BaseEvent: push/pull over every model kind, type errors, dead letters, lifecycle."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypedDict

import attrs
import msgspec
import pydantic
import pytest
import trio
import trio.testing

from bus import (
    BusClosedError,
    ConfigurationError,
    DecodeError,
    NotDeliveredError,
    PayloadTypeError,
    TopicError,
)
from bus.abc import H_ERROR, H_ERROR_TYPE, H_FAILED_SUBSCRIBER, H_ORIGINAL_TOPIC
from bus.events import BaseEvent, EventMessage, EventStream, InMemoryAdapter, settings


class User(msgspec.Struct):
    id: str
    name: str
    email: str


@dataclasses.dataclass
class DUser:
    id: str
    joined: dt.date


@attrs.define
class AUser:
    id: str
    score: float


class TUser(TypedDict):
    id: str
    age: int


class PUser(pydantic.BaseModel):
    id: str
    seen: dt.datetime


MODEL_CASES: list[tuple[Any, Any, dict[str, Any]]] = [
    (User, User("1", "Ann", "ann@x"), {"id": "1", "name": "Ann", "email": "ann@x"}),
    (DUser, DUser("2", dt.date(2024, 1, 2)), {"id": "2", "joined": "2024-01-02"}),
    (AUser, AUser("3", 1.5), {"id": "3", "score": 1.5}),
    (TUser, TUser(id="4", age=40), {"id": "4", "age": 40}),
    (dict, {"any": ["thing", 1]}, {"any": ["thing", 1]}),
    (
        PUser,
        PUser(id="5", seen=dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC)),
        {"id": "5", "seen": "2024-01-02T03:04:00Z"},
    ),
]


@pytest.mark.parametrize(("model", "obj", "data"), MODEL_CASES)
async def test_push_pull_every_model_kind(model: Any, obj: Any, data: dict[str, Any]) -> None:
    events: BaseEvent[Any] = BaseEvent(model=model, topic_prefix="m")
    sent = await events.push("created", obj, key="k1", headers={"v": "1"})
    assert sent.topic == "m.created"
    assert sent.data == data
    stream = events.pull("created")
    async for received in stream:
        assert received == obj
        assert stream.message is not None and stream.message.key == "k1"
        assert stream.message.headers == {"v": "1"}
        break


class UserV2(msgspec.Struct):
    id: str
    name: str
    email: str
    phone: str | None = None


class Reservation(msgspec.Struct):
    order_id: str


async def dead_letters() -> list[EventMessage]:
    return [m async for m in InMemoryAdapter().consume("bus.dead_letter")]


async def test_push_takes_any_model_that_encodes_to_an_object() -> None:
    events = BaseEvent(model=User)
    await events.push("created", UserV2("1", "a", "a@x", phone="+1"))  # a newer version
    await events.push("created", {"id": "2", "name": "b", "email": "b@x"})
    await events.push("created", Reservation("o1"))  # does not fit User: found on pull
    assert [u async for u in events.pull("created")] == [
        User("1", "a", "a@x"),
        User("2", "b", "b@x"),
    ]
    [dead] = await dead_letters()
    assert dead.data == {"order_id": "o1"}
    assert dead.headers[H_ORIGINAL_TOPIC] == "user.created"
    assert "does not decode into User" in dead.headers[H_ERROR]
    assert dead.headers[H_ERROR_TYPE] == "bus._errors.DecodeError"


@pytest.mark.parametrize("wrong", ["text", 3, [1, 2], object()])
async def test_push_of_what_is_not_a_json_object_names_topic_and_model(wrong: Any) -> None:
    events: BaseEvent[Any] = BaseEvent(model=User, topic_prefix="user")
    with pytest.raises(PayloadTypeError) as info:
        await events.push("created", wrong)
    text = str(info.value)
    assert "'user.created'" in text and "User" in text
    assert [u async for u in events.pull("created")] == []


async def test_undecodable_data_in_pull_is_dead_lettered_and_reading_goes_on() -> None:
    events = BaseEvent(model=User)
    raw = events.event_adapter
    await raw.publish(EventMessage(topic="user.created", data={"id": 1}, key="k"))
    await events.push("created", User("2", "b", "b@x"))
    stream = events.pull("created")
    assert await anext(stream) == User("2", "b", "b@x")
    [dead] = await dead_letters()
    assert dead.data == {"id": 1} and dead.key == "k"
    assert dead.headers[H_FAILED_SUBSCRIBER] == "pull('created')"


async def test_dead_letter_off_raises_from_pull_then_moves_on() -> None:
    events = BaseEvent(model=User, dead_letter=False)
    await events.event_adapter.publish(EventMessage(topic="user.created", data={"id": 1}))
    await events.push("created", User("2", "b", "b@x"))
    stream = events.pull("created")
    with pytest.raises(DecodeError, match=r"'user.created'.*User"):
        await anext(stream)
    assert await anext(stream) == User("2", "b", "b@x")
    assert await dead_letters() == []


async def test_undecodable_data_in_callback_goes_to_dead_letter() -> None:
    events = BaseEvent(model=User)
    seen: list[User] = []
    await events.pull("created", callback=seen.append)
    await events.event_adapter.publish(
        EventMessage(topic="user.created", data={"bad": True}, key="k", headers={"a": "b"})
    )
    await events.push("created", User("1", "a", "a@x"))
    assert seen == [User("1", "a", "a@x")]  # the subscription went on
    [dead] = await dead_letters()
    assert dead.data == {"bad": True} and dead.key == "k"
    assert dead.headers["a"] == "b"
    assert dead.headers[H_ORIGINAL_TOPIC] == "user.created"
    assert dead.headers[H_FAILED_SUBSCRIBER] == "list.append"
    assert "User" in dead.headers[H_ERROR]


async def test_dead_letter_off_fails_the_callback() -> None:
    events = BaseEvent(model=User, dead_letter=False)
    await events.pull("created", callback=lambda user: None)
    with pytest.raises(NotDeliveredError, match="does not decode"):
        await events.event_adapter.publish(EventMessage(topic="user.created", data={}))
    [dead] = await dead_letters()
    assert dead.headers[H_ERROR_TYPE] == "bus._errors.DecodeError"


async def test_callback_sync_or_async_and_errors_not_swallowed() -> None:
    events = BaseEvent(model=User)
    got: list[str] = []

    async def handler(user: User) -> None:
        if user.id == "bad":
            raise RuntimeError("handler failed")
        got.append(user.id)

    await events.pull("created", callback=handler)
    await events.pull("created", callback=lambda user: got.append("sync:" + user.id))
    await events.push("created", User("1", "a", "a"))
    assert sorted(got) == ["1", "sync:1"]
    with pytest.raises(NotDeliveredError, match="handler failed"):
        await events.push("created", User("bad", "b", "b"))
    [dead] = await dead_letters()
    assert dead.headers[H_ERROR] == "handler failed"
    assert dead.headers[H_FAILED_SUBSCRIBER].endswith("handler")


async def test_topics_are_prefixed() -> None:
    users = BaseEvent(model=User)  # prefix defaults to the model name
    orders = BaseEvent(model=dict, topic_prefix="order")
    await users.create_topic("analytics")
    await users.push("created", User("1", "a", "a"))
    await orders.push("created", {"id": 1})
    assert await users.list_topics() == ["user.analytics", "user.created"]
    assert await orders.list_topics() == ["order.created"]
    await users.delete_topic("analytics")
    assert await users.list_topics() == ["user.created"]
    assert users.topic("x.y") == "user.x.y"
    with pytest.raises(TopicError):
        await users.push("", User("1", "a", "a"))


async def test_bad_arguments() -> None:
    events = BaseEvent(model=User)
    with pytest.raises(ConfigurationError, match="key"):
        await events.push("c", User("1", "a", "a"), key=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="headers"):
        await events.push("c", User("1", "a", "a"), headers={"v": 2})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="callable"):
        events.pull("c", callback="nope")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="topic_prefix"):
        BaseEvent(model=User, topic_prefix="user.")
    with pytest.raises(ConfigurationError, match="unknown event backend"):
        BaseEvent(model=User, event_type="nats")
    with pytest.raises(ConfigurationError, match="either adapter"):
        BaseEvent(model=User, event_type="memory", adapter=InMemoryAdapter())


async def test_settings_choose_the_backend() -> None:
    settings.event_type = "nats"
    with pytest.raises(ConfigurationError, match="nats"):
        BaseEvent(model=User)
    settings.event_type = "memory"
    assert isinstance(BaseEvent(model=User).event_adapter, InMemoryAdapter)


async def test_lazy_connect_and_publish_after_disconnect() -> None:
    events = BaseEvent(model=User)
    adapter = events.event_adapter
    assert isinstance(adapter, InMemoryAdapter) and not adapter.is_connected
    stream = events.pull("created")  # building the iterator does not connect
    assert isinstance(stream, EventStream) and not adapter.is_connected
    await events.push("created", User("1", "a", "a"))
    assert adapter.is_connected
    await events.disconnect()
    with pytest.raises(BusClosedError, match="connect"):
        await events.push("created", User("2", "b", "b"))
    with pytest.raises(BusClosedError):
        await anext(events.pull("created"))
    with pytest.raises(BusClosedError):
        await events.pull("created", callback=print)
    with pytest.raises(BusClosedError):
        await events.list_topics()
    await events.connect()
    await events.push("created", User("2", "b", "b"))


async def test_async_with_drains_then_disconnects() -> None:
    seen: list[str] = []
    tasks: set[object] = set()

    async def handler(user: User) -> None:
        await trio.lowlevel.checkpoint()
        tasks.add(trio.lowlevel.current_task())
        seen.append(user.id)

    async with BaseEvent(model=User) as events:
        await events.pull("created", callback=handler)
        for n in range(3):
            await events.push("created", User(str(n), "x", "x"))
    assert seen == ["0", "1", "2"]
    assert trio.lowlevel.current_task() not in tasks  # ran in the bus's actor
    with pytest.raises(BusClosedError):
        await events.push("created", User("4", "x", "x"))


async def test_async_with_body_error_cancels_and_disconnects() -> None:
    with pytest.RaisesGroup(ValueError):
        async with BaseEvent(model=User) as events:
            await events.pull("created", callback=print)
            raise ValueError("body")
    assert not events.event_adapter.is_connected  # type: ignore[attr-defined]


async def test_async_with_twice_is_refused() -> None:
    events = BaseEvent(model=User)
    async with events:
        with pytest.raises(ConfigurationError, match="already open"):
            await events.__aenter__()


async def test_pull_with_group_shares_and_commits() -> None:
    events = BaseEvent(model=User)
    for n in range(3):
        await events.push("created", User(str(n), "x", "x"))
    stream = events.pull("created", group="g")
    async with stream:
        first = await anext(stream)
        stream.commit()
    assert first.id == "0"
    rest = [u.id async for u in events.pull("created", group="g")]
    assert rest == ["1", "2"]


async def test_stream_ends_at_the_end_unless_follow() -> None:
    events = BaseEvent(model=User)
    await events.push("created", User("first", "x", "x"))
    assert [u.id async for u in events.pull("created")] == ["first"]
    got: list[str] = []

    async def reader() -> None:
        async for user in events.pull("created", follow=True):
            got.append(user.id)
            if user.id == "last":
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await events.push("created", User("last", "x", "x"))
    assert got == ["first", "last"]
