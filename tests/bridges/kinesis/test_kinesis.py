"""The Kinesis bridge against kinesis-mock on loopback (``make brokers-up``).

Each test uses streams of its own (a fresh prefix) and deletes them afterwards. What the
bridge wrote is read back with plain aioboto3 calls (the bridge's ``KinesisClient``, run
through the bridges' asyncio runtime) and with the official ``cloudevents`` SDK; foreign
records are written the same way.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from bridges._runtime import Runtime, open_runtime
from bridges.kinesis import KinesisBridge, SQLiteCheckpointStore
from bridges.kinesis._client import KinesisClient, Record
from bus import BackendUnavailableError, ConfigurationError, Envelope, open_bus
from bus.abc import H_ERROR, H_ORIGINAL_TOPIC

pytestmark = pytest.mark.brokers

ENDPOINT = os.environ.get("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568")
REGION = os.environ.get("AWS_REGION", "us-east-1")
TIMEOUT = 30


class Order(msgspec.Struct):
    id: str
    amount: int


class Raw:
    """Plain aioboto3 on its own client: what a foreign producer or reader does."""

    def __init__(self, rt: Runtime, client: KinesisClient, prefix: str, tmp: Path) -> None:
        self.rt, self.client, self.prefix, self.tmp = rt, client, prefix, tmp

    def topic(self, what: str) -> str:
        return f"{self.prefix}.{what}"

    async def create(self, topic: str, shards: int = 1) -> None:
        await self.rt.run(self.client.create_stream, topic, shards)

    async def put(self, topic: str, *records: tuple[bytes, str]) -> None:
        await self.rt.run(self.client.put_raw, topic, list(records))

    async def read_all(self, topic: str, count: int) -> list[Record]:
        """Every record of *topic*'s shards from the start, waiting for *count*."""
        with trio.fail_after(TIMEOUT):
            while True:
                got: list[Record] = []
                for shard in await self.rt.run(self.client.list_shards, topic):
                    it = await self.rt.run(
                        self.client.iterator, topic, shard["ShardId"], None, "TRIM_HORIZON"
                    )
                    records, _, _ = await self.rt.run(self.client.get_records, it, 1000)
                    got.extend(records)
                if len(got) >= count:
                    return got
                await trio.sleep(0.1)

    def bridge(self, name: str, **options: Any) -> KinesisBridge:
        options.setdefault("checkpoints", self.tmp / "checkpoints.sqlite")
        options.setdefault("poll_interval", 0.05)
        options.setdefault("discover_interval", 0.5)
        options.setdefault("group", f"{self.prefix}-{name}")
        return KinesisBridge(
            name=name, endpoint_url=ENDPOINT, region=REGION, access_key_id="testing",
            secret_access_key="testing", **options,
        )


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[Raw]:
    client = KinesisClient(
        region=REGION, key_id="testing", secret="testing", endpoint_url=ENDPOINT,
        connect_timeout=5, read_timeout=30, max_attempts=3,
    )
    prefix = f"kt{uuid.uuid4().hex[:10]}"
    async with open_runtime("thread") as rt:
        await rt.run(client.connect)
        r = Raw(rt, client, prefix, tmp_path)
        try:
            yield r
        finally:
            with trio.CancelScope(shield=True):
                for stream in await rt.run(client.list_streams):
                    if stream.startswith(prefix):
                        await rt.run(client.delete_stream, stream)
                await rt.run(client.close)


def collector(n: int) -> tuple[list[Envelope[Any]], trio.Event, Callable[[Envelope[Any]], None]]:
    got: list[Envelope[Any]] = []
    enough = trio.Event()

    def handle(env: Envelope[Any]) -> None:
        got.append(env)
        if len(got) >= n:
            enough.set()

    return got, enough, handle


async def test_round_trip_bus_to_kinesis_to_bus(raw: Raw) -> None:
    topic = raw.topic("order.created")
    got, enough, handle = collector(20)
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="b") as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle)
            async with open_bus(name="a") as a:
                a.topic(topic, Order)
                out = raw.bridge("out", shard_count=2)
                await a.attach(out, export=[f"{raw.prefix}.#"])
                for i in range(20):  # the stream is created by the first export
                    await a.publish(
                        topic, Order(f"o{i}", i), key=f"c{i % 3}",
                        headers={"traceparent": f"00-{i}", "Tenant-Id": "t1"},
                    )
            await b.attach(raw.bridge("in"), import_=[f"{raw.prefix}.#"])
            await enough.wait()
    by_key: dict[str | None, list[int]] = {}
    for e in got:
        by_key.setdefault(e.key, []).append(e.payload.amount)
    assert by_key == {f"c{k}": list(range(k, 20, 3)) for k in range(3)}  # per-key order
    assert all(e.source == "a" and e.topic == topic for e in got)
    assert all(e.headers["x-bus-origin"] == "in" and e.headers["Tenant-Id"] == "t1" for e in got)
    assert sorted(e.headers["traceparent"] for e in got) == sorted(f"00-{i}" for i in range(20))
    assert len({e.id for e in got}) == 20


