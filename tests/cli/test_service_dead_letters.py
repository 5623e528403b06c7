"""The dead-letter rule of `bus bridge`, on the real brokers: a dead letter reaches the
dead-letter destination whatever broker its message came from, the destination itself
included, and only then is its message acknowledged; one the destination refuses in
turn keeps its message unacknowledged at its broker (counted, exit 1).

Both reproductions of issue 15: ``docs/examples/bridge.toml`` as shipped (a 2 MB payment
from RabbitMQ that Kafka refuses, dead-lettered back to RabbitMQ), and a non-JSON Kafka
record with Kafka as the dead-letter broker; then the same with each of Kafka, RabbitMQ,
Kinesis and Pub/Sub as the source and dead-letter destination at once.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from bus.abc import H_DEAD_LETTER_ORIGIN, H_ERROR, H_ORIGINAL_TOPIC
from tests.cli import service_kit

pytestmark = pytest.mark.brokers

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "bridge.toml"
BIG = 2 * 1024 * 1024  # over Kafka's 1 MiB limit (the broker's and aiokafka's)
GOOD = 5


def _big(n: int) -> bytes:
    return b'{"n": %d, "pad": "%s"}' % (n, b"x" * BIG)


def _shipped_example(setup: Any) -> str:
    """docs/examples/bridge.toml with only its endpoints and names changed for this run
    (each change checked, so the test fails loudly if the example changes)."""
    text = EXAMPLE.read_text()
    p = setup.p
    for old, new, times in [
        ('"127.0.0.1:9092"', f'"{setup.kafka}"', 1),
        ('"amqp://guest@127.0.0.1:5672/"', f'"{setup.rabbit_url_no_password}"', 1),
        ("metrics_port = 9464", f"metrics_port = {setup.port}", 1),
        ('"orders-mirror', f'"{p}-mirror', 3),  # name, group_id, group_instance_id
        ('exchange = "trio-bus"', f'exchange = "{setup.exchange}"', 1),
        ('"mirror.dead_letter"', f'"{setup.dead_topic}"', 2),  # topic and queue
        ('pattern = "orders.*"', f'pattern = "{p}.orders.*"', 1),
        ('pattern = "payments.#"', f'pattern = "{p}.payments.#"', 1),
    ]:
        assert text.count(old) == times, f"{EXAMPLE} changed: {old!r} x{text.count(old)}"
        text = text.replace(old, new)
    return text


@pytest.mark.timeout(120)
async def test_the_shipped_example_dead_letters_a_refused_payment_to_rabbitmq(
    brokers: Any, tmp_path: Path
) -> None:
    """Reproduction 1: the example config, a 2 MB payment published to RabbitMQ. Kafka
    refuses it; its dead letter goes to RabbitMQ's dead-letter queue (it came from
    RabbitMQ), and only then is it acknowledged. A non-JSON order from Kafka too."""
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = service_kit.Setup(brokers, tmp_path)
    p = setup.p
    setup.write(_shipped_example(setup))
    orders, payments = f"{p}.orders.created", f"{p}.payments.card"
    await setup.prepare("kafka", [orders, payments])
    await setup.bind(f"{p}.orders.#", setup.check_queue)
    proc = await setup.start(RABBITMQ_PASSWORD=setup.password)
    try:
        await setup.until_healthy(proc)
        await setup.write_raw("rabbitmq", payments, [(_big(1), "big"), (b'{"m": 2}', "small")])
        await setup.write_raw("kafka", orders, [(b"\xff not json", "poison"), (b'{"n": 3}', "k3")])
        await setup.until("both sources acknowledged", lambda: setup.metric_at({
            ("trio_bus_bridge_acked_total", "rabbitmq"): (2, 2),
            ("trio_bus_bridge_acked_total", "kafka"): (2, 2),
        }), 60)
        samples = await setup.metrics()
        assert samples[("trio_bus_bridge_dead_lettered_total", "kafka:export")] == 1
        assert samples[("trio_bus_dead_letters_undeliverable_total", "")] == 0
        assert await service_kit.stop(proc) == 0, setup.log_tail()
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()
    letters = {e.key: e for e in await setup.read(
        "rabbitmq", setup.dead_topic, 2, queue=setup.dead_topic
    )}
    assert sorted(letters) == ["big", "poison"]
    big = letters["big"]
    assert big.headers[H_DEAD_LETTER_ORIGIN] == "rabbitmq"
    assert big.headers[H_ORIGINAL_TOPIC] == payments
    assert "MessageSizeTooLarge" in big.headers[H_ERROR], big.headers[H_ERROR]
    assert len(json.loads(big.payload)) > BIG  # the payment, base64 in a JSON string
    assert letters["poison"].headers[H_DEAD_LETTER_ORIGIN] == "kafka"
    assert "cannot decode" in letters["poison"].headers[H_ERROR]
    [small] = await setup.read("kafka", payments, 1)
    assert small.key == "small"
    [good] = await setup.read("rabbitmq", orders, 1, queue=setup.check_queue)
    assert service_kit.numbered(good) == 3
    async with _Rabbit(setup) as rabbit:  # nothing left in the service's queue
        assert await rabbit.ready(f"{setup.exchange}.rabbitmq") == 0


# source -> (destination, what the destination refuses: (topic suffix, data, key))
DIRECTIONS = {
    "kafka": ("rabbitmq", ("orders.lost", b'{"n": 98}', "refused")),  # no queue bound
    "rabbitmq": ("kafka", ("orders.created", _big(99), "refused")),  # over Kafka's limit
    "kinesis": ("rabbitmq", ("orders.lost", b'{"n": 98}', "refused")),
    "pubsub": ("rabbitmq", ("orders.lost", b'{"n": 98}', "refused")),
}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("source", list(DIRECTIONS))
async def test_dead_letters_go_back_to_the_broker_they_came_from(
    brokers: Any, tmp_path: Path, source: str
) -> None:
    """*source* orders.* (JSON) -> its destination, with *source* as the dead-letter
    broker (reproduction 2 for Kafka): a non-JSON record and a record the destination
    refuses are both dead-lettered to *source*, and every record is acknowledged."""
    destination, (suffix, refused, refused_key) = DIRECTIONS[source]
    brokers.require(source)
    brokers.require(destination)
    setup = service_kit.Setup(brokers, tmp_path)
    p = setup.p
    orders, other = f"{p}.orders.created", f"{p}.{suffix}"
    setup.write(
        setup.service_table(source), setup.broker_table(source),
        setup.broker_table(destination), f"""
