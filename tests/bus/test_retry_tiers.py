"""Retry tiers (``subscribe(retry_tiers=)``, bus/_tiers.py) on one bus, and across the
in-process loopback broker (``bus._loopback``, the test double of a partitioned log with
committed offsets): a failing message leaves its lane, waits in its tiers in order, and
lands in the dead-letter topic after the last; the source is committed once its copy is
exported, while the copy waits.

On the mock clock (``autojump_clock``): tier waits of minutes take no real time. A tier's
due time is wall-clock (it crosses brokers and restarts), so the virtual instant an
attempt happens is its tier delay less the little real time the test took: compared
within a tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio

from bus import ConfigurationError, Envelope, NotDeliveredError, RetryPolicy, open_bus
from bus._faults import Faults
from bus._loopback import LoopbackBridge, LoopbackBroker, LoopbackRecord
from bus.abc import (
    H_ATTEMPTS,
    H_DEAD_LETTER_ORIGIN,
    H_ERROR,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    H_RETRY_ATTEMPT,
    H_RETRY_DUE,
    H_RETRY_ORIGIN,
    H_RETRY_SUBSCRIBER,
    H_RETRY_TIER,
    tier_topic,
)

DLQ = "bus.dead_letter"
ONCE = RetryPolicy(attempts=1)
TWICE = RetryPolicy(attempts=2, base_delay=0.5, jitter=0)


class Order(msgspec.Struct):
    n: int


async def _until(predicate: Callable[[], object], within: float = 5) -> None:
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - counters of other tasks: poll them
            await trio.sleep(0.005)


def test_tier_topics_are_named_by_their_delay() -> None:
    assert tier_topic("orders", 5) == "orders.retry.5s"
    assert tier_topic("orders", 600.0) == "orders.retry.600s"
    assert tier_topic("orders", 0.25) == "orders.retry.250ms"


async def test_a_poison_message_goes_through_every_tier_in_order_then_dead_letters(
    autojump_clock: Any,
) -> None:
    attempts: list[tuple[float, int]] = []
    copies: list[Envelope[Order]] = []
    letters: list[Envelope[Order]] = []
    async with open_bus() as bus:
        orders = bus.topic("orders", Order)

        def poison(env: Envelope[Order]) -> None:
            attempts.append((trio.current_time(), env.attempt))
            raise ValueError("no stock")

        bus.subscribe("orders", poison, name="shop", retry=TWICE, retry_tiers=[5, 60])
        bus.subscribe("orders.retry.*", copies.append, name="audit")
        bus.subscribe(DLQ, letters.append, name="dlq")
        t0, wall = trio.current_time(), time.time()
        await orders.publish(Order(1), key="k1")
        await _until(lambda: letters, within=120)
    # in place: attempt 1, then 2 after 0.5 s; then tier 5 s, then tier 60 s
    assert [a for _, a in attempts] == [1, 2, 3, 4]
    times = [t - t0 for t, _ in attempts]
    assert times[:2] == [0, 0.5]
    assert times[2] == pytest.approx(5.5, abs=0.5) and times[3] == pytest.approx(65.5, abs=1)
    assert [c.topic for c in copies] == ["orders.retry.5s", "orders.retry.60s"]
    first, second = (c.headers for c in copies)
    assert (first[H_RETRY_TIER], second[H_RETRY_TIER]) == ("1", "2")
    assert (first[H_RETRY_ATTEMPT], second[H_RETRY_ATTEMPT]) == ("2", "3")
    assert first[H_RETRY_SUBSCRIBER] == "shop" and first[H_ORIGINAL_TOPIC] == "orders"
    # due: wall-clock, which hardly moves while the mock clock jumps
    assert float(first[H_RETRY_DUE]) == pytest.approx(wall + 5, abs=1)
    assert float(second[H_RETRY_DUE]) == pytest.approx(wall + 60, abs=1)
    assert "no stock" in first[H_ERROR] and copies[0].key == "k1"
    [letter] = letters
    assert letter.headers[H_ORIGINAL_TOPIC] == "orders" and letter.headers[H_ATTEMPTS] == "4"
    assert letter.payload == Order(1) and letter.key == "k1"


async def _order_of_handling(tiers: list[float] | None) -> list[int]:
    """Messages 1 and 2 (same key); 1 fails once: the order they end up handled in."""
    handled: list[int] = []
    failed: set[int] = set()
    async with open_bus() as bus:
        orders = bus.topic("orders", Order)

        def flaky(env: Envelope[Order]) -> None:
            if env.payload.n == 1 and 1 not in failed:
                failed.add(1)
                raise ValueError("later")
            handled.append(env.payload.n)

        in_place = RetryPolicy(attempts=2, base_delay=30, max_delay=30, jitter=0)
        bus.subscribe("orders", flaky, retry=ONCE if tiers else in_place, retry_tiers=tiers)
        await orders.publish(Order(1), key="k")
        await orders.publish(Order(2), key="k")
        await _until(lambda: len(handled) == 2, within=120)
    return handled


async def test_a_retried_message_leaves_its_lane_and_later_ones_pass_it(
    autojump_clock: Any,
) -> None:
    """The point of tiers, and their cost: message 2 (same key, same lane) is handled
    while message 1 waits in its tier. Without tiers (the blocking mode) 2 waits."""
    assert await _order_of_handling([30]) == [2, 1]
    assert await _order_of_handling(None) == [1, 2]


async def test_confirm_hears_the_outcome_at_the_end_of_the_tiers(autojump_clock: Any) -> None:
    async with open_bus() as bus:
        bus.topic("orders", Order)
        calls: list[int] = []

        def second_tier_heals(env: Envelope[Order]) -> None:
            calls.append(env.payload.n)
            if env.payload.n == 2 or calls.count(env.payload.n) < 3:
                raise ValueError("not yet")

        bus.subscribe("orders", second_tier_heals, retry=ONCE, retry_tiers=[1, 2])
        await bus.publish("orders", Order(1), confirm=True)  # fails, tier 1 fails, tier 2 heals
        assert calls == [1, 1, 1]
        with pytest.raises(NotDeliveredError):
            await bus.publish("orders", Order(2), confirm=True)
        assert calls.count(2) == 3


async def test_two_subscribers_with_tiers_on_one_topic_each_get_their_own_back(
    autojump_clock: Any,
) -> None:
    got: dict[str, list[int]] = {"a": [], "b": []}
    async with open_bus() as bus:
        bus.topic("orders", Order)

        def make(name: str) -> Callable[[Envelope[Order]], None]:
            def handler(env: Envelope[Order]) -> None:
                got[name].append(env.attempt)
                if name == "a" and env.attempt == 1:
                    raise ValueError("a fails once")

            return handler

        bus.subscribe("orders", make("a"), name="a", retry=ONCE, retry_tiers=[3])
        bus.subscribe("orders", make("b"), name="b", retry=ONCE, retry_tiers=[3])
        await bus.publish("orders", Order(1), confirm=True)
    assert got == {"a": [1, 2], "b": [1]}


@pytest.mark.parametrize(
    ("pattern", "tiers", "words"),
    [
        ("orders", [], "non-empty list"),
        ("orders", "5", "non-empty list"),
        ("orders", [5, -1], ">= 0.001"),
        ("orders", [5, 5.0], "repeat a delay"),
        ("orders.*", [5], "one topic"),
        ("refunds", [5], "declare topic 'refunds'"),
    ],
)
async def test_bad_tier_settings_fail_at_subscribe_naming_the_fix(
    pattern: str, tiers: Any, words: str
) -> None:
    async with open_bus() as bus:
        bus.topic("orders", Order)
        bus.topic("orders.created", Order)
        with pytest.raises(ConfigurationError, match=words):
            bus.subscribe(pattern, lambda env: None, retry_tiers=tiers)


def _committed(broker: LoopbackBroker, group: str, topic: str) -> int:
    return sum(broker.committed(group, topic, p) for p in range(broker.partitions))


async def test_through_a_broker_the_source_is_committed_while_its_copy_waits_in_a_tier(
    autojump_clock: Any,
) -> None:
    """The work record is committed once its tier copy is on the broker, long before the
    copy is due; the copy comes back through the bridge's import, fails its last tier and
    its dead letter goes to the broker too: every record committed, nothing held."""
    kafka = LoopbackBroker()
    kafka.append(LoopbackRecord("orders", b'{"n": 7}', "src", "k1", {}, 0.0))
    attempts: list[int] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)

        def poison(env: Envelope[Order]) -> None:
            attempts.append(env.attempt)
            raise ValueError("poison")

        bus.subscribe("orders", poison, name="shop", retry=ONCE, retry_tiers=[60, 120])
        dead = trio.Event()
        bus.subscribe(DLQ, lambda env: dead.set(), name="dlq")
        await bus.attach(
            LoopbackBridge(kafka, "kafka"), import_=["orders", "orders.retry.*"],
            export=["orders.retry.*", DLQ],
        )
        group = "trio-bus.kafka"
        with trio.fail_after(1):  # virtual seconds: long before the copy is due
            await kafka.wait_committed(group, "orders")
        assert attempts == [1]  # committed while the copy waits: 60 s to go
        [copy] = kafka.records("orders.retry.60s")
        assert copy.headers[H_RETRY_ORIGIN] == "kafka" and H_ORIGIN not in copy.headers
        await dead.wait()  # the dead letter, routed here too on its way to the broker
        await _until(lambda: kafka.records(DLQ))
        await kafka.wait_committed(group, "orders.retry.120s")
        assert _committed(kafka, group, "orders.retry.60s") == 1
    assert _committed(kafka, group, "orders") == 1
    assert attempts == [1, 2, 3]
    [letter] = kafka.records(DLQ)
    assert letter.headers[H_ORIGINAL_TOPIC] == "orders"
    assert letter.headers[H_DEAD_LETTER_ORIGIN] == "kafka"
    assert [r.id for r in kafka.records("orders.retry.120s")] != [copy.id]


async def test_the_source_stays_uncommitted_until_the_broker_took_its_copy(
    autojump_clock: Any,
) -> None:
    """The copy is the message now: while the broker refuses it (for now: the export
    retries), the work record is not committed; once it is on the broker, it is."""
    kafka = LoopbackBroker(faults=Faults())
    kafka.append(LoopbackRecord("orders", b'{"n": 7}', "src", "k1", {}, 0.0))
    kafka.refuse_next(3)
    async with open_bus() as bus:
        bus.topic("orders", Order)

        def poison(env: Envelope[Order]) -> None:
            raise ValueError("poison")

        bus.subscribe("orders", poison, name="shop", retry=ONCE, retry_tiers=[600])
        await bus.attach(
            LoopbackBridge(kafka, "kafka"), import_=["orders", "orders.retry.*"],
            export=["orders.retry.*"],
        )
        await _until(lambda: kafka.injected["refuse"] == 3, within=60)
        assert _committed(kafka, "trio-bus.kafka", "orders") == 0
        assert kafka.records("orders.retry.600s") == []
        with trio.fail_after(60):
            await kafka.wait_committed("trio-bus.kafka", "orders")
        assert len(kafka.records("orders.retry.600s")) == 1
        bus.subscriptions("orders")[0].close()  # leave the copy on the broker


async def test_a_foreign_message_with_garbled_tier_headers_is_still_retried(
    autojump_clock: Any,
) -> None:
    """Headers a broker brought in are not trusted: a tier copy whose numbers do not
    parse is due now, at its own attempt, and goes on from the first tier."""
    attempts: list[int] = []
    async with open_bus() as bus:
        bus.topic("orders", Order)

        def heals(env: Envelope[Order]) -> None:
            attempts.append(env.attempt)
            if len(attempts) == 1:
                raise ValueError("once")

        bus.subscribe("orders", heals, name="shop", retry=ONCE, retry_tiers=[5])
        garbled = {
            H_RETRY_SUBSCRIBER: "shop", H_ORIGINAL_TOPIC: "orders", H_RETRY_TIER: "one",
            H_RETRY_DUE: "soon", H_RETRY_ATTEMPT: "nan",
        }
        await bus.publish("orders.retry.5s", Order(1), headers=garbled, confirm=True)
        await bus.publish("orders", Order(2), confirm=True)
    assert attempts == [2, 3, 1]  # garbled: 2, then from tier 1: 3; then order 2