async def test_cloudevents_sdk_reads_what_the_bridge_wrote(raw: Raw) -> None:
    from cloudevents.core.formats.json import JSONFormat

    topic = raw.topic("order.created")
    with trio.fail_after(TIMEOUT):
        async with open_bus(name="shop") as a:
            a.topic(topic, Order)
            await a.attach(raw.bridge("out"), export=[topic])
            env = await a.publish(topic, Order("o1", 42), key="c1", headers={"traceparent": "00-x"})
        [(_, data, pkey, _)] = await raw.read_all(topic, 1)
    assert pkey == "c1"
    event = JSONFormat().read(None, data)
    attrs = event.get_attributes()
    assert attrs["id"] == env.id and attrs["type"] == topic and attrs["source"] == "shop"
    assert attrs["specversion"] == "1.0" and attrs["partitionkey"] == "c1"
    assert attrs["datacontenttype"] == "application/json" and attrs["traceparent"] == "00-x"
    assert attrs["time"].timestamp() == pytest.approx(env.time, abs=1e-3)
    assert event.get_data() == {"id": "o1", "amount": 42}


async def test_foreign_records_import_with_the_stream_as_topic(raw: Raw) -> None:
    topic = raw.topic("payment.done")
    await raw.create(topic)
    await raw.put(topic, (b'{"id":"p1","amount":7}', "cust-9"), (b'{"id":"p2","amount":8}', "c"))
    got, enough, handle = collector(2)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle)
            await b.attach(raw.bridge("in"), import_=[f"{raw.prefix}.payment.*"])
            await enough.wait()
    assert [e.payload for e in got] == [Order("p1", 7), Order("p2", 8)]
    assert [e.key for e in got] == ["cust-9", "c"]
    assert got[0].id.startswith(f"{topic}/shardId-") and got[0].id != got[1].id
    assert got[0].source == "in" and got[0].time > 0


async def test_a_foreign_cloudevent_keeps_the_records_partition_key(raw: Raw) -> None:
    """A structured CloudEvent from another producer, with no ``partitionkey`` attribute:
    its key is the partition key it was put with, as for a plain record."""
    topic = raw.topic("invoice.paid")
    await raw.create(topic)
    event = {"specversion": "1.0", "id": "inv-1", "source": "billing", "type": "invoice.paid",
             "datacontenttype": "application/json", "data": {"id": "i1", "amount": 3}}
    await raw.put(topic, (msgspec.json.encode(event), "cust-9"))
    got, enough, handle = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle)
            await b.attach(raw.bridge("in"), import_=[topic])
            await enough.wait()
    assert [(e.id, e.key, e.source, e.payload) for e in got] == [
        ("inv-1", "cust-9", "billing", Order("i1", 3))
    ]


async def test_oversized_record_is_dead_lettered_others_delivered(raw: Raw) -> None:
    topic = raw.topic("blob.saved")
    dead, dead_enough, on_dead = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as a:
            a.topic(topic, str)
            a.subscribe(a.dead_letter_topic, on_dead)
            await a.attach(raw.bridge("out"), export=[topic])
            await a.publish(topic, "small-1")
            await a.publish(topic, "x" * (1024 * 1024))
            await a.publish(topic, "small-2")
            await dead_enough.wait()
        records = await raw.read_all(topic, 2)
    assert sorted(msgspec.json.decode(r[1])["data"] for r in records) == ["small-1", "small-2"]
    assert dead[0].headers[H_ORIGINAL_TOPIC] == topic
    assert "exceeds Kinesis's limit" in dead[0].headers[H_ERROR]


async def test_missing_stream_without_create_streams_is_dead_lettered(raw: Raw) -> None:
    topic = raw.topic("nowhere")
    dead, dead_enough, on_dead = collector(1)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as a:
            a.topic(topic, str)
            a.subscribe(a.dead_letter_topic, on_dead)
            await a.attach(raw.bridge("out", create_streams=False), export=[topic])
            await a.publish(topic, "lost?")
            await dead_enough.wait()
    assert "does not exist" in dead[0].headers[H_ERROR]


