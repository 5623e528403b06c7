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

Reading (:func:`from_record`) accepts foreign records: a record that is not a JSON
object with ``specversion`` is a plain payload. Then the topic is the stream's, the key
the record's partition key, the id ``stream/shard/sequence``, the time the record's
arrival time. For our own records the topic is the stream's too (what the import pattern
matched); ``type`` is kept in :attr:`Incoming.type`.

Also here: the size limits of ``PutRecords`` and the cutting of a batch into calls.
This module does no I/O and imports no AWS client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from bus import Envelope

from .._cloudevents import CONTENT_TYPE, Incoming, format_time, parse_time

__all__ = [
    "MAX_CALL_BYTES",
    "MAX_CALL_RECORDS",
    "MAX_RECORD_BYTES",
    "chunks",
    "from_record",
    "partition_key",
    "record_size",
    "to_record",
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
_attrs_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_headers_decoder = msgspec.json.Decoder(dict[str, str])


def partition_key(env: Envelope[Any]) -> str:
    """The envelope's key, else its id; a key longer than Kinesis allows is replaced by
    its SHA-256 (the same key still lands on the same shard, so its order holds)."""
    key = env.key or env.id
    if len(key) > MAX_KEY_CHARS:
        return hashlib.sha256(key.encode()).hexdigest()
    return key


def to_record(env: Envelope[Any], body: bytes) -> bytes:
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


def _text(raw: msgspec.Raw) -> str | None:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return None


def from_record(
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
    foreign = Incoming(
        topic=topic, id=fallback_id, key=partition_key, time=arrival, source=None,
        attempt=1, headers={}, type=None, content_type=None, cloudevent=False,
    )
    if not data.startswith(b"{") and not data.lstrip().startswith(b"{"):
        return foreign, data
    try:
        raw = _attrs_decoder.decode(data)
    except msgspec.DecodeError:
        return foreign, data
    if "specversion" not in raw:
        return foreign, data
    attrs = {name: _text(value) for name, value in raw.items() if name not in ("data",)}
    headers: dict[str, str] = {}
    packed = attrs.get(HEADERS_ATTR)
    if packed:
        try:
            headers.update(_headers_decoder.decode(packed))
        except msgspec.DecodeError:
            headers[HEADERS_ATTR] = packed
    for name, value in attrs.items():
        if name not in _MAPPED and value is not None:
            headers.setdefault(name, value)
    payload = _payload(raw, attrs)
    if payload is None:
        return foreign, data
    when = arrival
    if attrs.get("time"):
        parsed = parse_time(attrs["time"] or "")
        if parsed is not None:
            when = parsed
    attempt = 1
    try:
        attempt = max(1, int(attrs.get("deliveryattempt") or 1))
    except ValueError:
        attempt = 1
    incoming = Incoming(
        topic=topic,
        id=attrs.get("id") or fallback_id,
        key=attrs.get("partitionkey") if "partitionkey" in attrs else None,
        time=when,
        source=attrs.get("source") or None,
        attempt=attempt,
        headers=headers,
        type=attrs.get("type"),
        content_type=attrs.get("datacontenttype"),
        cloudevent=True,
    )
    return incoming, payload


def _payload(raw: dict[str, msgspec.Raw], attrs: dict[str, str | None]) -> bytes | None:
    """The event's data as bytes: ``data`` as written, or ``data_base64`` decoded."""
    if "data" in raw:
        return bytes(raw["data"])
    if "data_base64" in raw:
        encoded = attrs.get("data_base64")
        if encoded is None:
            return None
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
    return b"null"
