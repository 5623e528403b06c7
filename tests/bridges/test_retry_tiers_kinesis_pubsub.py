"""Retry tiers (bus/_tiers.py) on Kinesis (kinesis-mock) and Pub/Sub (Google's emulator),
with the conformance suite's bridges (``tests/conformance/kits.py``): a poison message
goes through both tiers (streams / topics of their own, consumed back) and lands in the
dead-letter destination on the same broker, while every work message is acknowledged
(Kinesis: checkpointed past it) as soon as its copy is on the broker.

The Kafka and RabbitMQ versions (and kill -9) are in ``tests/bridges/kafka`` and
``tests/bridges/rabbitmq``. Tiers of fractions of a second; waits are for events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio

from bus import Envelope, RetryPolicy, open_bus
from bus.abc import H_ATTEMPTS, H_ORIGIN, H_ORIGINAL_TOPIC, H_RETRY_TIER
from bus.testing import BridgeKit
from bus.testing._check_bridge import Order
from tests.conformance import kits

pytestmark = pytest.mark.brokers


async def _until(check: Callable[[], bool]) -> None:
    with trio.fail_after(60):
        while not check():  # noqa: ASYNC110 - counters filled by the broker round trip
            await trio.sleep(0.02)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", ["kinesis", "pubsub"])
async def test_a_poison_message_goes_through_the_tiers_and_lands_in_dead_letters(
    brokers: Any, broker: str
) -> None:
    brokers.require(broker)
    kit: BridgeKit = (
        kits.kinesis_kit(lambda: brokers.restart("kinesis")) if broker == "kinesis"
        else kits.pubsub_kit()
    )
    before = await trio.to_thread.run_sync(kits.pubsub_resources) if broker == "pubsub" else None
    prefix = f"rt{uuid.uuid4().hex[:8]}"
    work = f"{prefix}.orders"
    tiers = [f"{work}.retry.500ms", f"{work}.retry.1s"]
    dlq = f"{work}.dlq"
    attempts: list[int] = []
    handled: list[int] = []
    copies: list[Envelope[Order]] = []
    letters: list[Envelope[Order]] = []
    in_tier, go_on, dead = trio.Event(), trio.Event(), trio.Event()
    try:
        if kit.prepare is not None:
            await kit.prepare([work, *tiers, dlq])
        with trio.fail_after(200):
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
                    if len(letters) == 2:  # ours, then the one read back from the broker
                        dead.set()

                b.subscribe(
                    work, handle, name="shop", retry=RetryPolicy(attempts=1),
                    retry_tiers=[0.5, 1],
                )
                b.subscribe(f"{work}.retry.*", copies.append, name="audit")
                b.subscribe(dlq, letter, name="dlq")
                att = await b.attach(
                    kit.make("src", f"{prefix}-g"), import_=[work, f"{work}.retry.*", dlq],
                    export=[f"{work}.retry.*", dlq],
                )
                async with open_bus() as a:
                    a.topic(work, Order)
                    await a.attach(kit.make("out", f"{prefix}-out"), export=[work])
                    for n in range(5):
                        await a.publish(work, Order(n), key="k", confirm=n == 4)
                await in_tier.wait()
                # the poison's copy is in its tier's hands: every work message is
                # acknowledged (the poison's once its copy was on the broker)
                await _until(lambda: att.port.acked >= 5)
                assert sorted(handled) == [1, 2, 3, 4]
                go_on.set()
                await dead.wait()
    finally:
        with trio.CancelScope(shield=True):
            if isinstance(kit, kits.KinesisKit):
                with trio.move_on_after(30):
                    await kit.cleanup()
            if before is not None:
                await trio.to_thread.run_sync(kits.pubsub_cleanup, before)
    assert attempts == [1, 2, 3]
    assert [(c.topic, c.headers.get(H_ORIGIN)) for c in copies] == [
        (tiers[0], None), (tiers[0], "src"), (tiers[1], None), (tiers[1], "src"),
    ]
    assert [c.headers[H_RETRY_TIER] for c in copies] == ["1", "1", "2", "2"]
    (local, imported) = letters
    assert imported.headers.get(H_ORIGIN) == "src"
    assert local.headers[H_ORIGINAL_TOPIC] == work and local.headers[H_ATTEMPTS] == "3"
