"""Redis Streams cases: the bridge against raw redis-py (asyncio) on the same server.

Every case moves the same ~200 B msgspec JSON messages (:class:`Reading`, 64 keys)
through a fresh stream, deleted after the round. Raw redis-py runs in plain asyncio (an
``asyncio.SelectorEventLoop``), its own best way: pipelines.

- **egress** (after one confirmed warm-up entry; timed from the first publish to the
  last answer): raw is one pipeline of ``BATCH`` ``XADD`` after the other, each entry
  with the fields the bridge writes (``data``, the CloudEvents ``ce_`` fields,
  ``content-type``); the bridge: ``bus.publish`` of each message into a bus exporting
  through ``RedisBridge`` (``batch=BATCH``), timed until ``bus.drain()`` returned, i.e.
  every pipeline answered;
- **ingress** (the stream is filled first, untimed; timed from the first entry in hand
  to the last one decoded and acknowledged): raw is a loop of ``XREADGROUP COUNT
  READ`` in a group, decoding each entry, and one ``XACK`` per read; the bridge
  (``batch=READ``, ``initial_position="earliest"``) imports into a bus whose subscriber
  counts them, timed until its last ``XACK`` was answered.

The server is the harness's: append-only file with ``appendfsync always``, so every
write (an ``XADD`` pipeline, an ``XACK``) waits for an fsync, for both sides alike.

:func:`cases` and ``RATIOS`` are folded into ``benchmarks/bridges.py``; ``python -m
benchmarks._redis_cases [messages] [rounds]`` runs them alone, rounds interleaved.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ._harness import Case, CaseFailed, Sample

__all__ = [
    "CASES", "RATIOS", "bridge_egress", "bridge_ingress", "cases", "raw_egress", "raw_ingress",
]

URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
BATCH = 256
READ = 1000
KEYS = 64
BUS_TOPIC = "reading"
TIMEOUT = 120.0


class Reading(msgspec.Struct):
    """About 200 bytes of JSON, as the other bridge benchmarks send."""

    n: int
    t: int
    key: str
    sensor: str
    unit: str
    value: float
    note: str


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Reading)
NOTE = "x" * 96


def reading(n: int) -> Reading:
    return Reading(
        n, time.time_ns(), f"k{n % KEYS}", f"sensor-{n % 997:04d}", "celsius", 21.5, NOTE
    )


def _fields(n: int, obj: Reading, stream: str) -> dict[str, bytes]:
    """The fields the bridge writes for one envelope (CloudEvents ``ce_`` fields)."""
    return {
        "data": _encode(obj), "ce_specversion": b"1.0", "ce_id": f"bench-{n}".encode(),
        "ce_source": b"bench", "ce_type": stream.encode(),
        "ce_time": b"2026-01-01T00:00:00Z", "ce_deliveryattempt": b"1",
        "content-type": b"application/json", "ce_partitionkey": obj.key.encode(),
    }


def _asyncio(make: Callable[[Any], Awaitable[Any]]) -> Any:
    """``await make(client)`` in plain asyncio with a fresh redis-py client."""
    import redis.asyncio

    async def main() -> Any:
        client = redis.asyncio.from_url(URL)
        try:
            return await make(client)
        finally:
            await client.aclose()

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(main())


async def _add(client: Any, stream: str, first: int, count: int) -> int:
    """XADD messages first..first+count in pipelines of BATCH; how many got an id."""
    ids = 0
    for start in range(first, first + count, BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(first + count, start + BATCH)):
                pipe.xadd(stream, _fields(n, reading(n), stream))
            ids += sum(1 for answer in await pipe.execute() if answer)
    return ids


def _stream() -> str:
    return f"bench{uuid.uuid4().hex[:10]}.{BUS_TOPIC}"


def _delete(stream: str) -> None:
    async def delete(client: Any) -> None:
        await client.delete(stream)

    _asyncio(delete)


def _length(stream: str) -> int:
    async def length(client: Any) -> int:
        return int(await client.xlen(stream))

    return int(_asyncio(length))


def raw_egress(n: int) -> Sample:
    stream = _stream()

    async def run(client: Any) -> tuple[int, float]:
        await _add(client, stream, -1, 1)
        t0 = time.perf_counter()
        taken = await _add(client, stream, 0, n)
        return taken, time.perf_counter() - t0

    try:
        taken, seconds = _asyncio(run)
    finally:
        _delete(stream)
    if taken != n:
        raise CaseFailed(f"{taken} of {n} entries added")
    return Sample(n, seconds)


def _bridge(name: str, **options: Any) -> Any:
    from bridges.redis import RedisBridge

    return RedisBridge(URL, name=name, group="bench", **options)


def bridge_egress(n: int, runtime: str = "thread") -> Sample:
    from bus import open_bus

    stream = _stream()

    async def main() -> float:
        async with open_bus(name="bench") as bus:
            bus.topic(stream, Reading)
            await bus.attach(_bridge("out", runtime=runtime), export=[stream], batch=BATCH)
            obj = reading(-1)
            await bus.publish(stream, obj, key=obj.key, confirm=True)
            t0 = time.perf_counter()
            for i in range(n):
                obj = reading(i)
                await bus.publish(stream, obj, key=obj.key)
            await bus.drain()
            return time.perf_counter() - t0

    try:
        seconds = trio.run(main)
        stored = _length(stream)
    finally:
        _delete(stream)
    if stored != n + 1:
        raise CaseFailed(f"{stored} entries on the stream, {n + 1} published")
    return Sample(n, seconds)


def _fill(stream: str, n: int) -> None:
    async def fill(client: Any) -> None:
        await _add(client, stream, 0, n)

    _asyncio(fill)


def raw_ingress(n: int) -> Sample:
    stream = _stream()

    async def run(client: Any) -> tuple[float, int]:
        await client.xgroup_create(stream, "bench", id="0")
        seen, t0 = 0, 0.0
        deadline = time.perf_counter() + TIMEOUT
        while seen < n:
            if time.perf_counter() > deadline:
                raise CaseFailed(f"only {seen} of {n} entries in {TIMEOUT}s")
            answer = await client.xreadgroup("bench", "raw", {stream: ">"}, count=READ,
                                             block=1000)
            if not answer:
                continue
            if not seen:
                t0 = time.perf_counter()  # as the bridge's: from the first entry in hand
            entries = answer[0][1]
            for _entry_id, fields in entries:
                _decoder.decode(fields[b"data"])
            await client.xack(stream, "bench", *[entry_id for entry_id, _ in entries])
            seen += len(entries)
        seconds = time.perf_counter() - t0
        pending = int((await client.xpending(stream, "bench"))["pending"])
        return seconds, pending

    try:
        _fill(stream, n)
        seconds, pending = _asyncio(run)
    finally:
        _delete(stream)
    if pending:
        raise CaseFailed(f"{pending} entries still pending")
    return Sample(n, seconds)


def bridge_ingress(n: int, runtime: str = "thread") -> Sample:
    from bus import Envelope, open_bus

    stream = _stream()

    async def main() -> float:
        state = {"count": 0, "t0": 0.0}
        async with open_bus(name="bench") as bus:
            bus.topic(stream, Reading)

            def handle(env: Envelope[Reading]) -> None:
                if not state["count"]:
                    state["t0"] = time.perf_counter()
                state["count"] += 1

            bus.subscribe(stream, handle)
            bridge = _bridge("in", batch=READ, initial_position="earliest", runtime=runtime)
            await bus.attach(bridge, import_=[stream])
            with trio.fail_after(TIMEOUT):
                while bridge.acked < n:  # noqa: ASYNC110 - acks go out from the bridge's task
                    await trio.sleep(0.001)
            return time.perf_counter() - state["t0"]

    try:
        _fill(stream, n)
        seconds = trio.run(main)
    finally:
        _delete(stream)
    return Sample(n, seconds)


RATIOS: dict[str, tuple[str, str]] = {
    "redis_egress_vs_raw": ("redis_bridge_egress", "redis_raw_egress"),
    "redis_ingress_vs_raw": ("redis_bridge_ingress", "redis_raw_ingress"),
}

CASES: list[tuple[str, str, Callable[[int], Sample]]] = [
    ("redis_raw_egress", "redis-py asyncio, XADD pipelines of 256", raw_egress),
    ("redis_bridge_egress", "bus.publish → RedisBridge export, XADD answered", bridge_egress),
    ("redis_raw_ingress", "redis-py XREADGROUP 1000 + decode + XACK", raw_ingress),
    ("redis_bridge_ingress", "RedisBridge import → bus handler, XACK", bridge_ingress),
]
"""``(name, what, run)`` for ``benchmarks._harness.Case``; unit msg/s."""


def cases() -> list[Case]:
    return [Case(name, what, "msg/s", run) for name, what, run in CASES]


def main(messages: int = 20_000, rounds: int = 3) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _, _, run in CASES:
        run(max(10, messages // 10))  # warm-up
    for rnd in range(rounds):
        for name, _, run in CASES:
            rates[name].append(run(messages).rate)
        print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    for ratio, (num, den) in RATIOS.items():
        print(f"{ratio}: {medians[num] / medians[den]:.2f}")
    return medians


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
