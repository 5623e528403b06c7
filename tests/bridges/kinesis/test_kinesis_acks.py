"""Kinesis ingress checkpoints only what the bus is done with: fake client, memory store.

``KinesisBridge`` calls its ``_client`` (a ``KinesisClient``) on the asyncio loop of its
runtime; the test sets a fake there serving one stream of one shard, and gives the
bridge a checkpoint store that records every save (the Kinesis ack point: where a new
reader of the group resumes). What a save would hold at a given moment is read by
flushing right then (``bridge.checkpoints.flush()``); the bridge's own checkpointer runs
too (every 20 ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from bus import open_bus

pytest.importorskip("aioboto3")

from bridges.kinesis import KinesisBridge, MemoryCheckpointStore

TOPIC = "orders"
SHARD = "shardId-000000000000"
KEY = (TOPIC, SHARD)


def seq(n: int) -> str:
    """The sequence number of record *n* (Kinesis numbers are large, rising, not dense)."""
    return str(49_000_000 + 10 * n)


class Store(MemoryCheckpointStore):
    """Memory checkpoints that record every save (called in a worker thread)."""

    def __init__(self, watch: Any) -> None:
        super().__init__()
        self.watch = watch
        self.saves: list[dict[tuple[str, str], str]] = []

    def save(self, group: str, checkpoints: Mapping[tuple[str, str], str]) -> None:
        super().save(group, checkpoints)
        self.saves.append(dict(checkpoints))
        self.watch.poke()

    def saved(self) -> str | None:
        """The checkpoint of the shard now (None: never saved)."""
        return self.load("kinesis", TOPIC).get(SHARD)


class FakeKinesis:
    """The ``KinesisClient`` methods the bridge's lifecycle and ingress call."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, str, float]] = []

    def feed(self, *names: str) -> None:
        for name in names:
            n = len(self.records)
            self.records.append((seq(n), f'"{name}"'.encode(), "", 0.0))  # no key

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_streams(self) -> list[str]:
        return [TOPIC]

    async def list_shards(self, stream: str) -> list[dict[str, Any]]:
        return [{"ShardId": SHARD}]

    async def iterator(self, stream: str, shard: str, after: str | None, *_: Any) -> str:
        start = 0 if after is None else 1 + [s for s, *_ in self.records].index(after)
        return str(start)

    async def get_records(
        self, iterator: str, limit: int
    ) -> tuple[list[tuple[str, bytes, str, float]], str, int]:
        start = int(iterator)
        batch = self.records[start:start + limit]
        if not batch:
            await asyncio.sleep(0.01)  # an empty read: the reader waits poll_interval too
        return batch, str(start + len(batch)), 0


@pytest.fixture
def kinesis(watch: Any) -> tuple[FakeKinesis, Store, KinesisBridge]:
    client, store = FakeKinesis(), Store(watch)
    bridge = KinesisBridge(
        name="kinesis", region="us-east-1", access_key_id="id", secret_access_key="key",
        endpoint_url="http://127.0.0.1:1", checkpoints=store, leases=False,
        poll_interval=0.01, checkpoint_interval=0.02,
    )
    bridge._client = client  # type: ignore[assignment]
    return client, store, bridge


async def settle_and_flush(bridge: KinesisBridge) -> None:
    """Let every task run until blocked (done callbacks included), then save what the
    checkpointer holds as done."""
    await trio.testing.wait_all_tasks_blocked()
    await bridge.checkpoints.flush()


async def test_a_record_in_hand_holds_back_the_checkpoint(kinesis: Any, held: Any) -> None:
    client, store, bridge = kinesis
    client.feed("m0", "m1", "m2")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=3)  # keyless: one record per worker
        att = await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1", "m2")
        await settle_and_flush(bridge)
        assert store.saved() is None
        held.release("m1", "m2")
        await held.wait_returned("m1", "m2")
        await settle_and_flush(bridge)
        assert att.port.acked == 2  # records 1 and 2 are done...
        assert store.saved() is None  # ...but 0 is not: a reader must start before it
        held.release("m0")
        await store.watch.until(lambda: store.saved() == seq(2), "record 2 checkpointed")
    assert store.saves == [{KEY: seq(2)}]


async def test_records_handed_over_while_the_bus_was_full_wait_for_their_handler(
    kinesis: Any, held: Any
) -> None:
    client, store, bridge = kinesis
    client.feed("m0", "m1", "m2", "m3")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, capacity=1)
        await bus.attach(bridge, import_=[TOPIC])
        for n in range(4):
            await held.wait_entered(f"m{n}")  # m{n+1} in the mailbox, m{n+2} waiting
            await settle_and_flush(bridge)
            assert store.saved() == (seq(n - 1) if n else None)
            held.release(f"m{n}")
        await store.watch.until(lambda: store.saved() == seq(3), "record 3 checkpointed")


async def test_a_done_reported_twice_or_for_an_unknown_record_saves_nothing(
    kinesis: Any, held: Any
) -> None:
    client, store, bridge = kinesis
    client.feed("m0", "m1")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=2)
        await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1")
        held.release("m0", "m1")
        await store.watch.until(lambda: store.saved() == seq(1), "record 1 checkpointed")
        saves = len(store.saves)
        for key, index in ((KEY, 1), (KEY, 0), (KEY, 7), ((TOPIC, "other"), 0)):
            bridge.checkpoints.done(key, index, None)  # type: ignore[arg-type]
        await settle_and_flush(bridge)
        assert len(store.saves) == saves  # nothing saved again
    assert store.saves == [{KEY: seq(1)}]
