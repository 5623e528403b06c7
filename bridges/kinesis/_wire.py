"""How an envelope looks as a Kinesis record, and back (sans-IO).

Kinesis records have no headers: a record is a partition key and a blob. So the bridge
writes CloudEvents **structured** content mode (the JSON event format): one JSON object
per record with the context attributes, the extensions, and the encoded payload as
``data``::

    {"specversion": "1.0", "id": ..., "source": ..., "type": <bus topic>,
     "time": <RFC 3339>, "datacontenttype": "application/json",
     "deliveryattempt": 1, "partitionkey": <key, when there is one>,
     <user headers whose names are valid CloudEvents attribute names>...,
     "busheaders": "<the other headers, as a JSON object in a string>",
     "data": <the payload, as the codec wrote it>}

CloudEvents attribute names are lowercase letters and digits (at most 20 are
recommended), so a header such as ``traceparent`` is an extension attribute of its own,
while ``x-bus-origin`` or ``Tenant-Id`` travel inside the ``busheaders`` string (an
extension value must be a primitive). Every bus codec writes JSON, so the payload bytes
are spliced in as ``data`` without being parsed again.

Reading (:func:`decode`) accepts foreign records: a record that is not a JSON
object with ``specversion`` is a plain payload. Then the topic is the stream's, the key
the record's partition key, the id ``stream/shard/sequence``, the time the record's
arrival time. For our own records the topic is the stream's too (what the import pattern
matched); ``type`` is kept in :attr:`Incoming.type`. A CloudEvent's key is its
``partitionkey`` attribute; without one (a foreign producer's event), the record's
partition key, except when that is the event's id, which is what this module writes for
an envelope without a key (so a foreign producer that uses the event id as partition key
imports without a key: a key unique to each event orders nothing anyway).

Also here: the size limits of ``PutRecords`` and the cutting of a batch into calls.
This module does no I/O and imports no AWS client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from bus import Envelope

from .._cloudevents import CONTENT_TYPE, format_time, parse_time

__all__ = [
    "MAX_CALL_BYTES",
    "MAX_CALL_RECORDS",
    "MAX_RECORD_BYTES",
    "Incoming",
    "chunks",
    "decode",
    "encode",
    "partition_key",
    "record_size",
]

MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis: data + partition key of one record, at most 1 MiB."""
MAX_CALL_RECORDS = 500
"""Kinesis: records in one ``PutRecords`` call."""
MAX_CALL_BYTES = 5 * 1024 * 1024
"""Kinesis: data + partition keys of one ``PutRecords`` call, at most 5 MiB."""
MAX_KEY_CHARS = 256
"""Kinesis: a partition key is 1 to 256 Unicode characters."""

HEADERS_ATTR = "busheaders"
_ATTR_NAME = re.compile(r"[a-z0-9]{1,20}")
# Written by this module, or with a meaning of their own in the event format: a user
# header with one of these names travels inside ``busheaders`` instead.
_RESERVED = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema",
     "data", "data_base64", "partitionkey", "deliveryattempt", HEADERS_ATTR}
)
_MAPPED = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "data",
     "data_base64", "partitionkey", "deliveryattempt", HEADERS_ATTR}
)
_encode = msgspec.json.encode
_headers_decoder = msgspec.json.Decoder(dict[str, str])


class Incoming(NamedTuple):
    """What a record says about the envelope to deliver; the fields of
    :class:`bridges._cloudevents.Incoming`, as a tuple: made per record, and a frozen
    dataclass costs several times more to build."""

    topic: str
    id: str
    key: str | None
    time: float
    source: str | None
    attempt: int
    headers: dict[str, str]
    type: str | None
    content_type: str | None
    cloudevent: bool


def partition_key(env: Envelope[Any]) -> str:
    """The envelope's key, else its id; a key longer than Kinesis allows is replaced by
    its SHA-256 (the same key still lands on the same shard, so its order holds)."""
    key = env.key or env.id
    if len(key) > MAX_KEY_CHARS:
        return _long_key(key)
    return key


