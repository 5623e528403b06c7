"""Kinesis through the bridge against plain aioboto3 in plain asyncio, same emulator, same run.

Four cases, rounds interleaved by the harness, each round on fresh streams of
``SHARDS`` shards (deleted afterwards), moving the same records: the structured
CloudEvent the bridge writes (``bridges.kinesis._wire.encode``) around the
benchmarks' payload, partition key = the message's key:

- ``kinesis_raw_egress``: aioboto3 on ``asyncio.run``, ``PutRecords`` of ``BATCH``
  records at a time, one call after the other (what keeps a key's order, as the bridge
  does); timed from the first call to the last answer, after one warm-up call;
- ``kinesis_bridge_egress``: ``bus.publish`` of the same messages to a bus exporting
  through :class:`~bridges.kinesis.KinesisBridge` (``batch=BATCH``); timed until
  ``bus.drain()`` returned, i.e. every record confirmed; afterwards the stream must hold
  every record, else the case fails;
- ``kinesis_raw_ingress``: the stream is filled first (untimed); then aioboto3 reads every
  shard concurrently (``GetShardIterator`` at ``TRIM_HORIZON``, ``GetRecords`` of up to
  ``LIMIT``), decodes each record (envelope and payload in one msgspec pass, its best
  way), and saves each shard's last sequence number in SQLite at the end (the bridge
  checkpoints too); timed from ``ListShards`` (connected) to that last save;
- ``kinesis_bridge_ingress``: the same backlog imported by the bridge into a bus whose
  subscriber counts it, checkpoints in SQLite; timed from ``attach`` returning (connected,
  the stream found) to the last message handled. Both include the emulator's time to
  serve ``GetRecords``, which dominates: the ratio is what a user of this emulator sees.

kinesis-mock is slow (hundreds to a few thousand records/s), so these move
``KINESIS_SCALE`` of the suite's message count. For ``bus bench bridges``: :func:`cases`
and :data:`RATIOS` fold into ``benchmarks/bridges.py`` as they are.

Run ``python -m benchmarks.bridges_kinesis [--messages N] [--rounds R] [--json PATH]``
with ``make brokers-env`` set. Prints rates and ``kinesis_egress_vs_raw``,
``kinesis_ingress_vs_raw``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import trio

from ._harness import Case, CaseFailed, Progress, Sample, Size, run_rounds
from ._messages import Reading as Payload  # the bridge suite's ~200 B message
from ._messages import reading as _make

ENDPOINT = os.environ.get("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568")
REGION = os.environ.get("AWS_REGION", "us-east-1")
KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
SECRET = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
SHARDS = 2
BATCH = 500
"""Records per ``PutRecords`` (Kinesis's most) and the bus's ``attach(batch=...)``."""
LIMIT = 10_000
"""Records per ``GetRecords`` (Kinesis's most), for raw and bridge."""
KEYS = 64
TOPIC = "bench.reading"
TIMEOUT = 300.0
KINESIS_SCALE = 0.05
"""Fraction of the bridge suite's message count (kinesis-mock is slow)."""

RATIOS: dict[str, tuple[str, str]] = {
    "kinesis_egress_vs_raw": ("kinesis_bridge_egress", "kinesis_raw_egress"),
    "kinesis_ingress_vs_raw": ("kinesis_bridge_ingress", "kinesis_raw_ingress"),
}


class _Event(msgspec.Struct):
    """What a raw reader needs of the structured CloudEvent: its data, typed."""

    id: str
    data: Payload


_decode_event = msgspec.json.Decoder(_Event).decode
_encode = msgspec.json.encode


def _key(n: int) -> str:
    return f"k{n % KEYS}"


def _record(n: int) -> tuple[bytes, str]:
    """Record *n* as the bridge writes it: (structured CloudEvent, partition key)."""
    from bridges.kinesis._wire import encode
    from bus import Envelope

    obj = _make(n, time.time_ns())
    env = Envelope(id=f"{n:x}", topic=TOPIC, payload=obj, key=_key(n), time=time.time(),
                   source="bench")
    return encode(env, _encode(obj)), _key(n)


def _asyncio_run(coro: Any) -> Any:
    # Explicitly a selector loop: an imported trio_asyncio would swap the default.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def _client() -> Any:
    import aioboto3

    session = aioboto3.Session(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
    )
    return session.client("kinesis", endpoint_url=ENDPOINT)


def _admin(fn_name: str, *args: Any) -> Any:
    """Run one ``KinesisClient`` admin call on a fresh loop."""
    from bridges.kinesis._client import KinesisClient

    async def main() -> Any:
        client = KinesisClient(region=REGION, key_id=KEY_ID, secret=SECRET,
                               endpoint_url=ENDPOINT, connect_timeout=5, read_timeout=60,
                               max_attempts=3)
        await client.connect()
        try:
            return await getattr(client, fn_name)(*args)
        finally:
            await client.close()

    return _asyncio_run(main())


def _stream() -> str:
    stream = f"bench-{uuid.uuid4().hex[:10]}.{TOPIC}"
    _admin("create_stream", stream, SHARDS)
    return stream


def _count(stream: str) -> int:
    async def main() -> int:
        async with _client() as k:
            total = 0
            for shard in (await k.list_shards(StreamName=stream))["Shards"]:
                it = (await k.get_shard_iterator(
                    StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                ))["ShardIterator"]
                while it:
                    resp = await k.get_records(ShardIterator=it, Limit=LIMIT)
                    total += len(resp["Records"])
                    if not resp["Records"]:
                        break
                    it = resp.get("NextShardIterator")
            return total

    return int(_asyncio_run(main()))


async def _put_all(k: Any, stream: str, records: list[tuple[bytes, str]]) -> None:
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        resp = await k.put_records(
            StreamName=stream, Records=[{"Data": d, "PartitionKey": p} for d, p in chunk]
        )
        if resp.get("FailedRecordCount"):
            raise CaseFailed(f"{resp['FailedRecordCount']} records failed in PutRecords")


def _fill(n: int) -> str:
    stream = _stream()
    records = [_record(i) for i in range(n)]

    async def main() -> None:
        async with _client() as k:
            await _put_all(k, stream, records)

    _asyncio_run(main())
    return stream


# -- plain aioboto3 -------------------------------------------------------------------


def raw_egress(n: int) -> Sample:
    stream = _stream()
    try:
        records = [_record(i) for i in range(n)]

        async def main() -> float:
            async with _client() as k:
                await _put_all(k, stream, [_record(-1)])
                t0 = time.perf_counter()
                await _put_all(k, stream, records)
                return time.perf_counter() - t0

        seconds = _asyncio_run(main())
        if (got := _count(stream)) != n + 1:
            raise CaseFailed(f"{got} of {n + 1} records in the stream")
        return Sample(n, seconds)
    finally:
        _admin("delete_stream", stream)


def raw_ingress(n: int) -> Sample:
    stream = _fill(n)
    path = Path(tempfile.mkdtemp()) / "raw.sqlite"
    try:

        async def main() -> float:
            count = 0
            last: dict[str, str] = {}
            async with _client() as k:
                await k.list_streams(Limit=1)  # connected, like an attached bridge
                t0 = time.perf_counter()
                shards = [s["ShardId"] for s in (await k.list_shards(StreamName=stream))["Shards"]]
                done = asyncio.Event()

                async def read(shard: str) -> None:
                    nonlocal count
                    it = (await k.get_shard_iterator(
                        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
                    ))["ShardIterator"]
                    while not done.is_set():
                        resp = await k.get_records(ShardIterator=it, Limit=LIMIT)
                        for rec in resp["Records"]:
                            _decode_event(rec["Data"])
                            last[shard] = rec["SequenceNumber"]
                        count += len(resp["Records"])
                        if count >= n:
                            done.set()
                            return
                        if not resp["Records"]:
                            await asyncio.sleep(0.05)
                        it = resp["NextShardIterator"]

                tasks = [asyncio.create_task(read(s)) for s in shards]
                try:
                    # not gathered: a reader still waiting for an empty GetRecords answer
                    # must not count once every record is in
                    await asyncio.wait_for(done.wait(), TIMEOUT)
                    read_s = time.perf_counter() - t0
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                t_save = time.perf_counter()
                db = sqlite3.connect(path)
                with db:
                    db.execute("CREATE TABLE IF NOT EXISTS c (shard TEXT PRIMARY KEY, seq TEXT)")
                    db.executemany("INSERT OR REPLACE INTO c VALUES (?, ?)", list(last.items()))
                db.close()
                return read_s + time.perf_counter() - t_save

        return Sample(n, _asyncio_run(main()))
    finally:
        _admin("delete_stream", stream)


# -- the bridge -------------------------------------------------------------------------


def _bridge(name: str, **options: Any) -> Any:
    from bridges.kinesis import KinesisBridge

    return KinesisBridge(
        name=name, region=REGION, access_key_id=KEY_ID, secret_access_key=SECRET,
        endpoint_url=ENDPOINT, shard_count=SHARDS, records_per_call=LIMIT, **options,
    )


def bridge_egress(n: int, runtime: str = "thread") -> Sample:
    from bus import open_bus

    stream = _stream()
    try:

        async def main() -> float:
            async with open_bus(name="bench") as bus:
                bus.topic(stream, Payload)
                await bus.attach(_bridge("out", runtime=runtime), export=[stream], batch=BATCH)
                await bus.publish(stream, _make(-1), key=_key(-1), confirm=True)
                t0 = time.perf_counter()
                for i in range(n):
                    await bus.publish(stream, _make(i, time.time_ns()), key=_key(i))
                await bus.drain()
                return time.perf_counter() - t0

        seconds = trio.run(main)
        if (got := _count(stream)) != n + 1:
            raise CaseFailed(f"{got} of {n + 1} records in the stream")
        return Sample(n, seconds)
    finally:
        _admin("delete_stream", stream)


def bridge_ingress(n: int, runtime: str = "thread") -> Sample:
    from bus import Envelope, open_bus

    stream = _fill(n)
    path = Path(tempfile.mkdtemp()) / "bridge.sqlite"
    try:

        async def main() -> float:
            done = trio.Event()
            count = 0

            def handle(env: Envelope[Any]) -> None:
                nonlocal count
                count += 1
                if count >= n:
                    done.set()

            async with open_bus(name="bench") as bus:
                bus.topic(stream, Payload)
                bus.subscribe(stream, handle)
                await bus.attach(
                    _bridge("in", runtime=runtime, checkpoints=path, poll_interval=0.05),
                    import_=[stream],
                )
                # attached: connected and the stream found, its shards not read yet
                t0 = time.perf_counter()
                with trio.fail_after(TIMEOUT):
                    await done.wait()
                return time.perf_counter() - t0

        return Sample(n, trio.run(main))
    finally:
        _admin("delete_stream", stream)


def cases() -> list[Case]:
    s = KINESIS_SCALE
    return [
        Case("kinesis_raw_egress", "aioboto3 PutRecords x500, plain asyncio", "msg/s",
             raw_egress, scale=s),
        Case("kinesis_bridge_egress", "bus -> KinesisBridge export, PutRecords", "msg/s",
             bridge_egress, scale=s),
        Case("kinesis_raw_ingress", "aioboto3 GetRecords + decode, plain asyncio", "msg/s",
             raw_ingress, scale=s),
        Case("kinesis_bridge_ingress", "KinesisBridge import -> bus handler, checkpoints",
             "msg/s", bridge_ingress, scale=s),
    ]


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, (ours, theirs) in RATIOS.items():
        a, b = results[ours]["median"], results[theirs]["median"]
        out[name] = round(a / b, 3) if a and b else None
    return out


def main(argv: list[str] | None = None) -> int:
    from .local import quiet_logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000,
                        help=f"the suite's count; these cases move {KINESIS_SCALE:g} of it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    size = Size(messages=args.messages, rounds=args.rounds)
    all_cases = cases()
    with quiet_logs():
        run_rounds(all_cases, size, Progress(total=len(all_cases) * size.rounds))
    results = {case.name: case.result() for case in all_cases}
    report: dict[str, Any] = {
        "messages": all_cases[0].messages(size), "rounds": size.rounds, "cases": results,
        "ratios": ratios(results),
    }
    for name, res in results.items():
        median = res["median"]
        shown = f"{median:10.0f} {res['unit']}" if median else f"{res['error']}"
        print(f"{name:<26} {shown}   rounds {res['rounds']}")
    for name, value in report["ratios"].items():
        print(f"{name:<26} {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0 if all(res["ok"] for res in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