[[topics]]
pattern = "{p}.orders.*"
payload = "json"
import_from = "{source}"
export_to = "{destination}"
""",
    )
    try:
        await setup.prepare(source, sorted({orders, other}))
        await setup.prepare(destination, [orders])
        if destination == "rabbitmq":
            await setup.bind(orders, setup.check_queue)  # orders.lost: no queue, unroutable
        else:  # the service's queue, bound before it starts: the records wait there
            await setup.bind(f"{p}.orders.*", f"{setup.exchange}.rabbitmq")
        proc = await setup.start()
        try:
            await setup.until_healthy(proc)
            records = [(b'{"n": %d}' % n, f"k{n}") for n in range(GOOD)]
            await setup.write_raw(source, orders, [(b"\xff not json", "poison"), *records])
            await setup.write_raw(source, other, [(refused, refused_key)])
            await setup.until("every record acknowledged", lambda: setup.metric_at({
                ("trio_bus_bridge_acked_total", source): (GOOD + 2, GOOD + 2),
                ("trio_bus_bridge_in_flight", source): (0, 0),
            }), 60)
            samples = await setup.metrics()
            assert samples[("trio_bus_bridge_dead_lettered_total", f"{source}:import")] == 1
            assert samples[("trio_bus_bridge_dead_lettered_total", f"{destination}:export")] == 1
            assert samples[("trio_bus_bridge_kept_unacked_total", source)] == 0
            assert await service_kit.stop(proc) == 0, setup.log_tail()
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        read: dict[str, Any] = {
            "rabbitmq": {"queue": setup.dead_queue}, "pubsub": {"group": "dead-letters"},
        }
        letters = {e.key: e for e in await setup.read(
            source, setup.dead_topic, 2, **read.get(source, {})
        )}
        delivered = await setup.read(
            destination, orders, GOOD,
            **({"queue": setup.check_queue} if destination == "rabbitmq" else {}),
        )
    finally:
        await setup.cleanup()
    assert sorted(letters) == sorted(["poison", refused_key]), setup.log_tail()
    assert all(e.headers[H_DEAD_LETTER_ORIGIN] == source for e in letters.values())
    assert letters["poison"].headers[H_ORIGINAL_TOPIC] == orders
    assert "cannot decode" in letters["poison"].headers[H_ERROR]
    assert letters[refused_key].headers[H_ORIGINAL_TOPIC] == other
    print(f"{source} -> {destination}: dead letters back in {source}: "
          f"{ {k: e.headers[H_ERROR][:80] for k, e in letters.items()} }")
    assert sorted(service_kit.numbered(e) for e in delivered) == list(range(GOOD))


@pytest.mark.timeout(120)
async def test_a_dead_letter_kafka_refuses_keeps_its_rabbitmq_message_unacknowledged(
    brokers: Any, tmp_path: Path
) -> None:
    """RabbitMQ -> Kafka with Kafka as the dead-letter broker: a 2 MB payment is refused,
    and its dead letter too. The payment is not acknowledged (RabbitMQ keeps it and
    delivers it again to the next run); /metrics, /healthz and the exit code say so."""
    brokers.require("kafka")
    brokers.require("rabbitmq")
    setup = service_kit.Setup(brokers, tmp_path)
    p = setup.p
    payments = f"{p}.payments.card"
    setup.write(setup.service_table("kafka"), setup.broker_table("kafka"),
                setup.broker_table("rabbitmq"), f"""
