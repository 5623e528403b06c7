"""Dead letters reach their destination whatever their message's origin (no broker).

A dead letter is a new message of the bus's, not an echo of the one that failed: it goes
to every bridge exporting the dead-letter topic, the bridge its message came in through
included, with that bridge's name in ``x-bus-dead-letter-origin``. A message whose dead
letter could not be delivered either is never acknowledged to its broker. And the echo
guard still keeps a genuine echo (a dead letter imported from the dead-letter broker)
from going round. Between buses and in-process loopback brokers (``bus._loopback``), the
test double of a partitioned log with committed offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio
from structlog.testing import capture_logs

from bus import Envelope, NotDeliveredError, RetryPolicy, open_bus
from bus._codec import RawCodec
from bus._loopback import LoopbackBridge, LoopbackBroker, LoopbackRecord
from bus.abc import (
    H_DEAD_LETTER_ORIGIN,
    H_ERROR,
    H_FAILED_SUBSCRIBER,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    Delivery,
)
from bus.events import EventMessage
from bus.events._on_bus import publish_and_wait

DLQ = "bus.dead_letter"


class Order(msgspec.Struct):
    n: int


async def _until(predicate: Callable[[], object], within: float = 5) -> None:
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - counters of other tasks: poll them
            await trio.sleep(0.005)


def _record(topic: str, data: bytes, id: str, key: str = "k1") -> LoopbackRecord:
    return LoopbackRecord(topic, data, id, key, {"tenant": "t1"}, 0.0)


def _committed(broker: LoopbackBroker, bridge: str, topic: str) -> int:
    """Records of *topic* the bridge's group committed (over every partition)."""
    return sum(
        broker.committed(f"trio-bus.{bridge}", topic, p) for p in range(broker.partitions)
    )


async def test_an_undecodable_import_is_dead_lettered_to_the_broker_it_came_from() -> None:
    """The issue's second reproduction: a non-JSON record of a broker that is also the
    dead-letter destination. Its dead letter is exported there, and only then is the
    record committed."""
    kafka = LoopbackBroker()
    kafka.append(_record("orders.created", b"\xff not json", "poison"))
    kafka.append(_record("orders.created", b'{"n": 1}', "good"))
    got: list[Order] = []
    async with open_bus() as bus:
        bus.topic("orders.created", Order)
        bus.subscribe("orders.created", lambda env: got.append(env.payload))
        att = await bus.attach(
            LoopbackBridge(kafka, "kafka"), import_=["orders.*"], export=[DLQ]
        )
        await _until(lambda: att.port.acked == 2)
    [letter] = kafka.records(DLQ)
    assert letter.id == "poison" and letter.key == "k1"
    assert letter.headers[H_DEAD_LETTER_ORIGIN] == "kafka" and H_ORIGIN not in letter.headers
    assert letter.headers[H_ORIGINAL_TOPIC] == "orders.created"
    assert "cannot decode" in letter.headers[H_ERROR] and letter.headers["tenant"] == "t1"
    assert got == [Order(1)] and _committed(kafka, "kafka", "orders.created") == 2


async def test_a_message_refused_downstream_is_dead_lettered_to_its_source_broker() -> None:
    """The issue's first reproduction: a message imported from one broker, refused by the
    broker it is mirrored to (too large), dead-lettered to the broker it came from."""
    rabbit, kafka = LoopbackBroker(), LoopbackBroker(max_bytes=100)
    rabbit.append(_record("payments.card", b"x" * 200, "big"))
    async with open_bus() as bus:
        bus.declare_pattern("payments.#", RawCodec())
        out = await bus.attach(LoopbackBridge(kafka, "kafka"), export=["payments.#"])
        src = await bus.attach(
            LoopbackBridge(rabbit, "rabbitmq"), import_=["payments.#"], export=[DLQ]
        )
        await _until(lambda: src.port.acked == 1)
        assert out.export_rejected == 1
    [letter] = rabbit.records(DLQ)
    assert letter.id == "big" and H_ORIGIN not in letter.headers
    assert letter.headers[H_DEAD_LETTER_ORIGIN] == "rabbitmq"
    assert letter.headers[H_FAILED_SUBSCRIBER] == "kafka:export"
    assert "over the broker's limit" in letter.headers[H_ERROR]
    assert kafka.records("payments.card") == []
    assert _committed(rabbit, "rabbitmq", "payments.card") == 1


