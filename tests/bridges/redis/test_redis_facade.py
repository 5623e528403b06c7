"""The seed facade's ``redis`` backend (:class:`RedisAdapter`, thin over RedisBridge) on
the real Redis: found by its name and ``REDIS_URL``, push and pull as in the seed, a
callback, a group resuming after what it handled (the message in hand at a ``break``
read again at once), the backlog a ``pull`` that ends counts, options refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from bridges.redis import RedisAdapter, RedisBridge
from bus import ConfigurationError
from bus.events import BaseEvent, EventFactory, settings

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(60)]


class User(msgspec.Struct):
    id: str
    name: str
    email: str


@pytest.fixture
def url(brokers: Any) -> str:
    brokers.require("redis")
    return str(brokers.env("REDIS_URL"))


@pytest.fixture
async def events(url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BaseEvent[User]]:
    """``EVENT_TYPE=redis`` and ``REDIS_URL`` from the environment, as a user sets them."""
    monkeypatch.setenv("EVENT_TYPE", "redis")
    monkeypatch.setenv("REDIS_URL", url)
    prefix = f"rf{uuid.uuid4().hex[:10]}"
    ev = BaseEvent(model=User, topic_prefix=prefix)
    try:
        yield ev
    finally:
        with trio.move_on_after(20) as scope:
            scope.shield = True
            await ev.disconnect()
        for name in settings.field_names():
            delattr(settings, name)
        import redis

        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def test_the_redis_backend_is_the_plugins_adapter() -> None:
    assert EventFactory.adapter_class("redis") is RedisAdapter
    with pytest.raises(ConfigurationError, match=r"a Redis stream takes none"):
        RedisAdapter("redis://127.0.0.1:1/0").topic_options({"partitions": 3})
    with pytest.raises(ConfigurationError, match=r"sets consumer itself"):
        RedisAdapter("redis://127.0.0.1:1/0", consumer="me")


async def test_push_then_pull_as_in_the_seed(events: BaseEvent[User]) -> None:
    assert isinstance(events.event_adapter, RedisAdapter)
    user = User(id="1", name="John", email="john@example.com")
    await events.push("created", user, key=user.id, headers={"source": "test"})
    stream = events.pull("created")
    with trio.fail_after(30):
        async for user_data in stream:
            assert user_data == user
            assert stream.message is not None
            assert stream.message.key == "1"
            assert stream.message.headers["source"] == "test"
            break
    assert events.topic("created") in await events.list_topics()


async def test_a_callback_gets_what_is_pushed_after_it_returned(
    events: BaseEvent[User],
) -> None:
    got: list[User] = []
    seen = trio.Event()

    async def handle(user: User) -> None:
        got.append(user)
        seen.set()

    await events.pull("profile_updated", callback=handle)  # from now on
    await events.push("profile_updated", User("2", "Ann", "ann@x"), key="2")
    with trio.fail_after(30):
        await seen.wait()
    assert got == [User("2", "Ann", "ann@x")]


async def test_a_group_resumes_after_what_it_handled(events: BaseEvent[User]) -> None:
    for n in range(3):
        await events.push("ordered", User(str(n), "n", "e"), key="same")
    with trio.fail_after(30):
        async with events.pull("ordered") as first:
            assert (await anext(first)).id == "0"
            first.commit()
            assert (await anext(first)).id == "1"  # in hand, not committed, then closed
        # the same consumer name: the entry left pending comes back first, at once (not
        # after claim_idle, 30 s)
        async with events.pull("ordered") as second:
            assert [(await anext(second)).id, (await anext(second)).id] == ["1", "2"]


async def test_the_backlog_is_what_the_group_has_to_read(events: BaseEvent[User]) -> None:
    adapter = events.event_adapter
    assert isinstance(adapter, RedisAdapter)
    topic = events.topic("counted")
    for n in range(4):
        await events.push("counted", User(str(n), "n", "e"))
    _, bridge = await adapter._producer()
    assert isinstance(bridge, RedisBridge)
    assert await adapter.backlog(bridge, topic, "fresh", True) == 4
    assert await adapter.backlog(bridge, topic, "fresh", False) == 0
    with trio.fail_after(30):
        async with events.pull("counted", group="g") as reader:
            assert (await anext(reader)).id == "0"
            reader.commit()
            assert (await anext(reader)).id == "1"  # left pending with our consumer
    # 2 never delivered + 1 pending with this adapter's consumer (the one in hand)
    assert await adapter.backlog(bridge, topic, "g", True) == 3
