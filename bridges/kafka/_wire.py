"""How an envelope looks as a Kafka record, both ways (sans-IO: imports no client).

- :func:`encode`: bus topic = Kafka topic; envelope key = record key (one key, one
  partition, in order); payload = the topic codec's bytes; timestamp in milliseconds;
  envelope attributes and headers = CloudEvents binary mode ``ce_`` headers
  (``bridges._cloudevents``). :func:`encode_batch` does a whole export batch, setting
  aside the envelopes whose payload cannot be encoded (each a dead letter);
- :func:`decode`: what to deliver for a consumed record; a foreign record without
  CloudEvents headers still imports, its place in the log (``topic-partition-offset``)
  being its id. :func:`aiokafka_items` and :func:`confluent_items` do the same for one
  partition's records of a poll, as ``Port.deliver_many`` takes them, through the
  cheap :func:`~bridges._cloudevents.kafka_attributes` (``decode`` where it declines).

Both Kafka clients (aiokafka, confluent-kafka) use this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bus import Envelope
from bus.abc import ImportItem, Port, Rejected

from .._cloudevents import KAFKA, Incoming, from_headers, kafka_attributes, to_kafka_headers

__all__ = ["Record", "aiokafka_items", "confluent_items", "decode", "encode", "encode_batch"]

CACHE_SIZE = 4096
"""Decoded header values and keys remembered per consumer (bytes -> str): sources and
keys repeat; past this many the cache starts again."""

Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]], int | None]
"""A record to send: topic, value, key, headers, timestamp in ms (None: the broker's)."""


def encode(env: Envelope[Any], value: bytes) -> Record:
    """The record for *env* whose encoded payload is *value*."""
    key = env.key.encode() if env.key is not None else None
    ts = int(env.time * 1000) if env.time > 0 else None
    return env.topic, value, key, to_kafka_headers(env), ts


def encode_batch(
    batch: Sequence[Envelope[Any]], port: Port
) -> tuple[list[Record], dict[int, BaseException]]:
    """The records to send, and the positions of envelopes that cannot be encoded
    (a :class:`Rejected` each: they can never be sent)."""
    records: list[Record] = []
    unencodable: dict[int, BaseException] = {}
    for i, env in enumerate(batch):
        try:
            value = port.encode(env)
        except Exception as exc:  # this record can never be sent: dead-letter it
            unencodable[i] = Rejected(f"cannot encode the payload for {env.topic!r}: {exc}")
            continue
        records.append(encode(env, value))
    return records, unencodable


def decode(
    topic: str, partition: int, offset: int, timestamp_ms: int | None,
    headers: Iterable[tuple[str, Any]], key: bytes | str | None,
) -> Incoming:
    """What to deliver for a consumed record; works without any ``ce_`` header."""
    inc = from_headers(
        KAFKA, headers, topic=topic, fallback_id="", key=key,
        time=timestamp_ms / 1000 if timestamp_ms is not None else 0.0,
    )
    if not inc.id:  # a foreign record: its place in the log is its identity
        inc.id = f"{topic}-{partition}-{offset}"
    return inc


Batch = tuple[str, int, int, list[ImportItem]]
"""One partition's records of a poll: topic, first and last offset, what to deliver."""


def _item(
    topic: str, partition: int, offset: int, ts: int | None, headers: Any, key: Any,
    value: bytes | None, cache: dict[Any, str],
) -> ImportItem:
    time = ts / 1000 if ts is not None else 0.0
    attrs = kafka_attributes(headers, time, cache)
    data = value if value is not None else b""  # a tombstone: dead-lettered
    if attrs is None:
        inc = decode(topic, partition, offset, ts, headers, key)
        return inc.id, inc.key, inc.headers or None, inc.time, inc.attempt, inc.source, data
    id, source, hdrs, time, attempt, text = attrs
    if type(key) is bytes:
        text = cache.get(key)
        if text is None:
            text = key.decode("utf-8", "replace")
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[key] = text
    elif key is not None:
        text = key if isinstance(key, str) else bytes(key).decode("utf-8", "replace")
    return id or f"{topic}-{partition}-{offset}", text, hdrs, time, attempt, source, data


def aiokafka_items(records: Sequence[Any], cache: dict[Any, str]) -> Batch:
    """One partition's ``ConsumerRecord`` s, for ``Port.deliver_many``."""
    first = records[0]
    topic, partition = first.topic, first.partition
    items = [
        _item(topic, partition, r.offset, r.timestamp, r.headers, r.key, r.value, cache)
        for r in records
    ]
    return topic, first.offset, records[-1].offset, items


def confluent_items(records: Sequence[Any], cache: dict[Any, str]) -> Batch:
    """One partition's confluent-kafka ``Message`` s, for ``Port.deliver_many``."""
    first = records[0]
    topic, partition = first.topic(), first.partition()
    items = []
    for r in records:
        kind, ts = r.timestamp()
        items.append(_item(
            topic, partition, r.offset(), ts if kind else None, r.headers() or (), r.key(),
            r.value(), cache,
        ))
    return topic, first.offset(), records[-1].offset(), items
