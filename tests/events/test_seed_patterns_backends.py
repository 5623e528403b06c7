"""The seed's patterns (``docs/examples/``) on all six backends of the facade.

Each example's ``main(event_type, prefix)`` runs as written against memory, Redis
(``redis``, the adapter over ``RedisBridge``), Kafka, RabbitMQ, Kinesis and Pub/Sub (the
servers of ``make brokers-up``), with a topic prefix of its own per run (brokers keep
topics between runs), and its result is checked as ``test_examples.py`` checks it on
memory. The examples wait for what a broker
delivers after ``push`` returned (a projection, a saga's later steps, a callback) and
disconnect their adapters at the end, so nothing of one example reaches the next. The
seed's "Integration Testing" flow (push, pull, ``break``, disconnect) is the last test.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
import trio

from bus.events import BaseEvent, EventFactory

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
# backend -> the brokers harness service it needs (None: none)
BACKENDS = {
    "memory": None,
    "redis": "redis",
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "kinesis": "kinesis",
    "pubsub": "pubsub",
}
ENVIRONMENT = (
    "KAFKA_SERVER", "RABBITMQ_URL", "KINESIS_ENDPOINT_URL", "AWS_REGION",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PUBSUB_EMULATOR_HOST",
    "GCP_PROJECT_ID", "REDIS_URL",
)
BOUND = 120
"""Seconds an example may take before it counts as hung (Kafka group joins are slow)."""


@pytest.fixture(params=[
    pytest.param(name, marks=[] if service is None else [pytest.mark.brokers])
    for name, service in BACKENDS.items()
])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A backend name; its broker's settings come from the environment, as the seed's
    "Configuración automática" has them."""
    name: str = request.param
    service = BACKENDS[name]
    if service is not None:
        brokers = request.getfixturevalue("brokers")
        brokers.require(service)
        for variable in ENVIRONMENT:
            monkeypatch.setenv(variable, brokers.env(variable))
    return name


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:10]}_"


def load(name: str) -> ModuleType:
    module_name = f"trio_bus_seed_patterns_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


async def run(name: str, backend: str, prefix: str) -> Any:
    try:
        with trio.fail_after(BOUND):
            return await load(name).main(backend, prefix)
    finally:
        await delete_topics(backend, prefix)


async def delete_topics(backend: str, prefix: str) -> None:
    """Delete the run's topics: brokers keep them, and kinesis-mock refuses new streams
    past 50 shards in all (its SHARD_LIMIT), which leftovers reach within two runs."""
    if backend == "memory":
        return  # the shared bus ends with the trio run
    adapter = EventFactory.create_adapter(backend)
    try:
        with trio.move_on_after(60):
            for topic in await adapter.list_topics():
                if topic.startswith(prefix):
                    await adapter.delete_topic(topic)
    finally:
        await adapter.disconnect()


pytestmark = pytest.mark.timeout(BOUND + 60)


async def test_event_sourcing_rebuilds_the_aggregate(backend: str, prefix: str) -> None:
    user = await run("event_sourcing", backend, prefix)
    assert (user.id, user.name, user.email) == ("u1", "Alice", "alice@newest.example")


async def test_cqrs_projection_catches_up_and_follows(backend: str, prefix: str) -> None:
    read_db = await run("cqrs_projection", backend, prefix)
    assert sorted(read_db) == ["1", "2"]
    assert read_db["1"]["email"] == "ann@example.com"
    assert read_db["2"]["name"] == "Ben"


async def test_saga_confirms_and_compensates(backend: str, prefix: str) -> None:
    outcome, stock = await run("saga", backend, prefix)
    assert outcome == {"o1": "confirmed", "o2": "compensated (limit exceeded)"}
    assert stock == {"book": 8}  # o2's five books were released


async def test_outbox_retries_until_published(backend: str, prefix: str) -> None:
    pending, published = await run("outbox", backend, prefix)
    assert pending == [1, 0]
    assert sorted(published) == ["1", "2"]


async def test_dead_letter_queue(backend: str, prefix: str) -> None:
    processed, dead = await run("dead_letter", backend, prefix)
    assert processed == ["p1", "p3"]
    assert len(dead) == 1
    assert dead[0]["original_topic"] == f"{prefix}payment.requested"
    assert dead[0]["original_data"] == {"id": "p2", "amount": -5.0}
    assert dead[0]["retry_count"] == 3
    assert "invalid amount" in dead[0]["error"]


async def test_circuit_breaker(backend: str, prefix: str) -> None:
    # real time (two 1 s reset timeouts): trio's MockClock must not run beside real I/O
    log = await run("circuit_breaker", backend, prefix)
    assert log == [
        "1:ok", "2:error", "3:error", "4:fast-fail", "5:fast-fail", "6:error",
        "7:fast-fail", "8:ok", "9:ok", "calls-while-open:3",
    ]


async def test_metrics_wrapper(backend: str, prefix: str) -> None:
    metrics = await run("metrics", backend, prefix)
    assert metrics["published_total"] == 3
    assert metrics["consumed_total"] == 6  # three by callback, three by iterator
    assert metrics["errors_total"] == 1


async def test_idempotency_keys(backend: str, prefix: str) -> None:
    balances, duplicates = await run("idempotency", backend, prefix)
    assert balances == {"acc-1": 70}
    assert duplicates == 4  # one producer retry + three sent again


async def test_versioned_events(backend: str, prefix: str) -> None:
    received = await run("versioned_events", backend, prefix)
    assert [(v, u.id, u.version, u.phone) for v, u in received] == [
        ("1.0", "1", "1.0", None),
        ("2.0", "2", "2.0", "+34 600"),
    ]


class User(msgspec.Struct):
    id: str
    name: str
    email: str


async def test_integration_testing_flow(backend: str, prefix: str) -> None:
    """The seed's "Integration Testing": push, pull until the event is seen, break,
    disconnect in ``finally``."""
    events = BaseEvent(model=User, event_type=backend, topic_prefix=f"{prefix}user")
    user = User(id="integration_test", name="Integration User",
                email="integration@example.com")
    try:
        with trio.fail_after(BOUND):
            await events.push("integration_test", user, key=user.id)
            consumed = False
            async for event_data in events.pull("integration_test"):
                assert event_data.id == user.id
                consumed = True
                break
        assert consumed, "the published event was not consumed"
    finally:
        await events.disconnect()
        await delete_topics(backend, prefix)
