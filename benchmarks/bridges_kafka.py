"""Kafka through the bridge against plain aiokafka in plain asyncio, same broker, same run.

Cases, rounds interleaved by the harness, each round on a fresh 4-partition topic, 64
keys, the same ~100-byte JSON payload and the CloudEvents headers the bridge writes:

- ``kafka_raw_egress``: aiokafka on ``asyncio.run``, ``acks="all"``, idempotent, batches
  of 256 handed to ``send`` and their futures gathered (what the bridge does per batch);
- ``kafka_bridge_egress[RUNTIME]``: ``bus.publish`` of the same messages to a bus with a
  :class:`~bridges.kafka.KafkaBridge` exporting them (``batch=256``), timed until
  ``bus.drain()`` returns (every batch acknowledged), per runtime kind;
- ``kafka_raw_ingress``: the topic is filled first (untimed); a group consumer without
  auto-commit reads it with ``getmany`` and commits once at the end (its best way);
  timed from consumer start to the commit;
- ``kafka_bridge_ingress[RUNTIME]``: the same backlog imported by the bridge into a bus
  whose subscriber counts it, timed from ``attach`` to the last message handled; after
  the bus exited the group's committed offsets must cover the whole topic (every record
  committed once done), else the case fails.

Run ``python -m benchmarks.bridges_kafka [--messages N] [--rounds R] [--json PATH]`` with
``KAFKA_SERVER`` set (default 127.0.0.1:9092). Prints rates and the ratios
``kafka_egress_vs_raw`` / ``kafka_ingress_vs_raw`` (thread runtime, the default) and the
same per runtime kind, for the runtime choice in ``docs/bridges.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from ._harness import Case, CaseFailed, Progress, Sample, Size, run_rounds
from ._messages import Tick
from .local import quiet_logs

SERVER = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")
BATCH = 256
PARTITIONS = 4
KEYS = 64
KINDS = ("thread", "trio-asyncio")


def _records(topic: str, n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Value, key and the headers the bridge would write, for messages 0..n-1."""
    from bridges._cloudevents import KAFKA, to_headers
    from bus import Envelope

    out = []
    now = time.time()
    for i in range(n):
        tick = Tick(i, time.time_ns())
        key = f"k{i % KEYS}"
        env = Envelope(id=hex(i), topic=topic, payload=tick, key=key, time=now, source="bench")
        headers = [(h, v.encode()) for h, v in to_headers(KAFKA, env)]
        out.append((msgspec.json.encode(tick), key.encode(), headers))
    return out


def _asyncio_run(coro: Any) -> Any:
    # Explicitly a selector loop: an imported trio_asyncio would swap the default.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def _topic() -> str:
    return f"bench.kafka{uuid.uuid4().hex[:8]}.tick"


async def _admin(work: Callable[[Any], Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=SERVER)
    await admin.start()
    try:
        return await work(admin)
    finally:
        await admin.close()


def _create(topic: str) -> None:
    async def work(admin: Any) -> None:
        from aiokafka.admin import NewTopic

        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        while topic not in await admin.list_topics():  # noqa: ASYNC110 - broker state
            await asyncio.sleep(0.05)

    _asyncio_run(_admin(work))


def _delete(topic: str) -> None:
    async def work(admin: Any) -> None:
        await admin.delete_topics([topic])

    _asyncio_run(_admin(work))


def _committed_total(group: str, topic: str) -> int:
    async def work(admin: Any) -> int:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)

    return int(_asyncio_run(_admin(work)))