async def test_a_dead_letter_refused_in_turn_keeps_its_message_unacknowledged() -> None:
    """The dead-letter broker refuses the dead letter too: the message it came from is
    not committed (the next record of its partition is, and still nothing moves past
    it), it is counted and logged, and a new consumer of the group gets it again."""
    rabbit, kafka = LoopbackBroker(), LoopbackBroker(max_bytes=100)
    rabbit.append(_record("payments.card", b"x" * 200, "big"))
    rabbit.append(_record("payments.card", b"small", "small"))  # same key, same partition
    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.declare_pattern("payments.#", RawCodec())
            await bus.attach(LoopbackBridge(kafka, "kafka"), export=["payments.#", DLQ])
            src = await bus.attach(LoopbackBridge(rabbit, "rabbitmq"), import_=["payments.#"])
            await _until(lambda: src.port.kept_unacked == 1 and src.port.acked == 1)
            assert [r.id for r in kafka.records("payments.card")] == ["small"]
            assert bus.stats().dead_letters_undeliverable == 1
            [kept] = bus.retained(DLQ)  # the process still holds it
            assert kept.id == "big" and kept.headers[H_DEAD_LETTER_ORIGIN] == "rabbitmq"
    assert _committed(rabbit, "rabbitmq", "payments.card") == 0
    [said] = [e for e in logs if e["event"] == "dead_letter.undeliverable"]
    assert said["id"] == "big" and said["origin"] == "rabbitmq"
    assert said["original_topic"] == "payments.card"
    # a new consumer of the same group gets both again; with room in Kafka, all is done
    roomy = LoopbackBroker()
    async with open_bus() as bus:
        bus.declare_pattern("payments.#", RawCodec())
        await bus.attach(LoopbackBridge(roomy, "kafka"), export=["payments.#", DLQ])
        src = await bus.attach(LoopbackBridge(rabbit, "rabbitmq"), import_=["payments.#"])
        await _until(lambda: src.port.acked == 2)
    assert [r.id for r in roomy.records("payments.card")] == ["big", "small"]
    assert _committed(rabbit, "rabbitmq", "payments.card") == 2


async def test_an_undecodable_import_whose_dead_letter_is_refused_is_not_acknowledged() -> None:
    """The import's own dead letter (no subscriber failed: the port made it) refused by
    the dead-letter broker: the record stays uncommitted."""
    kafka, small = LoopbackBroker(), LoopbackBroker(max_bytes=10)
    kafka.append(_record("orders.created", b"\xff not json at all", "poison"))
    kafka.append(_record("orders.created", b'{"n": 2}', "good"))
    async with open_bus() as bus:
        bus.topic("orders.created", Order)
        bus.subscribe("orders.created", lambda env: None)
        await bus.attach(LoopbackBridge(small, "dead"), export=[DLQ])
        att = await bus.attach(LoopbackBridge(kafka, "kafka"), import_=["orders.*"])
        await _until(lambda: att.port.kept_unacked == 1 and att.port.acked == 1)
    assert _committed(kafka, "kafka", "orders.created") == 0


async def test_a_local_publisher_hears_that_its_dead_letter_was_undeliverable() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)

        def fails(env: Envelope[int]) -> None:
            raise ValueError("bad")

        bus.subscribe("t", fails, retry=RetryPolicy(attempts=1))
        await bus.attach(LoopbackBridge(LoopbackBroker(max_bytes=0), "dead"), export=[DLQ])
        with pytest.raises(NotDeliveredError, match="dead:export: undeliverable") as caught:
            await bus.publish("t", 1, confirm=True)
    delivery = caught.value.delivery
    assert delivery is not None and delivery.undeliverable
    assert [f.outcome for f in delivery.failures] == ["dead_lettered", "undeliverable"]


def test_a_follower_passes_on_only_an_undeliverable_outcome() -> None:
    """Delivery.follow: the dead letter's own failures other than undeliverable (a local
    subscriber of the dead-letter topic that dropped it) do not fail the original."""
    calls: list[Delivery] = []
    for outcome, undeliverable in (("dropped", False), ("undeliverable", True)):
        original = Delivery(calls.append)
        original.hold()  # a subscriber got it
        original.routed()
        follower = original.follow()  # it failed: its dead letter
        follower.hold()  # a subscriber of the dead-letter topic got that
        follower.routed()
        original.fail("sub", "dead_lettered", "boom")
        assert not calls  # the dead letter still holds it
        follower.fail("dead:export", outcome, "why")
        assert calls.pop() is original and original.done
        assert original.undeliverable is undeliverable
        assert [f.outcome for f in original.failures] == ["dead_lettered"] + [outcome] * (
            undeliverable
        )


