"""The trio-side cost of Kafka ingress per record, without a broker.

``python -m benchmarks.ingress_cost [--messages N] [--rounds R] [--profile]`` hands
ready-made polls (500 records over 4 partitions, CloudEvents headers as a bus writes
them, ~200-byte JSON payloads) to the Kafka consumer's delivery step
(``TrackedConsumer._deliver_batch``) on a real bus with one subscriber, and times from
the first poll handed over until every record is handled and its offset committable:
header reading, envelopes, routing, the handler's delivery, done-tracking and the offset
tracker, all of it on trio's thread. Once with aiokafka's ``ConsumerRecord`` s, once with
confluent-kafka's ``Message`` s; the best of *R* rounds, in µs per record. The client's
own cost (fetching, the crossing) is not in it: ``bus bench bridges`` has the whole.

``--profile`` adds a cProfile of one aiokafka round (inflated; read it as shares).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from ._brokers import BUS_TOPIC, MAX_RECORDS, PARTITIONS, kafka_headers, message
from ._messages import Reading

Poll = dict[Any, list[Any]]


def _aiokafka_record(topic: str, partition: int, offset: int, i: int) -> Any:
    from aiokafka.structs import ConsumerRecord

    obj, data = message(i)
    headers = tuple((name, value) for name, value in kafka_headers(i, topic))
    return ConsumerRecord(topic, partition, offset, int(time.time() * 1000), 0,
                          obj.key.encode(), data, None, len(obj.key), len(data), headers)


def _confluent_record(topic: str, partition: int, offset: int, i: int) -> Any:
    from confluent_kafka import Message

    obj, data = message(i)
    return Message(topic=topic, partition=partition, offset=offset, key=obj.key.encode(),
                   value=data, headers=kafka_headers(i, topic),
                   timestamp=(1, int(time.time() * 1000)))


def polls(
    n: int, make: Callable[[str, int, int, int], Any], key: Callable[[Any], Any]
) -> list[Poll]:
    """*n* records in polls of ``MAX_RECORDS``, records grouped per partition."""
    out: list[Poll] = []
    for start in range(0, n, MAX_RECORDS):
        poll: Poll = {}
        for i in range(start, min(n, start + MAX_RECORDS)):
            rec = make(BUS_TOPIC, i % PARTITIONS, i // PARTITIONS, i)
            poll.setdefault(key(rec), []).append(rec)
        out.append(poll)
    return out


async def _deliver(consumer: Any, batches: list[Poll], n: int,
                   profile: cProfile.Profile | None) -> float:
    from bus import open_bus
    from bus.abc import Bridge, Port

    handed: dict[str, Port] = {}

    class Handover(Bridge):
        name = "in"

        async def export(self, batch: Any, port: Port) -> None:
            pass

        async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
            handed["port"] = port
            task_status.started()
            await trio.sleep_forever()

    done = trio.Event()
    count = 0

    def handle(env: Any) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async with open_bus(name="cost") as bus:
        bus.topic(BUS_TOPIC, Reading)
        bus.subscribe(BUS_TOPIC, handle)
        await bus.attach(Handover(), import_=[BUS_TOPIC])
        for poll in batches:
            consumer.assigned.update(poll)
        port = handed["port"]
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()
        for poll in batches:
            await consumer._deliver_batch(port, poll)
        await done.wait()
        seconds = time.perf_counter() - t0
        if profile is not None:
            profile.disable()
    committable = sum(consumer.tracker.to_commit().values())
    if committable != n:
        raise AssertionError(f"{committable} of {n} offsets committable")
    return seconds


def run(client: str, n: int, rounds: int, profile: cProfile.Profile | None = None) -> float:
    """Best µs per record of *rounds* rounds for *client* (``aiokafka``/``confluent``)."""
    from bridges.kafka._confluent_ingress import ConfluentConsumer
    from bridges.kafka._ingress import Consumer

    best = float("inf")
    for _ in range(rounds):
        consumer: Any
        if client == "aiokafka":
            from aiokafka.structs import TopicPartition

            batches = polls(n, _aiokafka_record, lambda r: TopicPartition(r.topic, r.partition))
            consumer = Consumer(None, "in", poll_ms=100, max_records=MAX_RECORDS,  # type: ignore[arg-type]
                                commit_interval=60.0)
        else:
            batches = polls(n, _confluent_record, lambda r: (r.topic(), r.partition()))
            consumer = ConfluentConsumer("in", poll_ms=100, max_records=MAX_RECORDS,
                                         commit_interval=60.0)
        best = min(best, trio.run(_deliver, consumer, batches, n, profile))
    return best / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    from .local import quiet_logs

    with quiet_logs():
        for client in ("aiokafka", "confluent"):
            us = run(client, args.messages, args.rounds)
            print(f"kafka ingress, {client} records: {us:.2f} µs per record on trio's side "
                  f"(best of {args.rounds}, {args.messages} records)")
        if args.profile:
            profile = cProfile.Profile()
            run("aiokafka", args.messages, 1, profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
