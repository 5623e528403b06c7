"""The seed README's in-memory snippets and its "Testing" section, rewritten for trio.

Changes from the seed: pytest-trio instead of pytest-asyncio, msgspec models instead of
pydantic (``msgspec.to_builtins(user)`` instead of ``user.model_dump()``), and loops
over ``pull`` that ``break`` because the memory backend follows live messages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest

from bus.events import (
    BaseEvent,
    EventAdapter,
    EventFactory,
    EventMessage,
    InMemoryAdapter,
    settings,
)


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class Product(msgspec.Struct):
    id: str
    stock: int


class UserEvent(BaseEvent[User]):
    def __init__(self, event_type: str | None = None, **adapter_kwargs: Any) -> None:
        super().__init__(model=User, event_type=event_type, topic_prefix="user", **adapter_kwargs)


class ProductEvent(BaseEvent[Product]):
    def __init__(self, event_type: str = "memory") -> None:
        super().__init__(model=Product, event_type=event_type, topic_prefix="product")


# -- "In-Memory (Testing y Desarrollo)" and "Operaciones Básicas" ---------------------


async def test_in_memory_usage() -> None:
    user_events = UserEvent(event_type="memory")
    test_data = User(id="t", name="Test", email="t@example.com")
    await user_events.push("test_event", test_data)
    events = []
    async for event_data in user_events.pull("test_event"):
        events.append(event_data)
        break  # the memory pull follows live messages: stop when done
    assert events == [test_data]


async def test_basic_operations() -> None:
    user_events = UserEvent()  # backend from settings: memory by default
    user = User(id="123", name="Alice", email="alice@example.com")
    await user_events.push("created", user, key=user.id)

    names = []
    async for user_data in user_events.pull("created"):
        names.append(user_data.name)
        break
    assert names == ["Alice"]

    processed: list[str] = []

    async def process_user(user_data: User) -> None:
        processed.append(user_data.name)

    await user_events.pull("created", callback=process_user)
    await user_events.push("created", User(id="124", name="Bob", email="bob@example.com"))
    assert processed == ["Bob"]


async def test_topic_management() -> None:
    user_events = UserEvent(event_type="memory")
    await user_events.create_topic("user_analytics")
    await user_events.create_topic("old_topic")
    topics = await user_events.list_topics()
    assert topics == ["user.old_topic", "user.user_analytics"]
    await user_events.delete_topic("old_topic")
    assert await user_events.list_topics() == ["user.user_analytics"]
    await user_events.disconnect()


async def test_kinesis_style_create_then_push_runs_on_memory() -> None:
    user_events = UserEvent(event_type="memory")
    await user_events.create_topic("user_activity", shard_count=2)
    await user_events.push("user_activity", User("1", "a", "a@x"), key="1")
    assert await user_events.list_topics() == ["user.user_activity"]


async def test_advanced_custom_message_through_the_adapter() -> None:
    product_events = ProductEvent("memory")
    product = Product(id="p1", stock=3)
    message = EventMessage(
        topic="product.inventory_updated",
        data=msgspec.to_builtins(product),
        key=product.id,
        headers={"source": "inventory_service", "version": "1.0"},
        timestamp=int(time.time() * 1000),
    )
    await product_events.event_adapter.publish(message)
    stream = product_events.pull("inventory_updated")
    async for received in stream:
        assert received == product
        assert stream.message == message
        break


async def test_programmatic_settings() -> None:
    settings.event_type = "memory"
    settings.rabbitmq_url = "amqp://prod-rabbitmq:5672"
    settings.aws_region = "eu-west-1"
    assert settings.adapter_kwargs("kinesis") == {"region_name": "eu-west-1"}
    assert settings.adapter_kwargs("rabbitmq") == {"connection_url": "amqp://prod-rabbitmq:5672"}
    assert type(UserEvent().event_adapter).__name__ == "InMemoryAdapter"

    class Probe(InMemoryAdapter):  # records what the factory built it with
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            self.kwargs = kwargs

    EventFactory.register_adapter("probe", Probe)
    settings.event_type = "probe"  # the backend comes from the assigned settings
    adapter = UserEvent().event_adapter
    assert isinstance(adapter, Probe) and adapter.kwargs == {}
    assert not isinstance(UserEvent(event_type="memory").event_adapter, Probe)


# -- "Testing": the mock adapter, registered through the factory -----------------------


class MockEventAdapter(EventAdapter):
    """Adaptador mock para testing"""

    def __init__(self) -> None:
        self.published_messages: list[EventMessage] = []
        self.subscriptions: dict[str, list[Callable[[EventMessage], Awaitable[None]]]] = {}
        self.topics: set[str] = set()

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def publish(self, message: EventMessage) -> None:
        self.published_messages.append(message)
        self.topics.add(message.topic)
        for callback in self.subscriptions.get(message.topic, []):
            await callback(message)

    async def subscribe(
        self, topic: str, callback: Callable[[EventMessage], Awaitable[None]], **kwargs: Any
    ) -> None:
        self.subscriptions.setdefault(topic, []).append(callback)

    async def consume(self, topic: str, **kwargs: Any) -> AsyncIterator[EventMessage]:
        for message in self.published_messages:
            if message.topic == topic:
                yield message

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        self.topics.add(topic)

    async def delete_topic(self, topic: str) -> None:
        self.topics.discard(topic)

    async def list_topics(self) -> list[str]:
        return sorted(self.topics)


@pytest.fixture
def mock_events() -> Iterator[UserEvent]:
    """Fixture para eventos mock"""
    EventFactory.register_adapter("mock", MockEventAdapter)
    events = UserEvent(event_type="mock")
    yield events
    del EventFactory._adapters["mock"]


async def test_user_event_publishing(mock_events: UserEvent) -> None:
    user = User(id="1", name="Test User", email="test@example.com")
    await mock_events.push("created", user, key=user.id)

    adapter = mock_events.event_adapter
    assert isinstance(adapter, MockEventAdapter)
    assert len(adapter.published_messages) == 1
    published_message = adapter.published_messages[0]
    assert published_message.topic == "user.created"
    assert published_message.key == user.id
    assert published_message.data == msgspec.to_builtins(user)


async def test_user_event_consumption(mock_events: UserEvent) -> None:
    user = User(id="2", name="Consumer Test", email="consumer@example.com")
    await mock_events.push("updated", user, key=user.id)

    consumed_events = []
    async for event_data in mock_events.pull("updated"):
        consumed_events.append(event_data)
        break

    assert len(consumed_events) == 1
    assert consumed_events[0].id == user.id
    assert consumed_events[0].name == user.name


async def test_mock_callbacks_and_finite_consume(mock_events: UserEvent) -> None:
    seen: list[str] = []
    await mock_events.pull("created", callback=lambda u: seen.append(u.id))
    for n in range(3):
        await mock_events.push("created", User(str(n), "n", "e"))
    assert seen == ["0", "1", "2"]
    # The mock's consume ends, so a loop without break terminates, as in the seed.
    assert [u.id async for u in mock_events.pull("created")] == ["0", "1", "2"]
    await mock_events.disconnect()


def test_mock_registration_is_removed() -> None:
    assert "mock" not in EventFactory._adapters
