"""Where a Kafka bridge message's time goes: the raw case, step by step towards the bridge.

``python -m benchmarks.bridge_hotspots [--messages N] [--rounds R]`` runs, rounds
interleaved like the suite, cases that each add one thing the bridge does to the raw
aiokafka case, so the gaps between neighbours say what each step costs:

egress
  ``raw_egress``            create_batch/send_batch per partition, everything in flight
  ``raw_egress_window``     the same, but waiting for the acks every ``BATCH`` messages
                            (one batch in flight, like one bus export subscription)
  ``send_per_record_all``   ``producer.send()`` per record instead, everything in flight
  ``send_per_record``       plain asyncio, ``producer.send()`` per record, one batch of
                            ``BATCH`` in flight at a time (what the bridge's asyncio side
                            does: ``bridges/kafka/_client.send_batch``)
  ``bridge_egress``         the bridge: the bus, its export batches, the thread crossing
ingress
  ``raw_ingress``           getmany + msgspec decode
  ``raw_ingress_ce``        the same + ``bridges._cloudevents.from_headers`` per record
  ``bridge_ingress``        the bridge: envelopes, routing, done-tracking, commits

It needs the brokers (like ``bus bench bridges``) and reports rates only; no targets.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from typing import Any

from . import _kafka_bridge_cases as kb
from . import _kafka_cases as k
from ._brokers import (
    BATCH,
    KAFKA,
    MAX_RECORDS,
    decode,
    kafka_cleanup,
    kafka_fill,
    kafka_headers,
    message,
    unique,
)
from ._brokers import asyncio_run as _run
from ._harness import Case, Progress, Sample, Size, human, run_rounds


def send_per_record(n: int) -> Sample:
    return _send_per_record(n, in_flight=BATCH)


def send_per_record_all(n: int) -> Sample:
    return _send_per_record(n, in_flight=n)


def _send_per_record(n: int, in_flight: int) -> Sample:
    topic = k._topic()

    async def main() -> float:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            obj, data = message(-1)
            await producer.send_and_wait(topic, data, key=obj.key.encode())
            t0 = time.perf_counter()
            for start in range(0, n, in_flight):
                futures = []
                for i in range(start, min(n, start + in_flight)):
                    obj, data = message(i)
                    futures.append(await producer.send(
                        topic, data, key=obj.key.encode(), headers=kafka_headers(i)
                    ))
                await asyncio.gather(*futures)
            return time.perf_counter() - t0
        finally:
            await producer.stop()

    try:
        return Sample(n, _run(main()))
    finally:
        k.kafka_delete_topic(topic)


def raw_ingress_ce(n: int) -> Sample:
    from bridges._cloudevents import KAFKA as BINDING
    from bridges._cloudevents import from_headers

    topic = k._topic()

    async def main() -> float:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=KAFKA, group_id=unique("bench-g"),
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            count, t0 = 0, 0.0
            while count < n:
                batches: dict[Any, list[Any]] = await consumer.getmany(
                    timeout_ms=1000, max_records=MAX_RECORDS
                )
                if batches and not count:
                    t0 = time.perf_counter()
                for records in batches.values():
                    for r in records:
                        from_headers(
                            BINDING, r.headers, topic=r.topic,
                            fallback_id=f"{r.topic}-{r.partition}-{r.offset}", key=r.key,
                            time=r.timestamp / 1000,
                        )
                        decode(r.value)
                    count += len(records)
            await consumer.commit()
            return time.perf_counter() - t0
        finally:
            await consumer.stop()

    try:
        kafka_fill(topic, n)
        return Sample(n, _run(main()))
    finally:
        k.kafka_delete_topic(topic)


def cases() -> list[Case]:
    return [
        Case("raw_egress", "aiokafka send_batch, all in flight", "msg/s", k.raw_egress),
        Case("raw_egress_window", "... but one batch of BATCH in flight", "msg/s",
             functools.partial(k.raw_egress, window=BATCH)),
        Case("send_per_record_all", "aiokafka send() per record, all in flight", "msg/s",
             send_per_record_all),
        Case("send_per_record", "aiokafka send() per record, one batch in flight", "msg/s",
             send_per_record),
        Case("bridge_egress", "bus → KafkaBridge", "msg/s", kb.bridge_egress),
        Case("raw_ingress", "aiokafka getmany + decode", "msg/s", k.raw_ingress),
        Case("raw_ingress_ce", "... + CloudEvents from_headers", "msg/s", raw_ingress_ce),
        Case("bridge_ingress", "KafkaBridge → bus handler", "msg/s", kb.bridge_ingress),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from .local import quiet_logs

    all_cases = cases()
    size = Size(args.messages, args.rounds)
    try:
        with quiet_logs():
            run_rounds(all_cases, size, Progress(len(all_cases) * size.rounds))
    finally:
        kafka_cleanup()
    for case in all_cases:
        res = case.result()
        shown = human(res["median"]) if res["ok"] else res["error"]
        print(f"{case.name:<18} {shown:>10}  {case.what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
