"""How an envelope looks as a Kafka record, both ways (sans-IO: imports no client).

- :func:`encode`: bus topic = Kafka topic; envelope key = record key (one key, one
  partition, in order); payload = the topic codec's bytes; timestamp in milliseconds;
  envelope attributes and headers = CloudEvents binary mode ``ce_`` headers
  (``bridges._cloudevents``). :func:`encode_batch` does a whole export batch, setting
  aside the envelopes whose payload cannot be encoded (each a dead letter);
- :func:`decode`: what to deliver for a consumed record; a foreign record without
  CloudEvents headers still imports, its place in the log (``topic-partition-offset``)
  being its id.

Both Kafka clients (aiokafka, confluent-kafka) use this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bus import Envelope
from bus.abc import Port, Rejected

from .._cloudevents import KAFKA, Incoming, from_headers, to_kafka_headers

__all__ = ["Record", "decode", "encode", "encode_batch"]

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
