"""Kafka ingress commits only what the bus is done with: both clients, fake consumers.

``KafkaBridge`` (aiokafka) gets its consumer and producer from ``_client.start_consumer`` and
``_client.start_producer``; ``ConfluentKafkaBridge`` from ``confluent_kafka.Consumer`` and
``Producer``. The tests replace those factories with fakes serving one partition of
records and recording every commit, then hold records in a subscriber's handler. What a
commit would carry at a given moment is read by committing right then
(``bridge._consumer.commit()``); the bridge's own periodic committer runs too (every 20
ms), so a wrong offset would also reach the fake unasked.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
import trio
import trio.testing

from bus import open_bus
from bus.abc import Bridge

pytest.importorskip("aiokafka")
pytest.importorskip("confluent_kafka")

import confluent_kafka
from aiokafka.structs import TopicPartition

from bridges.kafka import ConfluentKafkaBridge, KafkaBridge, _client

TOPIC = "orders"
P0 = (TOPIC, 0)


class Log:
    """One partition as the fake consumers serve it, and the commits they received."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.backlog: list[tuple[int, bytes]] = []
        self.commits: list[dict[tuple[str, int], int]] = []
        self._lock = threading.Lock()

    def feed(self, *names: str) -> None:
        """Append records whose payloads are the JSON strings *names*, offsets from 0."""
        with self._lock:
            start = len(self.backlog)
            self.backlog += [(start + i, f'"{name}"'.encode()) for i, name in enumerate(names)]

    def take(self) -> list[tuple[int, bytes]]:
        with self._lock:
            batch, self.backlog = self.backlog, []
        return batch

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self.commits.append(offsets)
        self.watch.poke()

    def high(self) -> int | None:
        """The highest offset committed for partition 0 so far (None: no commit)."""
        return max((c[P0] for c in self.commits if P0 in c), default=None)


# -- aiokafka -------------------------------------------------------------------------------


class AioRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    headers: list[tuple[str, bytes]]
    key: bytes | None
    value: bytes | None


