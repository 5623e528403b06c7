"""The asyncio side of the Kafka bridge: every aiokafka call, one coroutine per crossing.

Each function here runs as one task on the bridge's asyncio loop (``Runtime.run``), so
a whole batch costs one crossing between trio and asyncio. Nothing here knows trio, the
bus, or offsets; exceptions are the client's own (the trio side translates them).
aiokafka is imported by :func:`client`, when a bridge opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from bus import MissingDependencyError

from .._common import require
from ._wire import Record

__all__ = [
    "check_codec",
    "client",
    "commit",
    "create_topic",
    "delete_topic",
    "poll",
    "poll_paused",
    "resume_all",
    "send_batch",
    "start_admin",
    "start_consumer",
    "start_producer",
    "stop_consumer",
    "stop_producer",
]



def client() -> ModuleType:
    """The ``aiokafka`` module, or an error naming the extra to install."""
    return require("aiokafka", "kafka", "the Kafka bridge")


def check_codec(compression_type: str | None) -> None:
    """A compression codec whose library is missing fails here, naming the fix."""
    if compression_type in ("snappy", "lz4", "zstd"):
        from aiokafka import codec

        if not getattr(codec, f"has_{compression_type}")():
            raise MissingDependencyError(
                f"compression_type={compression_type!r} needs cramjam: "
                f"pip install 'trio-bus[kafka]' (or 'aiokafka[{compression_type}]')"
            )


async def start_producer(options: Mapping[str, Any]) -> Any:
    aiokafka = client()
    producer = aiokafka.AIOKafkaProducer(**options)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def stop_producer(producer: Any, flush_within: float) -> bool:
    """Flush and close *producer*; True if it flushed, False if it had to be forced.

    A flush that cannot finish within *flush_within* seconds (a broker that restarted
    mid-stream can leave an idempotent producer retrying for ever) is abandoned: the
    sender task is cancelled and every connection closed all the same, so nothing of the
    producer stays open. Records still queued then were never acknowledged, so the bus
    has not counted them as exported.
    """
    stopping = asyncio.ensure_future(producer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=flush_within)
    if stopping in done:
        stopping.result()
        return True
    sender = getattr(producer, "_sender", None)
    await _abandon(producer.client, [stopping, getattr(sender, "sender_task", None)])
    return False


async def stop_consumer(consumer: Any, within: float) -> bool:
    """Leave the group and close *consumer*; True if it stopped within *within* seconds,
    False if it had to be abandoned.

    ``stop()`` first lets the group coordinator finish what it is doing (a JoinGroup, a
    coordinator lookup) and then leaves the group; against a broker that just restarted
    that can take longer than any bound we would wait. After *within* seconds the stop
    is abandoned: the consumer's tasks (coordination, heartbeat, offset refresh, fetches)
    are cancelled first, then its connections are closed. In that order, because
    aiokafka's client opens a new connection for the next request of any task still
    running, closed or not. What was not committed is redelivered to the group.

    ``stop()`` can also end half-way: aiokafka 0.14's ``Fetcher.close`` awaits the fetch
    tasks it has just cancelled, so with a fetch in flight (or in its retry back-off, the
    broker being down) ``stop()`` raises ``CancelledError`` before it closes the client
    (aio-libs/aiokafka#647). Its connections are closed here all the same; an error
    ``stop()`` raised is raised again once everything is closed.
    """
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=within)
    ended = stopping in done
    error = None if not ended or stopping.cancelled() else stopping.exception()
    if ended and error is None and not stopping.cancelled():
        return True
    coordinator = getattr(consumer, "_coordinator", None)
    fetcher = getattr(consumer, "_fetcher", None)
    tasks = [
        stopping,
        *(getattr(coordinator, name, None)
          for name in ("_coordination_task", "_heartbeat_task", "_commit_refresh_task")),
        getattr(fetcher, "_fetch_task", None),
        *getattr(fetcher, "_pending_tasks", ()),
    ]
    await _abandon(consumer._client, tasks)
    if error is not None:  # stop() failed half-way: closed all the same, and say why
        raise error
    return ended


async def _abandon(client: Any, tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel *tasks* (each bounded), then close *client* and every connection it holds."""
    live = [t for t in tasks if t is not None and not t.done()]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live, timeout=1.0)
    closing = asyncio.ensure_future(client.close())
    await asyncio.wait({closing}, timeout=1.0)
    if not closing.done():  # still waiting for a transport: drop them now
        closing.cancel()
        closed = [conn.close() for conn in list(getattr(client, "_conns", {}).values())]
        waits = [f for f in closed if isinstance(f, asyncio.Future)]
        if waits:  # the transports close their sockets on the next loop iterations
            await asyncio.wait(waits, timeout=1.0)