async def test_a_dead_letter_imported_from_the_dead_letter_broker_is_not_sent_back() -> None:
    """The echo guard still holds for genuine echoes: a bridge importing and exporting
    the dead-letter topic does not export back what it imported from it, whether it
    decodes (a dead letter another process wrote) or not (it would go round for ever)."""
    kafka = LoopbackBroker()
    kafka.append(_record(DLQ, b'"an old dead letter"', "old"))
    kafka.append(_record(DLQ, b"\xff not json", "garbled"))
    async with open_bus() as bus:
        att = await bus.attach(LoopbackBridge(kafka, "kafka"), import_=[DLQ], export=[DLQ])
        await _until(lambda: att.port.acked == 2)  # done: its exports would be confirmed
        assert att.port.import_dead_lettered == 1
    assert [r.id for r in kafka.records(DLQ)] == ["old", "garbled"]
    garbled = next(e for e in bus.retained(DLQ) if e.id == "garbled")
    assert garbled.headers[H_ORIGIN] == "kafka" and H_DEAD_LETTER_ORIGIN not in garbled.headers


async def test_a_local_dead_letter_has_no_origin() -> None:
    """A dead letter of a local message carries no origin, even if the message copied a
    former dead letter's headers (an operator re-publishing it)."""
    async with open_bus() as bus:
        bus.topic("t", int)

        def fails(env: Envelope[int]) -> None:
            raise ValueError("bad")

        bus.subscribe("t", fails, retry=RetryPolicy(attempts=1))
        await bus.publish("t", 1, headers={H_DEAD_LETTER_ORIGIN: "kafka", H_ERROR: "old"})
        await bus.drain()
    [letter] = bus.retained(DLQ)
    assert H_DEAD_LETTER_ORIGIN not in letter.headers and H_ORIGIN not in letter.headers
    assert letter.headers[H_ERROR] == "bad"


async def test_a_publish_that_copies_an_imported_messages_headers_is_exported() -> None:
    """A handler passing an imported message's headers on to a message of its own: that
    message is new, and the bridge the first came from exports it (publish drops the
    copied x-bus-origin); the imported message itself is still not echoed."""
    kafka = LoopbackBroker()
    kafka.append(_record("in.orders", b'{"n": 3}', "first"))
    async with open_bus() as bus:
        bus.topic("in.orders", Order)
        bus.topic("out.orders", Order)

        async def enrich(env: Envelope[Order]) -> None:
            await bus.publish("out.orders", Order(env.payload.n * 10), headers=env.headers)

        bus.subscribe("in.orders", enrich)
        att = await bus.attach(
            LoopbackBridge(kafka, "kafka"), import_=["in.*"], export=["out.*", "in.*"]
        )
        await _until(lambda: kafka.records("out.orders"))
        await _until(lambda: att.port.acked == 1)
    [out] = kafka.records("out.orders")
    assert msgspec.json.decode(out.data, type=Order) == Order(30)
    assert out.headers["tenant"] == "t1" and H_ORIGIN not in out.headers
    assert [r.id for r in kafka.records("in.orders")] == ["first"]  # no echo


@pytest.mark.parametrize("via", ["publish", "publish_nowait", "publish_batch", "facade"])
async def test_every_publish_drops_a_callers_origin_header(via: str) -> None:
    seen: list[dict[str, str]] = []
    async with open_bus() as bus:
        bus.topic("t", dict)
        bus.subscribe("t", lambda env: seen.append(env.headers))
        headers: dict[str, Any] = {H_ORIGIN: "kafka", "keep": "1"}
        if via == "publish":
            await bus.publish("t", {}, headers=headers)
        elif via == "publish_nowait":
            bus.publish_nowait("t", {}, headers=headers)
        elif via == "publish_batch":
            await bus.publish_batch("t", [{}], headers=headers)
        else:  # the seed facade's publish (bus/events/_on_bus.py)
            await publish_and_wait(bus, EventMessage(topic="t", data={}, headers=headers))
        await bus.drain()
    assert seen == [{"keep": "1"}] and headers[H_ORIGIN] == "kafka"  # the caller's intact
