"""The seed facade (``bus.events``) on the real brokers: each backend by its seed name.

``BaseEvent(event_type="kafka", bootstrap_servers=...)`` & co. go through the factory,
so the ``trio_bus.backends`` entry points of the installed package are used (reinstall
with ``make install`` after changing them). Each test uses its own topic prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bus import BackendUnavailableError
from bus.events import BaseEvent, EventFactory

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(60)]

BACKENDS = ["kafka", "rabbitmq", "kinesis", "pubsub"]


class User(msgspec.Struct):
    id: str
    name: str
    email: str


def options(brokers: Any, backend: str, tmp_path: Path) -> dict[str, Any]:
    """Per-call options pointing each backend at the test broker (seed names)."""
    if backend == "kafka":
        return {"bootstrap_servers": brokers.env("KAFKA_SERVER")}
    if backend == "rabbitmq":
        return {"connection_url": brokers.env("RABBITMQ_URL")}
    if backend == "kinesis":
        return {
            "region_name": brokers.env("AWS_REGION"),
            "endpoint_url": brokers.env("KINESIS_ENDPOINT_URL"),
            "aws_access_key_id": brokers.env("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": brokers.env("AWS_SECRET_ACCESS_KEY"),
            # group positions that outlive one consumer (the default store is per bridge)
            "checkpoints": str(tmp_path / "checkpoints.sqlite"),
        }
    return {
        "project_id": brokers.env("GCP_PROJECT_ID"),
        "emulator_host": brokers.env("PUBSUB_EMULATOR_HOST"),
    }


@pytest.fixture(params=BACKENDS)
async def events(
    request: pytest.FixtureRequest, brokers: Any, unique: str, tmp_path: Path
) -> AsyncIterator[BaseEvent[User]]:
    backend: str = request.param
    brokers.require(backend)
    prefix = unique.replace("trio-bus-smoke-", "facade")
    ev = BaseEvent(
        model=User, event_type=backend, topic_prefix=prefix, **options(brokers, backend, tmp_path)
    )
    try:
        yield ev
    finally:
        with trio.move_on_after(20) as scope:
            scope.shield = True
            await ev.disconnect()


def test_every_broker_backend_is_found_by_its_seed_name() -> None:
    assert set(BACKENDS) <= set(EventFactory.available())
    for backend in BACKENDS:
        assert EventFactory.adapter_class(backend).__name__.lower().startswith(backend[:5])


async def test_push_then_pull_as_in_the_seed(events: BaseEvent[User]) -> None:
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


async def test_callback_gets_what_is_pushed(events: BaseEvent[User]) -> None:
    got: list[User] = []
    seen = trio.Event()

    async def handle_user_event(user_data: User) -> None:
        got.append(user_data)
        seen.set()

    await events.pull("profile_updated", callback=handle_user_event, from_beginning=True)
    await events.push("profile_updated", User("2", "Ann", "ann@x"), key="2")
    with trio.fail_after(30):
        await seen.wait()
    assert got[0] == User("2", "Ann", "ann@x")


async def test_group_resumes_after_what_it_handled(events: BaseEvent[User]) -> None:
    # The default group: its queue/subscription exists from the first push on, so
    # brokers that keep messages per group (RabbitMQ, Pub/Sub) kept these for it.
    for n in range(3):
        await events.push("ordered", User(str(n), "n", "e"), key="same")
    with trio.fail_after(30):
        async with events.pull("ordered") as first:
            assert (await anext(first)).id == "0"
            first.commit()  # handled: the broker may be told
            assert (await anext(first)).id == "1"  # in hand, not committed, then closed
        async with events.pull("ordered") as second:
            assert [(await anext(second)).id, (await anext(second)).id] == ["1", "2"]


async def test_unreachable_broker_is_one_clear_error() -> None:
    events = BaseEvent(
        model=User, event_type="rabbitmq", topic_prefix="nowhere",
        connection_url="amqp://guest:guest@127.0.0.1:1/", connect_timeout=3.0,
    )
    with pytest.raises(BackendUnavailableError):
        await events.push("created", User("1", "a", "a"))
    await events.disconnect()
