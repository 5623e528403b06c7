"""Retry tiers on the real RabbitMQ (bus/_tiers.py): the generic tier consumer, not
per-queue TTL + dead-letter exchange. Why: AMQP acknowledges each delivery by itself, so
a copy waiting in its tier holds no other message back (there is no contiguous commit to
hold), only one slot of the bridge's ``prefetch`` window while it waits; the tier copies
travel through the bridge's exchange and queue like any exported topic, and one design
serves every broker. The limit (documented in docs/design.md): more copies waiting than
``prefetch`` stall the bridge's queue.

Tiers of fractions of a second; every wait is for an event, never for time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio

from bridges._runtime import open_runtime
from bridges.rabbitmq import RabbitMQBridge
from bus import Envelope, RetryPolicy, open_bus
from bus.abc import H_ATTEMPTS, H_ORIGIN, H_ORIGINAL_TOPIC, H_RETRY_TIER

pytestmark = pytest.mark.brokers

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


class Order(msgspec.Struct, frozen=True):
    n: int


async def _delete(exchange: str, queues: list[str]) -> None:
    import aio_pika

    async def run() -> None:
        connection = await aio_pika.connect(URL)
        async with connection, connection.channel() as ch:
            for queue in queues:
                await ch.queue_delete(queue)
            await ch.exchange_delete(exchange)

    async with open_runtime("thread") as rt:
        await rt.run(run)


async def _until(check: Callable[[], bool]) -> None:
    with trio.fail_after(30):
        while not check():  # noqa: ASYNC110 - counters filled by the broker round trip
            await trio.sleep(0.02)


async def test_a_poison_message_goes_through_the_rabbitmq_tiers_while_the_rest_are_acked(
    brokers: Any,
) -> None:
    brokers.require("rabbitmq")
    exchange = f"test-{uuid.uuid4().hex[:10]}"
    work = "shop.orders"
    tiers = [f"{work}.retry.500ms", f"{work}.retry.1s"]
    dlq = f"{work}.dlq"
    attempts: list[int] = []
    handled: list[int] = []
    copies: list[Envelope[Order]] = []
    letters: list[Envelope[Order]] = []
    in_tier, go_on, dead = trio.Event(), trio.Event(), trio.Event()
    bridge = RabbitMQBridge(URL, name="rabbitmq", exchange=exchange)
    try:
        with trio.fail_after(90):
            async with open_bus(dead_letter_topic=dlq) as b:
                b.topic(work, Order)

                async def handle(env: Envelope[Order]) -> None:
                    if env.payload.n != 0:
                        handled.append(env.payload.n)
                        return
                    attempts.append(env.attempt)
                    if env.attempt == 2:  # back from tier 1: hold it there a moment
                        in_tier.set()
                        await go_on.wait()
                    raise ValueError("poison")

                def letter(env: Envelope[Order]) -> None:
                    letters.append(env)
                    if len(letters) == 2:  # ours, then the one read back from RabbitMQ
                        dead.set()

                b.subscribe(
                    work, handle, name="shop", retry=RetryPolicy(attempts=1),
                    retry_tiers=[0.5, 1],
                )
                b.subscribe(f"{work}.retry.*", copies.append, name="audit")
                b.subscribe(dlq, letter, name="dlq")
                att = await b.attach(
                    bridge, import_=[work, f"{work}.retry.*", dlq],
                    export=[f"{work}.retry.*", dlq],
                )
                async with open_bus() as a:
                    a.topic(work, Order)
                    await a.attach(
                        RabbitMQBridge(URL, name="out", exchange=exchange), export=[work]
                    )
                    for n in range(5):
                        await a.publish(work, Order(n), key="k")
                await in_tier.wait()
                # the poison's copy is in its tier's hands: all five work messages acked
                # (the poison once its copy was confirmed), the rest handled
                await _until(lambda: att.port.acked >= 5)
                assert handled == [1, 2, 3, 4]
                go_on.set()
                await dead.wait()
            assert att.port.acked == 5 + 2 + 1  # work, the two copies, the dead letter
    finally:
        with trio.CancelScope(shield=True):
            await _delete(exchange, [bridge.queue])
    assert attempts == [1, 2, 3]
    assert [(c.topic, c.headers.get(H_ORIGIN)) for c in copies] == [
        (tiers[0], None), (tiers[0], "rabbitmq"), (tiers[1], None), (tiers[1], "rabbitmq"),
    ]
    assert [c.headers[H_RETRY_TIER] for c in copies] == ["1", "1", "2", "2"]
    (local, imported) = letters
    assert imported.headers.get(H_ORIGIN) == "rabbitmq"
    assert local.headers[H_ORIGINAL_TOPIC] == work and local.headers[H_ATTEMPTS] == "3"


async def test_kill9_while_a_message_waits_in_its_tier_loses_nothing(brokers: Any) -> None:
    """benchmarks/retry_kill9.py with a 5 s tier (see the Kafka test of the same name)."""
    brokers.require("rabbitmq")
    from benchmarks.retry_kill9 import measure

    with trio.fail_after(240):
        result = await measure(
            "rabbitmq", "tiers", 60, 5.0, until_poison="dead", settle=0, kill_after="tier-in"
        )
    assert result["lost"] == 0 and result["handled"] >= 59
    assert "p2" in result["poison"] and "dead" in result["poison"], result
