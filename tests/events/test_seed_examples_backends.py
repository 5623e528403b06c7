"""The seed README's usage examples, as written, on every backend of the facade.

"Uso Básico" and "Operaciones de Eventos": a ``UserEvent`` made the way the seed makes
it for each backend (explicit options for Kafka and RabbitMQ, settings/environment for
the others), then push, pull with ``async for``, pull with a callback, the custom
``EventMessage`` of "Operaciones Avanzadas", create/list/delete topics and disconnect.
The Redis Streams adapter is registered as the seed's "Registrar Adaptador" does.

Changes from the seed, all for running it as a test: trio and msgspec models; each run
uses its own topic prefix (real brokers keep topics between runs); the calls run inside
``async with user_events:`` so that callback subscriptions on real brokers get a task to
deliver from; a callback's messages are waited for with a bound.

"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio

from bridges.redis import register
from bus import BusClosedError
from bus.events import BaseEvent, EventFactory, EventMessage

# backend -> the brokers harness service it needs (None: none)
BACKENDS = {
    "memory": None,
    "redis-streams": "redis",
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "kinesis": "kinesis",
    "pubsub": "pubsub",
}
# what `make -s brokers-env` exports, read by the facade's settings
ENVIRONMENT = (
    "KAFKA_SERVER", "RABBITMQ_URL", "KINESIS_ENDPOINT_URL", "AWS_REGION",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PUBSUB_EMULATOR_HOST",
    "GCP_PROJECT_ID", "REDIS_URL",
)


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class Product(msgspec.Struct):
    id: str
    stock: int


class UserEvent(BaseEvent[User]):
    def __init__(self, event_type: str | None = None, *, topic_prefix: str = "user",
                 **adapter_kwargs: Any) -> None:
        super().__init__(model=User, event_type=event_type, topic_prefix=topic_prefix,
                         **adapter_kwargs)


class ProductEvent(BaseEvent[Product]):
    def __init__(self, event_type: str = "kafka", *, topic_prefix: str = "product",
                 **adapter_kwargs: Any) -> None:
        super().__init__(model=Product, event_type=event_type, topic_prefix=topic_prefix,
                         **adapter_kwargs)


@pytest.fixture(params=[
    pytest.param(name, marks=[] if service is None else [pytest.mark.brokers])
    for name, service in BACKENDS.items()
])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    service = BACKENDS[name]
    if service is not None:
        brokers = request.getfixturevalue("brokers")
        brokers.require(service)
        for variable in ENVIRONMENT:
            monkeypatch.setenv(variable, brokers.env(variable))
    # the registry is process-wide: give it back as it was after the test
    monkeypatch.setattr(EventFactory, "_adapters", dict(EventFactory._adapters))
    register()  # "Registrar Adaptador": EventFactory.register_adapter("redis-streams", ...)
    return name


def seed_options(backend: str, brokers: Any | None) -> dict[str, Any]:
    """The options the seed's "Uso Básico" passes for *backend* (the others come from
    settings / the environment, as its "Configuración automática" says)."""
    if backend == "kafka":
        return {"bootstrap_servers": brokers.env("KAFKA_SERVER")}
    if backend == "rabbitmq":
        return {"connection_url": brokers.env("RABBITMQ_URL")}
    if backend == "redis-streams":
        return {"redis_url": brokers.env("REDIS_URL")}
    return {}


@pytest.fixture
def prefix() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


async def _until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - a broker delivers: poll the result
            await trio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_basic_usage_and_event_operations(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    brokers = request.getfixturevalue("brokers") if BACKENDS[backend] else None
    user_events = UserEvent(event_type=backend, topic_prefix=prefix,
                            **seed_options(backend, brokers))
    async with user_events:
        # "Operaciones Básicas"
        await user_events.create_topic("created")
        user = User(id="123", name="Alice", email="alice@example.com")
        await user_events.push("created", user, key=user.id)

        names = []
        async for user_data in user_events.pull("created"):
            names.append(user_data.name)
            break  # "Procesar solo el primero y salir"
        assert names == ["Alice"]

        processed: list[str] = []

        async def process_user(user_data: User) -> None:
            processed.append(user_data.name)

        await user_events.pull("created", callback=process_user)
        await user_events.push("created", User(id="124", name="Bob", email="bob@example.com"))
        await _until(lambda: "Bob" in processed)
        assert set(processed) <= {"Alice", "Bob"}

        # "Gestión de Topics/Streams"
        await user_events.create_topic("user_analytics")
        await user_events.create_topic("old_topic")
        topics = await user_events.list_topics()
        assert {f"{prefix}.created", f"{prefix}.user_analytics", f"{prefix}.old_topic"} <= set(
            topics
        )
        await user_events.delete_topic("old_topic")
        assert f"{prefix}.old_topic" not in await user_events.list_topics()
        for name in ("created", "user_analytics"):
            await user_events.delete_topic(name)
    await user_events.disconnect()  # "Desconectar limpiamente": idempotent
    with pytest.raises(BusClosedError):
        await user_events.push("created", user)


@pytest.mark.timeout(90)
async def test_in_memory_style_pull_reads_what_is_stored(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """"In-Memory (Testing y Desarrollo)": ``async for`` over ``pull`` without ``break``
    ends once the stored messages are read."""
    brokers = request.getfixturevalue("brokers") if BACKENDS[backend] else None
    user_events = UserEvent(event_type=backend, topic_prefix=prefix,
                            **seed_options(backend, brokers))
    await user_events.create_topic("test_event")
    test_data = User(id="t", name="Test", email="t@example.com")
    await user_events.push("test_event", test_data)
    events = []
    # ends on every backend (docs/facade.md, "A pull that ends"); the bound only turns a
    # hang into a failure: a broker's consumer may take seconds to join its group
    with trio.move_on_after(45) as bound:
        async for event_data in user_events.pull("test_event"):
            events.append(event_data)
    assert not bound.cancelled_caught, "the pull did not end after the stored messages"
    assert events == [test_data]
    await user_events.delete_topic("test_event")
    await user_events.disconnect()


@pytest.mark.timeout(60)
async def test_advanced_custom_message_through_the_adapter(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """"Operaciones Avanzadas": an ``EventMessage`` published with the adapter itself."""
    brokers = request.getfixturevalue("brokers") if BACKENDS[backend] else None
    product_events = ProductEvent(backend, topic_prefix=f"product_{prefix}",
                                  **seed_options(backend, brokers))
    await product_events.create_topic("inventory_updated")
    product = Product(id="p1", stock=3)
    message = EventMessage(
        topic=f"product_{prefix}.inventory_updated",
        data=msgspec.to_builtins(product),
        key=product.id,
        headers={"source": "inventory_service", "version": "1.0"},
        timestamp=int(time.time() * 1000),
    )
    await product_events.event_adapter.publish(message)
    stream = product_events.pull("inventory_updated")
    async for received in stream:
        assert received == product
        assert stream.message is not None
        assert stream.message.key == "p1"
        assert stream.message.headers.items() >= message.headers.items()
        break
    await stream.aclose()
    await product_events.delete_topic("inventory_updated")
    await product_events.disconnect()


def _own_snippet_options(backend: str, brokers: Any) -> dict[str, Any]:
    """Each backend's own "Uso Básico" snippet, with the seed's option names (the values
    point at the servers of `make brokers-up`; emulators take any credentials)."""
    if backend == "kafka":  # "Configuración personalizada" + the producer options
        return {"bootstrap_servers": brokers.env("KAFKA_SERVER"), "acks": "all",
                "retries": 3, "batch_size": 16384, "compression_type": "gzip"}
    if backend == "rabbitmq":  # "Con autenticación"
        return {"connection_url": brokers.env("RABBITMQ_URL"), "publisher_confirms": True,
                "delivery_mode": 2}
    if backend == "kinesis":  # "Configuración con credenciales explícitas"
        return {"region_name": "eu-west-1", "aws_access_key_id": "YOUR_ACCESS_KEY",
                "aws_secret_access_key": "YOUR_SECRET_KEY"}
    if backend == "pubsub":  # "Solo project ID personalizado"
        return {"project_id": f"seed-{uuid.uuid4().hex[:8]}"}
    raise AssertionError(backend)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "backend", [pytest.param(b, marks=pytest.mark.brokers)
                for b in ("kafka", "rabbitmq", "kinesis", "pubsub")],
    indirect=True,
)
async def test_each_brokers_own_snippet_with_the_seeds_options(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    brokers = request.getfixturevalue("brokers")
    user_events = UserEvent(event_type=backend, topic_prefix=prefix,
                            **_own_snippet_options(backend, brokers))
    user = User(id="1", name="John", email="john@example.com")
    got: list[User] = []

    async def handle_user_event(user_data: User) -> None:
        got.append(user_data)

    async with user_events:
        if backend == "kinesis":  # "Crear stream"
            await user_events.create_topic("user_activity", shard_count=2)
        else:
            await user_events.create_topic("user_activity")
        await user_events.pull("user_activity", callback=handle_user_event)
        await user_events.push("user_activity", user, key=user.id)
        await _until(lambda: got == [user])
        await user_events.delete_topic("user_activity")


@pytest.mark.timeout(90)
async def test_break_leaves_the_message_in_hand_to_the_group(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """One rule on every backend (docs/facade.md, "Leaving a pull early"): a message
    not handled is not acknowledged, so the one in hand at ``break`` comes again to a
    later ``pull(callback=...)`` of the same group. ``events`` is the group the first
    push prepares a queue/subscription for on RabbitMQ and Pub/Sub."""
    brokers = request.getfixturevalue("brokers") if BACKENDS[backend] else None
    user_events = UserEvent(event_type=backend, topic_prefix=prefix,
                            **seed_options(backend, brokers))
    ann = User(id="1", name="Ann", email="ann@example.com")
    ben = User(id="2", name="Ben", email="ben@example.com")
    cid = User(id="3", name="Cid", email="cid@example.com")
    async with user_events:
        await user_events.create_topic("signed_up")
        for user in (ann, ben, cid):
            await user_events.push("signed_up", user, key="k")  # one key: one order
        seen = []
        async for user in user_events.pull("signed_up", group="events"):
            seen.append(user)
            if user == ben:
                break  # Ann handled (Ben was asked for), Ben in hand, not handled
        assert seen == [ann, ben]

        handled: list[str] = []

        async def handle(user: User) -> None:
            handled.append(user.name)

        await user_events.pull("signed_up", callback=handle, group="events")
        await _until(lambda: "Cid" in handled, 60)
        assert handled[:2] == ["Ben", "Cid"]  # Ben first: nothing skipped, Ann not again
        await user_events.delete_topic("signed_up")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "backend", ["memory", *(pytest.param(b, marks=pytest.mark.brokers)
                            for b in ("redis-streams", "kafka", "rabbitmq", "kinesis",
                                      "pubsub"))],
    indirect=True,
)
async def test_break_on_a_groups_first_message_leaves_it_to_the_group(
    backend: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """The same rule when the group handled nothing yet: its start is the group's, so a
    later callback of the group (which alone would start at new messages) gets it."""
    brokers = request.getfixturevalue("brokers") if BACKENDS[backend] else None
    user_events = UserEvent(event_type=backend, topic_prefix=prefix,
                            **seed_options(backend, brokers))
    ann = User(id="1", name="Ann", email="ann@example.com")
    async with user_events:
        await user_events.create_topic("joined")
        await user_events.push("joined", ann, key="k")
        async for first in user_events.pull("joined", group="events"):
            assert first == ann
            break  # Ann in hand: the group handled nothing
        handled: list[str] = []

        async def handle(user: User) -> None:
            handled.append(user.name)

        await user_events.pull("joined", callback=handle, group="events")
        await user_events.push("joined", User(id="2", name="Ben", email="b@x"), key="k")
        await _until(lambda: "Ben" in handled, 60)
        assert handled == ["Ann", "Ben"]
        await user_events.delete_topic("joined")