async def _produce(topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    records = _records(topic, n)
    producer = AIOKafkaProducer(bootstrap_servers=SERVER, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for start in range(0, n, BATCH):
            futs = [
                await producer.send(topic, value, key=key, headers=headers)
                for value, key, headers in records[start:start + BATCH]
            ]
            await asyncio.gather(*futs)
    finally:
        await producer.stop()


# -- egress ---------------------------------------------------------------------------


def raw_egress(n: int) -> Sample:
    topic = _topic()
    _create(topic)

    async def main() -> float:
        t0 = time.perf_counter()
        await _produce(topic, n)
        return time.perf_counter() - t0

    try:
        return Sample(n, _asyncio_run(main()))
    finally:
        _delete(topic)


def bridge_egress(kind: str) -> Callable[[int], Sample]:
    def run(n: int) -> Sample:
        from bridges.kafka import KafkaBridge
        from bus import open_bus

        topic = _topic()
        _create(topic)

        async def main() -> float:
            async with open_bus(name="bench") as bus:
                bus.topic(topic, Tick)
                bridge = KafkaBridge(SERVER, name="out", runtime=kind)  # type: ignore[arg-type]
                await bus.attach(bridge, export=[topic], batch=BATCH)
                t0 = time.perf_counter()
                for i in range(n):
                    await bus.publish(topic, Tick(i, time.time_ns()), key=f"k{i % KEYS}")
                await bus.drain()
                return time.perf_counter() - t0

        try:
            with quiet_logs():
                return Sample(n, trio.run(main))
        finally:
            _delete(topic)

    return run


# -- ingress --------------------------------------------------------------------------


def raw_ingress(n: int) -> Sample:
    from aiokafka import AIOKafkaConsumer

    topic = _topic()
    _create(topic)
    _asyncio_run(_produce(topic, n))

    async def main() -> float:
        t0 = time.perf_counter()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=SERVER, group_id=f"raw-{topic}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500,
        )
        await consumer.start()
        try:
            count = 0
            while count < n:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        msgspec.json.decode(rec.value, type=Tick)
                        count += 1
            await consumer.commit()
            return time.perf_counter() - t0
        finally:
            await consumer.stop()

    try:
        return Sample(n, _asyncio_run(main()))
    finally:
        _delete(topic)


def bridge_ingress(kind: str) -> Callable[[int], Sample]:
    def run(n: int) -> Sample:
        from bridges.kafka import KafkaBridge
        from bus import Envelope, open_bus

        topic = _topic()
        group = f"bridge-{topic}"
        _create(topic)
        _asyncio_run(_produce(topic, n))

        async def main() -> float:
            count = 0
            done = trio.Event()

            def handle(env: Envelope[Tick]) -> None:
                nonlocal count
                count += 1
                if count == n:
                    done.set()

            async with open_bus(name="bench") as bus:
                bus.topic(topic, Tick)
                bus.subscribe(topic, handle)
                bridge = KafkaBridge(SERVER, name="in", group_id=group, runtime=kind)  # type: ignore[arg-type]
                t0 = time.perf_counter()
                await bus.attach(bridge, import_=[topic])
                await done.wait()
                return time.perf_counter() - t0

        try:
            with quiet_logs():
                seconds = trio.run(main)
            committed = _committed_total(group, topic)
        finally:
            _delete(topic)
        if committed != n:
            raise CaseFailed(f"{committed} of {n} records committed after the bus exited")
        return Sample(n, seconds)

    return run


# -- latency --------------------------------------------------------------------------

LATENCY_RATE = 1000.0
"""Messages per second for the latency case: well below every measured maximum."""


def bridge_latency(n: int) -> Sample:
    """Local publish -> KafkaBridge export -> Kafka -> KafkaBridge import -> local handler,
    two buses in one process, at LATENCY_RATE; p50/p99 in the sample's extra."""
    from bridges.kafka import KafkaBridge
    from bus import Envelope, open_bus

    from ._bus_cases import latency_summary

    topic = _topic()
    _create(topic)

    async def main() -> Sample:
        lat: list[int] = []
        done = trio.Event()

        def handle(env: Envelope[Tick]) -> None:
            lat.append(time.time_ns() - env.payload.t)
            if len(lat) == n:
                done.set()

        async with open_bus(name="sink") as sink, open_bus(name="source") as source:
            sink.topic(topic, Tick)
            sink.subscribe(topic, handle)
            await sink.attach(KafkaBridge(SERVER, name="in", group_id=f"lat-{topic}"),
                              import_=[topic])
            source.topic(topic, Tick)
            await source.attach(KafkaBridge(SERVER, name="out"), export=[topic], batch=BATCH)
            await trio.sleep(1.0)  # the group's first assignment
            t0 = time.perf_counter()
            for i in range(n):
                due = t0 + i / LATENCY_RATE - time.perf_counter()
                if due > 0:
                    await trio.sleep(due)
                await source.publish(topic, Tick(i, time.time_ns()), key=f"k{i % KEYS}")
            await done.wait()
            return Sample(n, time.perf_counter() - t0, latency_summary(lat, LATENCY_RATE))

    try:
        with quiet_logs():
            return trio.run(main)  # type: ignore[no-any-return]
    finally:
        _delete(topic)


# -- peers: FastStream's real KafkaBroker, confluent-kafka (librdkafka) ------------------


def faststream_egress(n: int) -> Sample:
    """FastStream's KafkaBroker, acks=all + idempotent, batches of 256 published without
    waiting and their confirmations gathered: its fastest confirmed way."""
    from faststream.kafka import KafkaBroker

    topic = _topic()
    _create(topic)

    async def main() -> float:
        broker = KafkaBroker(SERVER, acks="all", enable_idempotence=True, logger=None)
        async with broker:
            await broker.start()
            t0 = time.perf_counter()
            for start in range(0, n, BATCH):
                futs = [
                    await broker.publish(
                        {"n": i, "t": time.time_ns()}, topic, key=f"k{i % KEYS}".encode(),
                        no_confirm=True,
                    )
                    for i in range(start, min(n, start + BATCH))
                ]
                await asyncio.gather(*futs)
            return time.perf_counter() - t0

    try:
        return Sample(n, _asyncio_run(main()))
    finally:
        _delete(topic)


def faststream_ingress(n: int) -> Sample:
    """FastStream's KafkaBroker subscriber with a typed handler, its default ack policy
    (auto-commit on consume: weaker than the bridge, which commits only when done)."""
    from faststream.kafka import KafkaBroker

    topic = _topic()
    _create(topic)
    _asyncio_run(_produce(topic, n))

    async def main() -> float:
        broker = KafkaBroker(SERVER, logger=None)
        done = asyncio.Event()
        count = 0

        @broker.subscriber(topic, group_id=f"fs-{topic}", auto_offset_reset="earliest")
        async def handle(msg: dict[str, int]) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        t0 = time.perf_counter()
        async with broker:
            await broker.start()
            await done.wait()
            return time.perf_counter() - t0

    try:
        return Sample(n, _asyncio_run(main()))
    finally:
        _delete(topic)


def confluent_egress(n: int) -> Sample:
    """confluent-kafka (librdkafka), acks=all + idempotent, same records: the reference
    a throughput-minded user would pick instead."""
    from confluent_kafka import Producer

    topic = _topic()
    _create(topic)
    records = _records(topic, n)
    producer = Producer({"bootstrap.servers": SERVER, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5})
    failed: list[Any] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    try:
        producer.produce(topic, b"warm-up", callback=report)  # first ack may take ~0.5 s
        producer.flush(10)
        t0 = time.perf_counter()
        for value, key, headers in records:
            while True:
                try:
                    producer.produce(topic, value, key=key, headers=headers, callback=report)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        producer.flush(60)
        seconds = time.perf_counter() - t0
    finally:
        _delete(topic)
    if failed:
        raise CaseFailed(f"{len(failed)} records failed: {failed[0]}")
    return Sample(n, seconds)


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def cases() -> list[Case]:
    out = [
        Case("kafka_raw_egress", "aiokafka send, acks=all, idempotent, plain asyncio",
             "msg/s", raw_egress),
        Case("kafka_raw_ingress", "aiokafka group getmany, one commit, plain asyncio",
             "msg/s", raw_ingress),
    ]
    if _available("faststream"):
        out.append(Case("kafka_faststream_egress", "FastStream KafkaBroker publish, acks=all",
                        "msg/s", faststream_egress))
        out.append(Case("kafka_faststream_ingress", "FastStream KafkaBroker subscriber",
                        "msg/s", faststream_ingress))
    if _available("confluent_kafka"):
        out.append(Case("kafka_confluent_egress", "confluent-kafka produce, acks=all",
                        "msg/s", confluent_egress))
    out.append(Case("kafka_bridge_latency", "bus -> Kafka -> bus at 1k msg/s (p50/p99)",
                    "msg/s", bridge_latency, scale=0.1))
    for kind in KINDS:
        out.append(Case(f"kafka_bridge_egress[{kind}]", f"bus -> KafkaBridge export ({kind})",
                        "msg/s", bridge_egress(kind)))
        out.append(Case(f"kafka_bridge_ingress[{kind}]", f"KafkaBridge import -> bus ({kind})",
                        "msg/s", bridge_ingress(kind)))
    return out


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    def ratio(ours: str, theirs: str) -> float | None:
        if ours not in results or theirs not in results:
            return None
        a, b = results[ours]["median"], results[theirs]["median"]
        return round(a / b, 3) if a and b else None

    out = {
        "kafka_egress_vs_faststream": ratio("kafka_bridge_egress[thread]",
                                            "kafka_faststream_egress"),
        "kafka_ingress_vs_faststream": ratio("kafka_bridge_ingress[thread]",
                                             "kafka_faststream_ingress"),
        "kafka_confluent_vs_raw_egress": ratio("kafka_confluent_egress", "kafka_raw_egress"),
        "kafka_egress_vs_raw": ratio("kafka_bridge_egress[thread]", "kafka_raw_egress"),
        "kafka_ingress_vs_raw": ratio("kafka_bridge_ingress[thread]", "kafka_raw_ingress"),
    }
    for kind in KINDS:
        out[f"kafka_egress_vs_raw[{kind}]"] = ratio(f"kafka_bridge_egress[{kind}]",
                                                    "kafka_raw_egress")
        out[f"kafka_ingress_vs_raw[{kind}]"] = ratio(f"kafka_bridge_ingress[{kind}]",
                                                     "kafka_raw_ingress")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    size = Size(messages=args.messages, rounds=args.rounds)
    all_cases = cases()
    if args.only:
        wanted = set(args.only.split(","))
        all_cases = [c for c in all_cases if c.name in wanted]
    run_rounds(all_cases, size, Progress(total=len(all_cases) * size.rounds))
    results = {case.name: case.result() for case in all_cases}
    report = {"messages": size.messages, "rounds": size.rounds, "cases": results,
              "ratios": ratios(results) if not args.only else {}}
    for name, res in results.items():
        median = res["median"]
        shown = f"{median:10.0f} {res['unit']}" if median else f"{res['error']}"
        print(f"{name:<30} {shown}   rounds {res['rounds']}")
    for name, value in report["ratios"].items():
        print(f"{name:<30} {value}")
    for name, res in results.items():
        for extra in res.get("extra_rounds", []):
            print(f"{name:<30} p50 {extra['p50_ms']:.2f} ms  p99 {extra['p99_ms']:.2f} ms  "
                  f"max {extra['max_ms']:.2f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0 if all(res["ok"] for res in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