class FakeAioConsumer:
    """What ``_client`` calls on an ``AIOKafkaConsumer`` (on the bridge's asyncio loop)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*P0)}

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[AioRecord]]:
        if not self._paused:
            batch = self.log.take()
            if batch:
                return {TopicPartition(*P0): [
                    AioRecord(TOPIC, 0, offset, None, [], None, value) for offset, value in batch
                ]}
        await asyncio.sleep(timeout_ms / 1000)  # the long poll of an idle partition
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.committed({(tp.topic, tp.partition): o for tp, o in offsets.items()})

    async def stop(self) -> None:
        pass


class FakeAioProducer:
    async def stop(self) -> None:
        pass


def aiokafka_bridge(monkeypatch: pytest.MonkeyPatch, log: Log) -> Bridge:
    async def start_producer(options: Any) -> FakeAioProducer:
        return FakeAioProducer()

    async def start_consumer(
        options: Any, topics: Any, pattern: Any, on_revoked: Any, on_assigned: Any
    ) -> FakeAioConsumer:
        on_assigned([TopicPartition(*P0)])  # as aiokafka's rebalance listener does
        return FakeAioConsumer(log)

    monkeypatch.setattr(_client, "start_producer", start_producer)
    monkeypatch.setattr(_client, "start_consumer", start_consumer)
    return KafkaBridge(name="kafka", runtime="thread", commit_interval=0.02, poll_interval=0.02)


# -- confluent-kafka ------------------------------------------------------------------------


class FakeMessage:
    """A ``confluent_kafka.Message`` of partition 0."""

    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)  # TIMESTAMP_NOT_AVAILABLE

    def headers(self) -> None:
        return None

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


class FakeConfluentConsumer:
    """What the bridge calls on a ``confluent_kafka.Consumer`` (in trio worker threads)."""

    def __init__(self, log: Log, config: dict[str, Any]) -> None:
        self.log = log
        self._on_commit = config["on_commit"]
        self._reports: list[list[Any]] = []
        """Commits sent, reported to on_commit by the next consume() or close(), as
        librdkafka does."""
        self.hold_reports = False
        """consume() keeps the reports to itself (close() still sends them)."""
        self._on_assign: Any = None
        self._assigned = False
        self._paused = False
        self._closed = threading.Event()

    def subscribe(self, topics: Any, on_assign: Any, on_revoke: Any) -> None:
        self._on_assign = on_assign

    def _report(self) -> None:
        reports, self._reports = self._reports, []
        for offsets in reports:
            self._on_commit(None, offsets)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if not self.hold_reports:
            self._report()
        if not self._assigned:  # librdkafka assigns from inside consume()
            self._assigned = True
            self._on_assign(self, [confluent_kafka.TopicPartition(*P0)])
        if not self._paused:
            batch = self.log.take()
            if batch:
                return [FakeMessage(offset, value) for offset, value in batch]
        self._closed.wait(timeout)  # the long poll of an idle partition
        return []

    def assignment(self) -> list[Any]:
        return [confluent_kafka.TopicPartition(*P0)]

    def pause(self, partitions: Any) -> None:
        self._paused = True

    def resume(self, partitions: Any) -> None:
        self._paused = False

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous  # a synchronous commit can hang for ever on a broker restart
        self.log.committed({(tp.topic, tp.partition): tp.offset for tp in offsets})
        self._reports.append(offsets)

    def close(self) -> None:
        self._report()
        self._closed.set()


class FakeProducer:
    """A ``confluent_kafka.Producer`` with nothing in flight."""

    def __init__(self, config: Any) -> None:
        pass

    def list_topics(self, timeout: float | None = None) -> Any:
        return SimpleNamespace(topics={})

    def __len__(self) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return 0

    def poll(self, timeout: float | None = None) -> int:
        return 0

    def purge(self) -> None:
        pass

    def close(self) -> None:
        pass


def confluent_bridge(monkeypatch: pytest.MonkeyPatch, log: Log) -> Bridge:
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    monkeypatch.setattr(
        confluent_kafka, "Consumer", lambda config: FakeConfluentConsumer(log, config)
    )
    return ConfluentKafkaBridge(name="kafka", commit_interval=0.02, poll_interval=0.02)


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(params=["aiokafka", "confluent"])
def kafka(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, watch: Any) -> Any:
    log = Log(watch)
    make = aiokafka_bridge if request.param == "aiokafka" else confluent_bridge
    return SimpleNamespace(log=log, bridge=make(monkeypatch, log))


async def settle_and_commit(bridge: Any) -> None:
    """Let every task run until blocked (the handlers' done callbacks included), then
    commit what the consumer holds as committable."""
    await trio.testing.wait_all_tasks_blocked()
    await bridge._consumer.commit()


async def test_a_record_in_hand_holds_back_every_later_offset(kafka: Any, held: Any) -> None:
    log, bridge = kafka.log, kafka.bridge
    log.feed("m0", "m1", "m2")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=3)  # keyless: one record per worker
        att = await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1", "m2")
        await settle_and_commit(bridge)
        assert log.high() is None  # all three in hand: nothing is committed
        held.release("m1", "m2")
        await held.wait_returned("m1", "m2")
        await settle_and_commit(bridge)
        assert att.port.acked == 2  # offsets 1 and 2 are done...
        assert log.high() is None  # ...but 0 is not: no commit may pass it
        held.release("m0")
        await log.watch.until(lambda: log.high() == 3, "offset 3 committed")
    assert log.commits == [{P0: 3}]  # once, by the periodic committer or on close


async def test_records_handed_over_while_the_bus_was_full_wait_for_their_handler(
    kafka: Any, held: Any
) -> None:
    # A mailbox of one: m0 goes in without waiting (deliver_nowait), the rest wait for
    # room (port.deliver) while the partition is paused. Each is committed only once
    # handled, however it was handed over.
    log, bridge = kafka.log, kafka.bridge
    log.feed("m0", "m1", "m2", "m3")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, capacity=1)
        await bus.attach(bridge, import_=[TOPIC])
        for n in range(4):
            await held.wait_entered(f"m{n}")  # m{n+1} in the mailbox, m{n+2} waiting
            await settle_and_commit(bridge)
            assert log.high() == (n or None)  # everything before m{n}, nothing more
            held.release(f"m{n}")
        await log.watch.until(lambda: log.high() == 4, "offset 4 committed")


async def test_a_done_reported_twice_or_for_an_unknown_record_sends_nothing(
    kafka: Any, held: Any
) -> None:
    log, bridge = kafka.log, kafka.bridge
    log.feed("m0", "m1")
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, held, concurrency=2)
        await bus.attach(bridge, import_=[TOPIC])
        await held.wait_entered("m0", "m1")
        held.release("m0", "m1")
        await log.watch.until(lambda: log.high() == 2, "offset 2 committed")
        consumer = bridge._consumer
        commits = len(log.commits)
        for tp, offset in ((P0, 1), (P0, 0), (P0, 7), ((TOPIC, 5), 0)):  # twice, unknown
            consumer._on_done(consumer.tracker, tp, offset, None)
        await settle_and_commit(bridge)
        assert len(log.commits) == commits  # no commit request at all
    assert log.commits == [{P0: 2}]


async def test_a_commit_waiting_for_its_report_when_ingress_stops_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch, watch: Any
) -> None:
    # librdkafka reports a commit from the next consume() or from close(). A periodic
    # commit still waiting for its report when ingress stops gets no consume() any more:
    # it is handed over to close(), not waited out and sent again as the final commit.
    log = Log(watch)
    consumers: list[FakeConfluentConsumer] = []

    def consumer(config: dict[str, Any]) -> FakeConfluentConsumer:
        consumers.append(FakeConfluentConsumer(log, config))
        consumers[-1].hold_reports = True
        return consumers[-1]

    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    monkeypatch.setattr(confluent_kafka, "Consumer", consumer)
    bridge = ConfluentKafkaBridge(name="kafka", commit_interval=0.02, poll_interval=0.02)
    log.feed("m0")
    handled = trio.Event()
    async with open_bus() as bus:
        bus.topic(TOPIC, str)
        bus.subscribe(TOPIC, lambda message: handled.set())
        await bus.attach(bridge, import_=[TOPIC])
        await handled.wait()
        await log.watch.until(lambda: log.high() == 1, "offset 1 committed")
        assert bridge._consumer._waiting  # its report is still to come
    assert log.commits == [{P0: 1}]
    assert consumers[0]._reports == []  # close() reported it
