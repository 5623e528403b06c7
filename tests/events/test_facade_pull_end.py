"""A ``pull`` that ends exactly at the present end on Kinesis and Pub/Sub.

Their consumer bridges report when ingress caught up (``on_caught_up``: Kinesis's empty
``GetRecords`` with ``MillisBehindLatest`` 0 on every shard, Pub/Sub's empty pull with
nothing out), and the pull ends after what was delivered until then — not after a
quiet spell. Each test makes a quiet spell end the pull at once if the signal were not
used (``end_idle`` of a millisecond, shorter than any broker round trip: without the
signal the pull reads nothing), and reads a backlog several batches long (small
``records_per_call`` / ``pull_max``; on Pub/Sub one ordering key, so the service hands
out the next batch only once the last one was acknowledged, each a round trip later).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import msgspec
import pytest
import trio

from bus.events import BaseEvent

BATCH = 10
BACKLOG = 3 * BATCH + 5  # several batches, the last one short


class Item(msgspec.Struct):
    n: int


def small_batches(backend: str) -> dict[str, Any]:
    if backend == "kinesis":
        return {"records_per_call": BATCH}
    return {"pull_max": BATCH}


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.brokers) for b in ("kinesis", "pubsub")])
def events(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> BaseEvent[Item]:
    backend: str = request.param
    brokers = request.getfixturevalue("brokers")
    brokers.require(backend)
    for variable in ("KINESIS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                     "AWS_SECRET_ACCESS_KEY", "PUBSUB_EMULATOR_HOST", "GCP_PROJECT_ID"):
        monkeypatch.setenv(variable, brokers.env(variable))
    return BaseEvent(
        model=Item, event_type=backend, topic_prefix=f"end_{uuid.uuid4().hex[:10]}",
        end_idle=0.001, **small_batches(backend),
    )


@pytest.mark.timeout(120)
async def test_a_pull_ends_after_a_backlog_of_several_batches(events: BaseEvent[Item]) -> None:
    async with events:
        await events.create_topic("made")
        for n in range(BACKLOG):
            await events.push("made", Item(n), key="k")
        seen = [item.n async for item in events.pull("made")]
        assert seen == list(range(BACKLOG))  # all of it, in order, and then it ended

        # What comes after the end is the next pull's, and nothing was left behind.
        await events.push("made", Item(BACKLOG), key="k")
        later = [item.n async for item in events.pull("made")]
        assert later == [BACKLOG]
        await events.delete_topic("made")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("events", [pytest.param("kinesis", marks=pytest.mark.brokers)],
                         indirect=True)
async def test_kinesis_records_of_one_millisecond_are_read_to_the_end(
    events: BaseEvent[Item],
) -> None:
    """Records written by one ``PutRecords`` share their arrival millisecond, so
    kinesis-mock answers ``MillisBehindLatest`` 0 with records still unread (measured:
    the fourth of 60-record answers said 0 behind with 10 of 250 unread): only an empty
    answer at the tip is the end."""
    import boto3

    async with events:
        await events.create_topic("burst")
        stream = f"{events.topic_prefix}.burst"
        records = [{"Data": msgspec.json.encode({"n": n}), "PartitionKey": "k"}
                   for n in range(BACKLOG)]
        client = boto3.client("kinesis", endpoint_url=os.environ["KINESIS_ENDPOINT_URL"])
        await trio.to_thread.run_sync(
            lambda: client.put_records(StreamName=stream, Records=records)
        )
        seen = [item.n async for item in events.pull("burst")]
        assert seen == list(range(BACKLOG))
        await events.delete_topic("burst")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("events", [pytest.param("kinesis", marks=pytest.mark.brokers)],
                         indirect=True)
async def test_kinesis_pull_ends_when_every_shard_is_read(events: BaseEvent[Item]) -> None:
    async with events:
        await events.create_topic("sharded", shard_count=2)
        # One record in the lower half of the hash range (the first shard), the rest in
        # the upper half: the first shard is at its tip long before the second one is.
        low, high = _key_in_half(0), _key_in_half(1)
        await events.push("sharded", Item(0), key=low)
        for n in range(1, BACKLOG):
            await events.push("sharded", Item(n), key=high)
        seen = [item.n async for item in events.pull("sharded")]
        assert sorted(seen) == list(range(BACKLOG))
        await events.delete_topic("sharded")


@pytest.mark.timeout(60)
async def test_a_pull_of_an_empty_topic_ends(events: BaseEvent[Item]) -> None:
    async with events:
        await events.create_topic("none")
        assert [item async for item in events.pull("none")] == []
        await events.delete_topic("none")


def _key_in_half(half: int) -> str:
    """A partition key whose MD5 hash (Kinesis's shard key) is in the lower (0) or upper
    (1) half of the 128-bit range, i.e. on the first or second of two even shards."""
    return next(
        key for n in range(1000)
        if (int(hashlib.md5((key := f"key{n}").encode()).hexdigest(), 16) >> 127) == half
    )
