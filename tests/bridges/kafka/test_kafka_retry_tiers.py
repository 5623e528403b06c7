"""Retry tiers on the real Kafka (bus/_tiers.py): the work partition's commit moves past a
failing record while it waits in its tiers, which are Kafka topics consumed back; after
the last tier its dead letter is on Kafka too.

Tiers of fractions of a second; every wait is for an event (a handler reached, a commit
seen by the broker), never for time.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import pytest
import trio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridges.kafka import ConfluentKafkaBridge, KafkaBridge
from bus import Envelope, RetryPolicy, open_bus
from bus.abc import (
    H_ATTEMPTS,
    H_DEAD_LETTER_ORIGIN,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    H_RETRY_ORIGIN,
    H_RETRY_TIER,
)

pytestmark = pytest.mark.brokers

SERVER = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")
T = TypeVar("T")


class Order(msgspec.Struct, frozen=True):
    n: int


async def _admin(work: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
    """Run *work* with an admin client, in plain asyncio in a worker thread."""

    async def run() -> T:
        admin = AIOKafkaAdminClient(bootstrap_servers=SERVER)
        await admin.start()
        try:
            return await work(admin)
        finally:
            await admin.close()

    def main() -> T:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(run())

    return await trio.to_thread.run_sync(main)


async def _create(names: list[str]) -> None:
    async def work(admin: AIOKafkaAdminClient) -> None:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        async with asyncio.timeout(20):
            while not set(names) <= set(await admin.list_topics()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    await _admin(work)


async def _delete(names: list[str]) -> None:
    async def work(admin: AIOKafkaAdminClient) -> None:
        await admin.delete_topics(names)

    await _admin(work)


async def _committed(group: str, topic: str) -> int:
    async def work(admin: AIOKafkaAdminClient) -> int:
        meta = (await admin.list_consumer_group_offsets(group)).get(TopicPartition(topic, 0))
        return 0 if meta is None or meta.offset < 0 else int(meta.offset)

    return await _admin(work)


async def _until_committed(group: str, topic: str, offset: int) -> None:
    with trio.fail_after(30):
        while await _committed(group, topic) < offset:  # noqa: ASYNC110 - broker state
            await trio.sleep(0.05)


@pytest.fixture(scope="session")
def kafka(brokers: Any) -> None:
    brokers.require("kafka")


@pytest.mark.parametrize(
    "client", [KafkaBridge, ConfluentKafkaBridge], ids=["aiokafka", "confluent"]
)
async def test_a_poison_record_goes_through_the_kafka_tiers_while_its_partition_commits(
    kafka: None, client: type
) -> None:
    work = f"kr{uuid.uuid4().hex[:10]}.orders"
    tiers = [f"{work}.retry.500ms", f"{work}.retry.1s"]
    dlq = f"{work}.dlq"
    group = f"g-{work}"
    await _create([work, *tiers, dlq])
    attempts: list[int] = []
    handled: list[int] = []
    copies: list[Envelope[Order]] = []
    letters: list[Envelope[Order]] = []
    in_tier = trio.Event()
    go_on = trio.Event()
    dead = trio.Event()
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
                    if len(letters) == 2:  # ours, then the one read back from Kafka
                        dead.set()

                b.subscribe(
                    work, handle, name="shop", retry=RetryPolicy(attempts=1),
                    retry_tiers=[0.5, 1],
                )
                b.subscribe(f"{work}.retry.*", copies.append, name="audit")
                b.subscribe(dlq, letter, name="dlq")
                await b.attach(
                    client(SERVER, name="kafka", group_id=group, commit_interval=0.1),
                    import_=[work, f"{work}.retry.*", dlq], export=[f"{work}.retry.*", dlq],
                )
                async with open_bus() as a:
                    a.topic(work, Order)
                    await a.attach(client(SERVER, name="out"), export=[work])
                    for n in range(5):
                        await a.publish(work, Order(n), key="k")  # one key, one partition
                await in_tier.wait()
                # the poison is in its tier's hands: its work partition is committed to
                # its end, the records after it handled
                await _until_committed(group, work, 5)
                assert handled == [1, 2, 3, 4]
                go_on.set()
                await dead.wait()
                await _until_committed(group, tiers[0], 1)
                await _until_committed(group, tiers[1], 1)
    finally:
        await _delete([work, *tiers, dlq])
    assert attempts == [1, 2, 3]
    # each copy went out (no origin) and came back from Kafka (origin: the bridge)
    assert [(c.topic, c.headers.get(H_ORIGIN)) for c in copies] == [
        (tiers[0], None), (tiers[0], "kafka"), (tiers[1], None), (tiers[1], "kafka"),
    ]
    assert [c.headers[H_RETRY_TIER] for c in copies] == ["1", "1", "2", "2"]
    assert copies[0].headers[H_RETRY_ORIGIN] == "kafka"
    (local, imported) = letters
    assert imported.headers.get(H_ORIGIN) == "kafka"  # the dead letter went to Kafka
    assert local.headers[H_ORIGINAL_TOPIC] == work and local.headers[H_ATTEMPTS] == "3"
    assert local.headers[H_DEAD_LETTER_ORIGIN] == "kafka"


async def test_kill9_while_a_record_waits_in_its_tier_loses_nothing(kafka: None) -> None:
    """benchmarks/retry_kill9.py with a 5 s tier: the consumer is killed once it handled
    every other record and the poison's copy came back to it from the tier topic (held
    until due, uncommitted); the next one handles what was not committed, takes the copy
    from the tier topic again, retries it, dead-letters it."""
    from benchmarks.retry_kill9 import measure

    with trio.fail_after(240):
        result = await measure(
            "kafka", "tiers", 60, 5.0, until_poison="dead", settle=0, kill_after="tier-in"
        )
    assert result["lost"] == 0 and result["handled"] >= 59
    assert "p2" in result["poison"] and "dead" in result["poison"], result
