"""``bridges.kafka._client.send_batch``: records appended to one batch builder per
partition, with a fake producer (aiokafka's real ``BatchBuilder`` and partitioner, a
fake broker answering each handed-over batch).

What it must keep from ``producer.send()`` per record: the partition the producer's
partitioner gives each key, the order of a partition's records, one result per record
(a refused batch fails its records only; an over-large record is refused alone, before
it is queued).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("aiokafka")

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from bridges.kafka import _client
from bridges.kafka._wire import Record

TOPIC = "orders"


class FakeProducer:
    """What ``send_batch`` uses of an ``AIOKafkaProducer``; records every hand-over."""

    def __init__(self, partitions: int = 4, batch_size: int = 16_384,
                 max_request_size: int = 1_048_576) -> None:
        self.partitions = set(range(partitions))
        self._partitioner = DefaultPartitioner()
        self._max_request_size = max_request_size
        self.batch_size = batch_size
        self.handed: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
        self.failing: dict[int, BaseException] = {}
        self.client = self
        self.cluster = self

    async def _wait_on_metadata(self, topic: str) -> None:
        if topic != TOPIC:
            raise KafkaTimeoutError(f"no metadata for {topic}")

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert partition in self.partitions
        data = bytes(batch._build())
        records = [(r.key, r.value) for r in DefaultRecordBatch(data)]
        self.handed.append((topic, partition, records))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if partition in self.failing:
            future.set_exception(self.failing[partition])
        else:
            future.set_result(None)
        return future


def record(i: int, key: str | None = None, size: int = 20, topic: str = TOPIC) -> Record:
    return (topic, f"{i:0{size}d}".encode(), key.encode() if key is not None else None,
            [("ce_id", str(i).encode())], None)


def send(producer: FakeProducer, records: list[Record]) -> list[BaseException | None]:
    return asyncio.run(_client.send_batch(producer, records))


def expected_partition(key: str, partitions: int) -> int:
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), []))


def test_each_key_goes_where_the_partitioner_puts_it_and_keeps_its_order() -> None:
    producer = FakeProducer(partitions=4)
    records = [record(i, key=f"k{i % 7}") for i in range(100)]
    assert send(producer, records) == [None] * 100
    seen: dict[bytes, list[int]] = {}
    for _, partition, handed in producer.handed:
        for key, value in handed:
            assert key is not None
            assert partition == expected_partition(key.decode(), 4)
            seen.setdefault(key, []).append(int(value))
    assert sorted(v for values in seen.values() for v in values) == list(range(100))
    for key, values in seen.items():
        assert values == sorted(values), key
    assert len(producer.handed) <= 4  # one builder per partition when it fits


def test_a_full_builder_is_handed_over_and_the_partition_order_holds() -> None:
    producer = FakeProducer(partitions=1, batch_size=512)
    records = [record(i, key="same", size=60) for i in range(40)]
    assert send(producer, records) == [None] * 40
    assert len(producer.handed) > 1
    values = [int(v) for _, _, handed in producer.handed for _, v in handed]
    assert values == list(range(40))


def test_a_refused_batch_fails_its_own_records_only() -> None:
    producer = FakeProducer(partitions=4)
    bad = expected_partition("k0", 4)
    producer.failing[bad] = KafkaTimeoutError("broker said no")
    records = [record(i, key=f"k{i % 5}") for i in range(50)]
    results = send(producer, records)
    for i, result in enumerate(results):
        if expected_partition(f"k{i % 5}", 4) == bad:
            assert isinstance(result, KafkaTimeoutError), i
        else:
            assert result is None, i


def test_an_over_large_record_is_refused_alone_before_it_is_queued() -> None:
    producer = FakeProducer(partitions=1, max_request_size=10_000)
    records = [record(0, key="a"), record(1, key="a", size=20_000), record(2, key="a")]
    results = send(producer, records)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], MessageSizeTooLargeError)
    assert "max_request_size" in str(results[1])
    values = [int(v) for _, _, handed in producer.handed for _, v in handed]
    assert values == [0, 2]


def test_a_topic_without_metadata_fails_its_records_only() -> None:
    producer = FakeProducer()
    records = [record(0, key="a"), record(1, key="a", topic="nowhere"), record(2)]
    results = send(producer, records)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], KafkaTimeoutError)


def test_a_topic_given_more_partitions_rehashes_its_keys() -> None:
    producer = FakeProducer(partitions=2)
    keys = [f"key-{i}" for i in range(32)]
    send(producer, [record(i, key=k) for i, k in enumerate(keys)])
    producer.partitions = set(range(16))
    producer.handed.clear()
    send(producer, [record(i, key=k) for i, k in enumerate(keys)])
    for _, partition, handed in producer.handed:
        for key, _ in handed:
            assert key is not None
            assert partition == expected_partition(key.decode(), 16)


def test_export_batches_go_out_in_few_record_batches_within_the_brokers_limit() -> None:
    from bridges.kafka import KafkaBridge
    from bridges.kafka._bridge import EXPORT_BATCH_BYTES

    assert KafkaBridge()._producer_options["max_batch_size"] == EXPORT_BATCH_BYTES
    assert 64 * 1024 <= EXPORT_BATCH_BYTES <= 1_000_000  # broker max.message.bytes: 1 MB
    chosen = KafkaBridge(batch_size=32_768)._producer_options["max_batch_size"]
    assert chosen == 32_768
