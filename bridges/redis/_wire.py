"""How an :class:`EventMessage` looks as a Redis stream entry, and redis-py's errors as
the bus's (sans-IO: imports no client library).

An entry's fields: ``data`` (the message's data as JSON), ``key`` (only when the
message has one), ``ts`` (the timestamp in milliseconds) and one ``h:<name>`` field per
header, so a header can never collide with the others. Entries written by other tools
are read too: a missing ``ts`` is the entry id's time, a ``data`` field that is not a
JSON object gives empty data and an ``x-decode-error`` header saying why, so a typed
consumer dead-letters it instead of stopping on it.

Errors: a refused login is a :class:`~bus.BackendError`; the server unreachable, a
dropped connection or a timeout a :class:`~bus.BackendUnavailableError`; anything else
the server answers (``WRONGTYPE``, ``NOGROUP``...) a :class:`~bus.BackendError`. The
messages name the server by its masked URL and never contain its password.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus import BackendError, BackendUnavailableError
from bus.abc import mask_url, redact
from bus.events import EventMessage

__all__ = [
    "decode_entry",
    "encode_entry",
    "entry_id",
    "is_client_error",
    "is_no_group",
    "translate",
]

_HEADER = "h:"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_entry(message: EventMessage) -> dict[str, bytes]:
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


def decode_entry(topic: str, raw_id: bytes | str, fields: dict[bytes, bytes]) -> EventMessage:
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


def is_client_error(exc: BaseException) -> bool:
    """True for exceptions raised by redis-py or the network below it."""
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("redis")


def is_no_group(exc: BaseException) -> bool:
    """The stream or its consumer group is gone: deleted between two reads (NOGROUP) or
    during a blocking one (UNBLOCKED)."""
    return type(exc).__name__ == "ResponseError" and str(exc).startswith(
        ("NOGROUP", "UNBLOCKED")
    )


def translate(exc: BaseException, url: str, password: str | None) -> BackendError:
    """The bus error for *exc*; the caller raises it ``from exc``."""
    if isinstance(exc, BackendError):
        return exc
    where = f"Redis at {mask_url(url)}"
    what = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, password)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"AuthenticationError", "AuthenticationWrongNumberOfArgsError"}:
        return BackendError(f"{where}: login refused ({what}); check the URL's credentials")
    if names & {"ConnectionError", "TimeoutError", "BusyLoadingError", "OSError"}:
        return BackendUnavailableError(f"{where} is unreachable ({what})")
    return BackendError(f"{where}: {what}")