[[topics]]
pattern = "{p}.payments.#"
import_from = "rabbitmq"
export_to = "kafka"
""")
    await setup.prepare("kafka", [payments])
    queue = f"{setup.exchange}.rabbitmq"  # the service's, bound before it starts
    await setup.bind(f"{p}.payments.#", queue)
    await setup.write_raw("rabbitmq", payments, [(_big(1), "big"), (b'{"m": 2}', "small")])
    for run in range(2):
        proc = await setup.start()
        try:
            await setup.until_healthy(proc)
            acked = 1 - run  # the small payment, the first time
            bounds = {
                ("trio_bus_bridge_kept_unacked_total", "rabbitmq"): (1, 1),
                ("trio_bus_bridge_acked_total", "rabbitmq"): (acked, acked),
            }
            await setup.until("the payment kept unacknowledged",
                              lambda: setup.metric_at(bounds), 60)  # noqa: B023
            samples = await setup.metrics()
            assert samples[("trio_bus_dead_letters_undeliverable_total", "")] == 1
            assert samples[("trio_bus_bridge_redelivered_total", "rabbitmq")] == run
            status, body = await service_kit.get(setup.port, "/healthz")
            health = json.loads(body)
            assert status == 200 and health["status"] == "degraded", health
            assert health["dead_letters_undeliverable"] == 1
            assert await service_kit.stop(proc, signal.SIGTERM) == 1, setup.log_tail()
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        async with _Rabbit(setup) as rabbit:  # back in the queue, for the next consumer
            assert await rabbit.ready(queue) == 1
    assert "dead_letter.undeliverable" in setup.log_tail()
    [small] = await setup.read("kafka", payments, 1)
    assert small.key == "small"


class _Rabbit:
    """One RabbitMQ connection to read queue counts."""

    def __init__(self, setup: Any) -> None:
        self.bridge = setup.bridge("rabbitmq", "count")

    async def __aenter__(self) -> _Rabbit:
        await self.bridge.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bridge.aclose()

    async def ready(self, queue: str) -> int:
        ready, _ = await self.bridge.queue_counts(queue)
        return int(ready)
