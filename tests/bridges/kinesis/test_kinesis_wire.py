"""The Kinesis bridge without a broker: the record format, the limits, checkpoints, errors."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from bridges.kinesis import FEATURES, KinesisBridge, MemoryCheckpointStore, SQLiteCheckpointStore
from bridges.kinesis._checkpoints import SHARD_END, SequenceTracker
from bridges.kinesis._errors import error_code, translate
from bridges.kinesis._wire import (
    MAX_CALL_BYTES,
    MAX_CALL_RECORDS,
    chunks,
    decode,
    encode,
    partition_key,
)
from bus import BackendError, BackendUnavailableError, ConfigurationError, Envelope


def envelope(**kw: Any) -> Envelope[Any]:
    fields: dict[str, Any] = {
        "id": "e1", "topic": "order.created", "payload": None, "key": "c1",
        "headers": {}, "time": 1_700_000_000.25, "attempt": 2, "source": "shop",
    }
    fields.update(kw)
    return Envelope(**fields)


def test_record_is_a_structured_cloudevent_the_sdk_reads() -> None:
    from cloudevents.core.formats.json import JSONFormat

    env = envelope(headers={"traceparent": "00-abc", "x-bus-origin": "other", "Tenant": "t"})
    data = encode(env, b'{"id":"o1","amount":42}')
    event = JSONFormat().read(None, data)
    attrs = event.get_attributes()
    assert attrs["specversion"] == "1.0" and attrs["id"] == "e1"
    assert attrs["type"] == "order.created" and attrs["source"] == "shop"
    assert attrs["partitionkey"] == "c1" and attrs["deliveryattempt"] == 2
    assert attrs["datacontenttype"] == "application/json"
    assert attrs["time"].timestamp() == pytest.approx(1_700_000_000.25)
    assert attrs["traceparent"] == "00-abc"  # a valid attribute name: its own extension
    # names CloudEvents does not allow travel inside one string extension
    assert json.loads(attrs["busheaders"]) == {"x-bus-origin": "other", "Tenant": "t"}
    assert event.get_data() == {"id": "o1", "amount": 42}


def test_record_round_trip() -> None:
    env = envelope(key=None, headers={"n": "5", "x-y": "z", "id": "not-the-id"})
    incoming, payload = decode(
        "order.created", encode(env, b"[1, 2]"), fallback_id="s/sh/1",
        partition_key="e1", arrival=5.0,
    )
    assert payload == b"[1, 2]"
    assert incoming.cloudevent and incoming.id == "e1" and incoming.key is None
    assert incoming.headers == {"n": "5", "x-y": "z", "id": "not-the-id"}
    assert incoming.time == pytest.approx(env.time) and incoming.attempt == 2
    assert incoming.source == "shop" and incoming.type == "order.created"


@pytest.mark.parametrize(
    "data", [b'{"id": "o1", "amount": 1}', b"\xff not json", b"[1]", b"7", b'{"data": 1}']
)
def test_foreign_records_are_the_payload(data: bytes) -> None:
    incoming, payload = decode(
        "payment.done", data, fallback_id="stream/shard-1/42", partition_key="p7", arrival=3.5
    )
    assert payload == data
    assert not incoming.cloudevent
    assert (incoming.topic, incoming.id, incoming.key, incoming.time) == (
        "payment.done", "stream/shard-1/42", "p7", 3.5,
    )
    assert incoming.source is None and incoming.headers == {}


def test_data_base64_and_missing_data() -> None:
    event = {"specversion": "1.0", "id": "x", "source": "s", "type": "t", "data_base64": "AAE="}
    _, payload = decode("t", json.dumps(event).encode(), fallback_id="f",
                             partition_key="k", arrival=0)
    assert payload == b"\x00\x01"
    del event["data_base64"]
    _, payload = decode("t", json.dumps(event).encode(), fallback_id="f",
                             partition_key="k", arrival=0)
    assert payload == b"null"


def test_a_cloudevent_without_partitionkey_keeps_the_records_partition_key() -> None:
    foreign = json.dumps({"specversion": "1.0", "id": "ev-1", "source": "billing",
                          "type": "invoice.paid", "data": {"n": 1}}).encode()
    incoming, payload = decode("invoice.paid", foreign, fallback_id="s/sh/1",
                                    partition_key="cust-9", arrival=0)
    assert incoming.cloudevent and incoming.key == "cust-9" and payload == b'{"n": 1}'
    # our own keyless envelopes were written with their id (or its SHA-256) as partition
    # key: they come back without a key, as they left
    for env in (envelope(key=None), envelope(key=None, id="i" * 300)):
        incoming, _ = decode("order.created", encode(env, b"1"), fallback_id="f",
                                  partition_key=partition_key(env), arrival=0)
        assert incoming.key is None
    incoming, _ = decode("order.created", encode(envelope(key="c1"), b"1"),
                              fallback_id="f", partition_key="c1", arrival=0)
    assert incoming.key == "c1"


def test_partition_key() -> None:
    assert partition_key(envelope(key="k")) == "k"
    assert partition_key(envelope(key=None)) == "e1"
    long = partition_key(envelope(key="x" * 300))
    assert len(long) == 64 and long == partition_key(envelope(key="x" * 300, id="other"))


def test_chunks_keep_within_the_limits_of_a_call() -> None:
    assert [list(r) for r in chunks([10] * 5, max_records=2)] == [[0, 1], [2, 3], [4]]
    ranges = list(chunks([1000] * 1200))
    assert [len(r) for r in ranges] == [MAX_CALL_RECORDS, MAX_CALL_RECORDS, 200]
    mib = 1024 * 1024
    ranges = list(chunks([mib] * 12))
    assert [len(r) for r in ranges] == [5, 5, 2]
    assert all(sum(mib for _ in r) <= MAX_CALL_BYTES for r in ranges)
    assert list(chunks([])) == []


def test_sequence_tracker_saves_only_what_is_done_below() -> None:
    t: SequenceTracker[str] = SequenceTracker()
    idx = [t.started("s", seq) for seq in ("100", "205", "310", "999")]
    t.done("s", idx[1])
    assert t.to_checkpoint() == {}  # 100 is not done: nothing may be saved
    t.done("s", idx[0])
    assert t.to_checkpoint() == {"s": "205"}
    t.done("s", idx[3])
    assert t.to_checkpoint() == {} and t.in_flight("s") == 1
    t.done("s", idx[2])
    assert t.to_checkpoint() == {"s": "999"} and t.in_flight() == 0


def test_sequence_tracker_abandoned_record_is_never_passed() -> None:
    t: SequenceTracker[str] = SequenceTracker()
    a, b = t.started("s", "10"), t.started("s", "20")
    t.done("s", a)
    t.abandon("s", b)  # not delivered: the checkpoint stays before it
    assert t.to_checkpoint() == {"s": "10"}
    c = t.started("s", "20")  # read again, delivered this time
    t.done("s", c)
    assert t.to_checkpoint() == {"s": "20"}
    first = SequenceTracker[str]()
    first.abandon("x", first.started("x", "5"))
    assert first.to_checkpoint() == {}  # nothing before it: nothing to save


def test_sqlite_store_survives_reopening(tmp_path: Any) -> None:
    path = tmp_path / "deep" / "ck.sqlite"
    store = SQLiteCheckpointStore(path)
    store.save("g", {("s", "shard-0"): "123", ("s", "shard-1"): SHARD_END})
    store.save("g", {("s", "shard-0"): "456"})
    store.save("other", {("s", "shard-0"): "1"})
    store.close()
    again = SQLiteCheckpointStore(path)
    assert again.load("g", "s") == {"shard-0": "456", "shard-1": SHARD_END}
    assert again.load("g", "t") == {} and again.load("other", "s") == {"shard-0": "1"}
    again.close()
    memory = MemoryCheckpointStore()
    memory.save("g", {("s", "a"): "1"})
    assert memory.load("g", "s") == {"a": "1"} and memory.load("h", "s") == {}


def _client_error(code: str, message: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, "PutRecords")


def test_errors_are_translated_without_the_secret() -> None:
    from botocore.exceptions import EndpointConnectionError

    down = translate(EndpointConnectionError(endpoint_url="http://h:1"), "k", ("s3cr3t",))
    assert isinstance(down, BackendUnavailableError) and "'k'" in str(down)
    denied = _client_error("UnrecognizedClientException", "bad key s3cr3t")
    err = translate(denied, "k", ("s3cr3t",))
    assert type(err) is ConfigurationError and "s3cr3t" not in str(err) and "***" in str(err)
    assert "AWS refused the credentials" in str(err) and "AWS_ACCESS_KEY_ID" in str(err)
    gone = translate(_client_error("ResourceNotFoundException", "no stream"), "k")
    assert type(gone) is BackendError
    throttled = translate(_client_error("LimitExceededException", "slow down"), "k")
    assert isinstance(throttled, BackendUnavailableError)
    try:
        raise err from denied
    except ConfigurationError as exc:
        assert error_code(exc) == "UnrecognizedClientException"


def test_missing_credentials_say_what_to_set() -> None:
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError, ProfileNotFound

    for exc in (NoCredentialsError(), ProfileNotFound(profile="prod"),
                PartialCredentialsError(provider="env", cred_var="aws_secret_access_key")):
        err = translate(exc, "k")
        assert type(err) is ConfigurationError, exc
        assert str(err).startswith(f"Kinesis bridge 'k': no usable AWS credentials "
                                   f"({type(exc).__name__}: {exc}); set AWS_ACCESS_KEY_ID")
        assert "AWS_PROFILE" in str(err)


def test_bridge_repr_and_features(monkeypatch: pytest.MonkeyPatch) -> None:
    b = KinesisBridge(secret_access_key="hunter2", access_key_id="AKIA", region="eu-west-1",
                      checkpoints=MemoryCheckpointStore())
    assert "hunter2" not in repr(b) and "eu-west-1" in repr(b) and b.group == "kinesis"
    assert b.topic_of("order.created") == "order.created"
    p = KinesisBridge(stream_prefix="shop-", checkpoints=MemoryCheckpointStore())
    assert p.stream_of("a.b") == "shop-a.b" and p.topic_of("other") is None
    assert FEATURES.consumer_groups and not FEATURES.headers
    assert FEATURES.max_message_bytes == 1024 * 1024
    with pytest.raises(Exception, match="shard_count"):
        KinesisBridge(shard_count=0)
    assert msgspec.json.decode(encode(envelope(), b"1"))["data"] == 1


async def test_checkpointer_saves_done_positions_never_backwards() -> None:
    from bridges.kinesis._checkpointer import Checkpointer
    from bus.abc import Delivery

    store = MemoryCheckpointStore()
    cp = Checkpointer(store, "g", interval=0.01)
    key = ("s", "shard-0")
    cp.resumed(key, "50")  # what the store held when the reader started
    first = [cp.delivered(key, seq) for seq in ("60", "70")]
    cp.done(key, first[1], Delivery())
    assert await cp.flush() == {}  # 60 is not done
    cp.done(key, first[0], Delivery())
    assert await cp.flush() == {key: "70"}
    # a restarted run delivers 60 and 70 again: finishing them saves nothing lower
    again = cp.delivered(key, "60")
    cp.done(key, again, Delivery())
    assert await cp.flush() == {} and store.load("g", "s") == {"shard-0": "70"}


async def test_checkpointer_shard_end_waits_for_every_record() -> None:
    from bridges.kinesis._checkpointer import Checkpointer
    from bus.abc import Delivery

    store = MemoryCheckpointStore()
    cp = Checkpointer(store, "g", interval=0.01)
    key = ("s", "shard-0")
    index = cp.delivered(key, "10")
    ended = trio.Event()

    async def end() -> None:
        await cp.shard_ended(key)
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(end)
        await trio.testing.wait_all_tasks_blocked()
        assert not ended.is_set()  # record 10 is not done: the children must wait
        cp.done(key, index, Delivery())
        with trio.fail_after(5):
            await ended.wait()
    assert store.load("g", "s") == {"shard-0": SHARD_END}
    late = cp.delivered(key, "99")  # never overwrites SHARD_END
    cp.done(key, late, Delivery())
    await cp.close()
    assert store.load("g", "s") == {"shard-0": SHARD_END}


def test_leases_share_shards_fairly_and_expire() -> None:
    from bridges.kinesis._leases import Lease, claim

    shards = ["s0", "s1", "s2"]
    first = claim({}, {}, "a", shards, ttl=10, now=0)
    assert first.held == shards and first.limit == 3  # alone: everything
    leases = dict(first.leases)
    second = claim(first.members, leases, "b", shards, ttl=10, now=1)
    assert second.held == [] and second.limit == 2  # a holds them all, unexpired
    members = second.members
    again = claim(members, leases, "a", shards, ttl=10, now=2)
    assert again.limit == 2 and again.held == shards  # a sees b: gives one up (bridge side)
    leases = {s: Lease("a", 12) for s in ("s0", "s1")}  # a released s2
    third = claim(members, leases, "b", shards, ttl=10, now=3)
    assert third.held == ["s2"]
    # a stops renewing: after its ttl, b takes everything
    late = claim({"b": 13}, {**leases, **third.leases}, "b", shards, ttl=10, now=20)
    assert late.held == shards and set(late.members) == {"b"}


def test_memory_and_sqlite_stores_hold_leases(tmp_path: Any) -> None:
    for store in (MemoryCheckpointStore(), SQLiteCheckpointStore(tmp_path / "l.sqlite")):
        assert store.claim("g", "st", "a", ["x", "y"], 10) == (["x", "y"], 2)
        assert store.claim("g", "st", "b", ["x", "y"], 10) == ([], 1)
        store.release("g", "st", "a", ["y"])
        assert store.claim("g", "st", "b", ["x", "y"], 10) == (["y"], 1)
        store.release("g", "st", "a", None)  # a leaves the group
        assert store.claim("g", "st", "b", ["x", "y"], 10) == (["x", "y"], 2)
        store.close()