async def test_checkpoint_only_done_and_resume_after_restart(raw: Raw) -> None:
    topic = raw.topic("order.durable")
    await raw.create(topic)
    await raw.put(topic, *[(msgspec.json.encode(Order(f"o{i}", i)), "k") for i in range(6)])
    records = await raw.read_all(topic, 6)
    seqs = [r[0] for r in records]
    stuck = trio.Event()
    handled: list[int] = []

    async def handle(env: Envelope[Order]) -> None:
        if env.payload.amount == 3:
            stuck.set()
            await trio.sleep_forever()  # never done: neither it nor what follows is saved
        handled.append(env.payload.amount)

    path = raw.tmp / "checkpoints.sqlite"
    with trio.fail_after(TIMEOUT):
        async with open_bus(drain_timeout=0.5) as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle)  # one at a time, in order
            await b.attach(raw.bridge("in", group="g1"), import_=[topic])
            await stuck.wait()
        store = SQLiteCheckpointStore(path)
        [(shard, saved)] = (await trio.to_thread.run_sync(store.load, "g1", topic)).items()
        store.close()
        assert handled == [0, 1, 2]
        assert saved == seqs[2]  # the last record below which everything is done
        got, enough, handle2 = collector(3)
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle2)
            await b.attach(raw.bridge("in", group="g1"), import_=[topic])
            await enough.wait()
            await trio.sleep(0.3)  # nothing else may come
        store = SQLiteCheckpointStore(path)
        after = await trio.to_thread.run_sync(store.load, "g1", topic)
        store.close()
    assert [e.payload.amount for e in got] == [3, 4, 5]  # resumed after the checkpoint
    assert after == {shard: seqs[5]}


async def test_resharding_reads_parents_before_children(raw: Raw) -> None:
    topic = raw.topic("order.resharded")
    await raw.create(topic, shards=1)
    n = 40
    before = [(msgspec.json.encode(Order(f"b{i}", i)), f"k{i % 4}") for i in range(n)]
    await raw.put(topic, *before)
    await raw.rt.run(raw.client.split_shard, topic, "shardId-000000000000")
    # Written to the children before the bridge reads anything: read the children
    # alongside their parent and keys come out of order.
    after = [(msgspec.json.encode(Order(f"a{i}", n + i)), f"k{i % 4}") for i in range(n)]
    await raw.put(topic, *after)
    got, enough, handle = collector(2 * n)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as b:
            b.topic(topic, Order)
            b.subscribe(topic, handle)
            await b.attach(raw.bridge("in", records_per_call=5), import_=[topic])
            await enough.wait()
        shards = await raw.rt.run(raw.client.list_shards, topic)
    assert len(shards) == 3
    for k in range(4):
        amounts = [e.payload.amount for e in got if e.key == f"k{k}"]
        assert amounts == list(range(k, 2 * n, 4)), amounts  # the parent's records first
    store = SQLiteCheckpointStore(raw.tmp / "checkpoints.sqlite")
    saved = await trio.to_thread.run_sync(store.load, f"{raw.prefix}-in", topic)
    store.close()
    assert saved["shardId-000000000000"] == "SHARD_END"


async def test_admin_and_health(raw: Raw) -> None:
    b = raw.bridge("adm")
    assert not await b.health()  # not open
    topic = raw.topic("order.admin")
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            await bus.attach(b, export=["nothing.here"])
            assert await b.health()
            await b.create_topic(topic, shard_count=3)
            await b.create_topic(topic)  # exists: fine
            assert topic in await b.list_topics()
            assert len(await b.shards(topic)) == 3
            await b.delete_topic(topic)
            await b.delete_topic(topic)  # gone: fine
            assert topic not in await b.list_topics()
    assert not await b.health()  # closed


async def test_unreachable_endpoint_and_secret_never_shown() -> None:
    secret = "hunter2-" + uuid.uuid4().hex[:6]
    b = KinesisBridge(
        name="down", endpoint_url="http://127.0.0.1:1", access_key_id="AKIA",
        secret_access_key=secret, connect_timeout=1, max_attempts=1,
    )
    assert secret not in repr(b)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            with pytest.raises(BackendUnavailableError) as info:
                await bus.attach(b, export=["order.*"])
    assert "down" in str(info.value)
    cause: BaseException | None = info.value
    while cause is not None:
        assert secret not in str(cause) and secret not in repr(cause)
        cause = cause.__cause__ or cause.__context__


async def test_no_credentials_is_a_configuration_error_naming_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """botocore finds no credentials and fails before sending anything: that is the
    caller's setting to fix, not an unreachable endpoint (the endpoint here answers)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # loopback only: no IMDS
    b = KinesisBridge(name="nokeys", endpoint_url=ENDPOINT, region=REGION)
    with trio.fail_after(TIMEOUT):
        async with open_bus() as bus:
            with pytest.raises(ConfigurationError) as info:
                await bus.attach(b, export=["order.*"])
    message = str(info.value)
    assert message.startswith("Kinesis bridge 'nokeys': no usable AWS credentials ("), message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message and "AWS_PROFILE" in message
    assert "unreachable" not in message and "cannot reach" not in message


def test_benchmark_cases_run_and_check_their_counts() -> None:
    """``benchmarks.bridges_kinesis``: every case moves a few records and verifies them
    (a bench that silently measured nothing would be worse than none)."""
    from benchmarks import bridges_kinesis as bk

    results = {}
    for case in bk.cases():
        sample = case.run(20)
        assert sample.count == 20 and sample.seconds > 0, case.name
        results[case.name] = {"median": sample.rate}
    assert set(bk.ratios(results)) == {"kinesis_egress_vs_raw", "kinesis_ingress_vs_raw"}