def encode(env: Envelope[Any], body: bytes) -> bytes:
    """The record data (a structured CloudEvent) for *env* whose encoded payload is *body*."""
    attrs: dict[str, Any] = {
        "specversion": "1.0",
        "id": env.id,
        "source": env.source,
        "type": env.topic,
        "time": format_time(env.time),
        "datacontenttype": CONTENT_TYPE,
        "deliveryattempt": env.attempt,
    }
    if env.key is not None:
        attrs["partitionkey"] = env.key
    if env.headers:
        other: dict[str, str] = {}
        for name, value in env.headers.items():
            if name in _RESERVED or not _ATTR_NAME.fullmatch(name):
                other[name] = value
            else:
                attrs[name] = value
        if other:
            attrs[HEADERS_ATTR] = _encode(other).decode()
    head = _encode(attrs)
    return b"".join((head[:-1], b',"data":', body or b"null", b"}"))


def record_size(data: bytes, key: str) -> int:
    """What a record counts against Kinesis's limits: its data and its partition key."""
    return len(data) + len(key.encode())


def chunks(
    sizes: Sequence[int],
    max_records: int = MAX_CALL_RECORDS,
    max_bytes: int = MAX_CALL_BYTES,
) -> Iterator[range]:
    """Cut records of these *sizes* (each within the record limit) into consecutive
    ranges that fit one ``PutRecords`` call each."""
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_records or total + size > max_bytes):
            yield range(start, i)
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


class _Data(msgspec.Struct):
    """Only the event's ``data``, as the JSON it is (the rest is skipped unparsed)."""

    data: msgspec.Raw = msgspec.Raw(b"null")


_data_decoder = msgspec.json.Decoder(_Data)


def _text(value: Any) -> str | None:
    """An attribute value as a header string; None for what is not a primitive."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def decode(
    topic: str,
    data: bytes,
    *,
    fallback_id: str,
    partition_key: str | None,
    arrival: float,
) -> tuple[Incoming, bytes]:
    """What to deliver for one record of the stream of *topic*: attributes and payload.

    Works for records without an envelope (foreign producers): the whole record is the
    payload then, and a payload that does not decode is dead-lettered by the port.
    """
    def foreign() -> tuple[Incoming, bytes]:
        return Incoming(topic, fallback_id, partition_key, arrival, None, 1, {}, None, None,
                        False), data

    if data[:1] != b"{" and not data.lstrip()[:1] == b"{":
        return foreign()
    try:
        # Two passes, both in C: the whole event as Python values, then its data as
        # the raw JSON it is (the payload codec decodes it once more, typed).
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return foreign()
    if not isinstance(event, dict) or "specversion" not in event:
        return foreign()
    headers: dict[str, str] = {}
    packed = event.get(HEADERS_ATTR)
    if packed:
        try:
            headers.update(_headers_decoder.decode(packed if isinstance(packed, str) else ""))
        except msgspec.DecodeError:
            headers[HEADERS_ATTR] = str(packed)
    for name, value in event.items():
        if name not in _MAPPED:  # an extension attribute: a header of that name
            text = _text(value)
            if text is not None:
                headers.setdefault(name, text)
    payload = _payload(data, event)
    if payload is None:
        return foreign()
    when = arrival
    stamp = event.get("time")
    if stamp and isinstance(stamp, str):
        parsed = parse_time(stamp)
        if parsed is not None:
            when = parsed
    try:
        attempt = max(1, int(event.get("deliveryattempt") or 1))
    except (TypeError, ValueError):
        attempt = 1
    event_id = _text(event.get("id")) or fallback_id
    key = event.get("partitionkey")
    incoming = Incoming(
        topic,
        event_id,
        _text(key) if key is not None else _record_key(partition_key, event_id),
        when,
        _text(event.get("source")) or None,
        attempt,
        headers,
        _text(event.get("type")),
        _text(event.get("datacontenttype")),
        True,
    )
    return incoming, payload


def _record_key(partition_key: str | None, event_id: str) -> str | None:
    """The key of a CloudEvent without ``partitionkey``: the record's partition key (a
    foreign producer's key), unless it is what :func:`partition_key` wrote for a keyless
    envelope of that id."""
    if partition_key is None or partition_key == event_id:
        return None
    if len(event_id) > MAX_KEY_CHARS and partition_key == _long_key(event_id):
        return None
    return partition_key


def _long_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _payload(data: bytes, event: dict[str, Any]) -> bytes | None:
    """The event's data as bytes: ``data`` as written, or ``data_base64`` decoded."""
    if "data" in event:
        return bytes(_data_decoder.decode(data).data)
    if "data_base64" in event:
        encoded = event["data_base64"]
        if not isinstance(encoded, str):
            return None
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
    return b"null"
