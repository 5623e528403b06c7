"""How an :class:`EventMessage` looks as a Redis stream entry (sans-IO: imports no
client library).

An entry's fields: ``data`` (the message's data as JSON), ``key`` (only when the
message has one), ``ts`` (the timestamp in milliseconds) and one ``h:<name>`` field per
header, so a header can never collide with the others. Entries written by other tools
are read too: a missing ``ts`` is the entry id's time, a ``data`` field that is not a
JSON object gives empty data and an ``x-decode-error`` header saying why, so a typed
consumer dead-letters it instead of stopping on it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus.events import EventMessage

__all__ = ["decode", "encode", "entry_id"]

_HEADER = "h:"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


def encode(message: EventMessage) -> dict[str, bytes]:
    """The stream entry fields for *message* (checked by the caller: str key/headers).

    Raises:
        PayloadTypeError: the data is not JSON-serializable (via ``encode_message``).
    """
    fields = {"data": _encoder.encode(message.data), "ts": str(message.timestamp).encode()}
    if message.key is not None:
        fields["key"] = message.key.encode()
    for name, value in message.headers.items():
        fields[_HEADER + name] = value.encode()
    return fields


def decode(topic: str, raw_id: bytes | str, fields: dict[bytes, bytes]) -> EventMessage:
    """The message an entry holds; never raises (see the module docstring)."""
    text = {_text(k): v for k, v in fields.items()}
    headers = {k[len(_HEADER):]: _text(v) for k, v in text.items() if k.startswith(_HEADER)}
    try:
        data = _decoder.decode(text["data"])
    except KeyError:
        data, headers["x-decode-error"] = {}, "the stream entry has no 'data' field"
    except msgspec.DecodeError as exc:
        data, headers["x-decode-error"] = {}, f"'data' is not a JSON object: {exc}"
    key = _text(text["key"]) if "key" in text else None
    try:
        timestamp = int(text["ts"])
    except (KeyError, ValueError):
        timestamp = entry_id(raw_id)[0]
    return EventMessage(topic=topic, data=data, key=key, headers=headers, timestamp=timestamp)


def entry_id(raw: bytes | str) -> tuple[int, int]:
    """``b"1700000000000-3"`` as ``(1700000000000, 3)``, comparable in stream order."""
    ms, _, seq = _text(raw).partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
