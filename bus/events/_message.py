"""The seed's wire record: :class:`EventMessage`, what every facade adapter moves.

An ``EventMessage`` is deliberately plain — topic, JSON-able ``data``, optional key,
string headers and a millisecond timestamp — because it is the lowest common
denominator of Kafka records, AMQP messages, Kinesis records and Pub/Sub messages.
Typed models live one layer up, in :class:`~bus.events.BaseEvent`; this module does not know
about them. It also holds the one JSON codec the memory broker uses to store messages as
bytes, exactly as a real broker would.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from bus import DecodeError, PayloadTypeError

__all__ = ["EventMessage", "decode_message", "encode_message", "now_ms"]


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch: brokers stamp records the same way."""
    # Wall clock, not trio's clock: the timestamp is data that leaves the process
    # (Kafka CreateTime, AMQP timestamp), so it must mean the same thing everywhere.
    return time.time_ns() // 1_000_000


class EventMessage(msgspec.Struct):
    """One event as the adapters see it.

    ``data`` is the JSON-able form of a model (what the seed got from
    ``model.model_dump()``; here ``msgspec.to_builtins(obj)``). ``headers`` are string
    to string, the only header shape every broker supports.
    """

    topic: str
    data: dict[str, Any]
    key: str | None = None
    headers: dict[str, str] = {}
    timestamp: int = msgspec.field(default_factory=now_ms)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(EventMessage)


def encode_message(message: EventMessage) -> bytes:
    """Encode ``message`` to JSON bytes, checking what msgspec's encoder does not.

    Raises:
        PayloadTypeError: ``message`` is not an ``EventMessage``, its key or headers are
            not strings, or its data is not JSON-serializable.
    """
    if not isinstance(message, EventMessage):
        raise PayloadTypeError(
            f"adapters publish EventMessage objects, got {type(message).__name__}"
        )
    # msgspec encodes whatever it is given; a broker would reject a non-string header
    # value, so the memory broker rejects it too instead of failing later on decode.
    if not isinstance(message.data, dict):
        raise PayloadTypeError(
            f"topic {message.topic!r}: EventMessage.data must be a dict (JSON object), "
            f"got {type(message.data).__name__}"
        )
    if message.key is not None and not isinstance(message.key, str):
        raise PayloadTypeError(
            f"topic {message.topic!r}: key must be a str or None, got {type(message.key).__name__}"
        )
    for name, value in message.headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise PayloadTypeError(
                f"topic {message.topic!r}: headers must map str to str, "
                f"got {name!r}: {type(value).__name__}"
            )
    try:
        return _encoder.encode(message)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadTypeError(
            f"topic {message.topic!r}: data is not JSON-serializable: {exc}"
        ) from exc


def decode_message(payload: bytes) -> EventMessage:
    """Decode bytes made by :func:`encode_message`.

    Raises:
        DecodeError: the bytes are not a valid encoded ``EventMessage``.
    """
    try:
        return _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not an encoded EventMessage: {exc}") from exc