MEMO_KEYS = 65_536
"""Keys whose partition :func:`send_batch` remembers per producer (then it starts over)."""

_partitions: weakref.WeakKeyDictionary[Any, dict[tuple[str, int, bytes], int]] = (
    weakref.WeakKeyDictionary()
)


def _default() -> type:
    from aiokafka.partitioner import DefaultPartitioner

    found: type = DefaultPartitioner
    return found


async def send_batch(producer: Any, records: Sequence[Record]) -> list[BaseException | None]:
    """Hand every record to the producer, then wait for all acknowledgements.

    One result per record: ``None`` (acknowledged) or the exception it failed with.

    Records are appended straight to one batch builder per partition (``create_batch``
    / ``send_batch``), not ``send()`` one by one: ``send()`` costs a coroutine, a
    metadata check, a partition choice and an accumulator lookup per record (raw
    aiokafka at 0.43x, ``docs/performance.md``). Each record goes to the partition the
    producer's own partitioner gives it (what ``send()`` would choose: one key, one
    partition), in the batch's order, so a key's records stay in order: builders of one
    partition are handed over in order, and aiokafka sends one batch per partition at a
    time. A full builder is handed over and a new one started, so a record too large for
    a batch travels alone and its refusal is its own; one larger than
    ``max_request_size`` is refused before it is queued, as ``send()`` refuses it. A
    batch the broker refuses or a metadata lookup that fails is the result of each
    record in it.
    """
    from aiokafka.errors import MessageSizeTooLargeError as too_large
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes
    max_request: int = producer._max_request_size
    results: list[BaseException | None] = [None] * len(records)
    cluster = producer.client.cluster
    partitioner = producer._partitioner
    # the default partitioner hashes the key (murmur2 in Python, ~1.5 us): remember its
    # answer per key. Only for it: another partitioner may answer differently each time
    memo = _partitions.setdefault(producer, {}) if type(partitioner) is _default() else None
    choices: dict[str, tuple[list[int], list[int]] | BaseException] = {}
    open_: dict[tuple[str, int], tuple[Any, list[int]]] = {}
    sent: list[tuple[asyncio.Future[Any] | BaseException, list[int]]] = []

    async def hand_over(topic: str, partition: int, builder: Any, positions: list[int]) -> None:
        try:
            sent.append((await producer.send_batch(builder, topic, partition=partition),
                         positions))
        except Exception as exc:  # e.g. a timeout waiting for room in the accumulator
            sent.append((exc, positions))

    for i, (topic, value, key, headers, ts) in enumerate(records):
        choice = choices.get(topic)
        if choice is None:
            try:
                await producer.client._wait_on_metadata(topic)
                choice = (sorted(cluster.partitions_for_topic(topic)),
                          sorted(cluster.available_partitions_for_topic(topic)))
            except Exception as exc:  # unknown topic, no metadata in time...
                choice = exc
            choices[topic] = choice
        if isinstance(choice, BaseException):
            results[i] = choice
            continue
        if key is None or memo is None:
            partition = partitioner(key, choice[0], choice[1])
        else:
            # keyed by the partition count too: a topic given more partitions re-hashes
            seen = (topic, len(choice[0]), key)
            partition = memo.get(seen, -1)
            if partition < 0:
                partition = partitioner(key, choice[0], choice[1])
                if len(memo) >= MEMO_KEYS:
                    memo.clear()
                memo[seen] = partition
        entry = open_.get((topic, partition))
        if entry is None or entry[0].append(
            key=key, value=value, timestamp=ts, headers=headers
        ) is None:
            if entry is not None:  # full: hand it over, start anew
                await hand_over(topic, partition, *entry)
                del open_[topic, partition]
            # an empty builder takes a record of any size: refuse here what send() would
            if estimate(key, value, headers) > max_request:
                results[i] = too_large(
                    f"the record is {estimate(key, value, headers)} bytes when serialized, "
                    f"more than max_request_size ({max_request})"
                )
                continue
            entry = open_[topic, partition] = (producer.create_batch(), [])
            entry[0].append(key=key, value=value, timestamp=ts, headers=headers)
        entry[1].append(i)
    for (topic, partition), entry in open_.items():
        await hand_over(topic, partition, *entry)
    futures = [f for f, _ in sent if not isinstance(f, BaseException)]
    outcomes = iter(await asyncio.gather(*futures, return_exceptions=True))
    for fut, positions in sent:
        outcome = fut if isinstance(fut, BaseException) else next(outcomes)
        if isinstance(outcome, BaseException):
            for i in positions:
                results[i] = outcome
    return results


async def start_consumer(
    options: Mapping[str, Any],
    topics: Sequence[str],
    pattern: str | None,
    on_revoked: Callable[[Any, list[Any]], Any],
    on_assigned: Callable[[list[Any]], None],
) -> Any:
    """A started consumer, subscribed to *topics* or *pattern*.

    ``on_revoked(consumer, partitions)`` is awaited before partitions go to another
    member (the place to commit them); ``on_assigned(partitions)`` is called after.
    """
    aiokafka = client()
    from aiokafka.abc import ConsumerRebalanceListener

    consumer = aiokafka.AIOKafkaConsumer(**options)

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
            await on_revoked(consumer, list(revoked))

        async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
            on_assigned(list(assigned))

    if pattern is not None:
        consumer.subscribe(pattern=pattern, listener=Listener())
    else:
        consumer.subscribe(topics=list(topics), listener=Listener())
    try:
        await consumer.start()  # returns once the group assigned our partitions
        await _positioned(consumer)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def _positioned(consumer: Any, within: float = 10.0) -> None:
    """Wait until every assigned partition has its starting offset (a committed one, or
    the earliest/latest the reset policy says): a record produced after this point is
    consumed, also with ``auto_offset_reset="latest"``. Bounded: a partition whose
    offset cannot be looked up now (or that a rebalance took away) is positioned by
    the first fetch instead."""
    with contextlib.suppress(Exception):  # TimeoutError, IllegalStateError...
        async with asyncio.timeout(within):
            for tp in consumer.assignment():
                await consumer.position(tp)


async def poll(consumer: Any, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
    return await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)  # type: ignore[no-any-return]


async def lag(consumer: Any) -> int | None:
    """Records behind the high watermark over the assigned partitions whose position
    and watermark the consumer knows (from its fetches); None before it knows any."""
    total, known = 0, False
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        total += max(0, high - await consumer.position(tp))
        known = True
    return total if known else None


async def poll_paused(consumer: Any, timeout_ms: int) -> dict[Any, list[Any]]:
    """Pause every assigned partition (new ones may have come), then poll: keeps the
    consumer in its group while the bus is full. Returns what came anyway."""
    consumer.pause(*consumer.assignment())
    return await consumer.getmany(timeout_ms=timeout_ms)  # type: ignore[no-any-return]


async def resume_all(consumer: Any) -> None:
    paused = consumer.paused()
    if paused:
        consumer.resume(*paused)


async def commit(consumer: Any, offsets: Mapping[Any, int]) -> None:
    await consumer.commit(dict(offsets))


async def start_admin(options: Mapping[str, Any]) -> Any:
    aiokafka = client()
    from aiokafka.admin import AIOKafkaAdminClient

    allowed = {
        "bootstrap_servers", "client_id", "request_timeout_ms", "security_protocol",
        "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
        "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider", "metadata_max_age_ms",
    }
    del aiokafka
    admin = AIOKafkaAdminClient(**{k: v for k, v in options.items() if k in allowed})
    try:
        await admin.start()
    except BaseException:
        await admin.close()
        raise
    return admin


def _raise_for(errors: Iterable[Sequence[Any]], ok: set[str]) -> None:
    from aiokafka.errors import for_code

    for entry in errors:
        topic, code = entry[0], entry[1]
        if code:
            err = for_code(code)
            if err.__name__ not in ok:
                message = entry[2] if len(entry) > 2 and entry[2] else err.__name__
                raise err(f"{topic}: {message}")


async def create_topic(
    admin: Any, name: str, partitions: int, replication_factor: int,
    config: Mapping[str, str], ready_within: float,
) -> None:
    """Create *name* (existing is fine) and wait until the cluster lists it."""
    from aiokafka.admin import NewTopic

    resp = await admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                  topic_configs=dict(config))]
    )
    _raise_for(resp.topic_errors, {"TopicAlreadyExistsError"})
    # The controller accepted it; the broker we ask for metadata may list it a bit later.
    async with asyncio.timeout(ready_within):
        while name not in await admin.list_topics():  # noqa: ASYNC110 - remote state
            await asyncio.sleep(0.05)


async def delete_topic(admin: Any, name: str) -> None:
    resp = await admin.delete_topics([name])
    _raise_for(resp.topic_error_codes, {"UnknownTopicOrPartitionError"})


async def backlog(common: dict[str, Any], topic: str, group: str) -> tuple[int, int] | None:
    """``(records kept, records after group's committed offsets)`` of *topic*, over its
    partitions (from the beginning where *group* committed nothing); None if the cluster
    has no such topic. A consumer that joins nothing: it only asks for offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**common, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        # all topics' metadata: a request that creates nothing (asking for the one topic
        # would auto-create it where the cluster allows that)
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            return None
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        kept = pending = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            start = begin[tp] if committed is None else max(committed, begin[tp])
            kept += end[tp] - begin[tp]
            pending += max(0, end[tp] - start)
        return kept, pending
    finally:
        await consumer.stop()
