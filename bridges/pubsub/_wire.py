"""How an envelope looks as a Pub/Sub message, and back (sans-IO).

Binary content mode of the CloudEvents Pub/Sub protocol binding (cloudevents/spec
``pubsub-protocol-binding.md``): each context attribute is a message attribute
``ce-<name>``, ``datacontenttype`` is the ``content-type`` attribute (attribute names are
case-insensitive there), the data is the encoded payload as it is. The envelope's key is
the message's ``ordering_key`` (what Pub/Sub orders by), not repeated as an attribute.
User headers travel as attributes of their own name.

Import accepts foreign messages: the bus topic is the subscription's topic; the id is
``ce-id``, else Pub/Sub's ``message_id``; the time ``ce-time``, else ``publish_time``;
the key the ``ordering_key`` (``""`` is no key).

:func:`problem` applies Pub/Sub's documented limits before sending, so a record the
service would refuse is dead-lettered with the reason instead of failing its whole
request: 10 MB a message (data, attributes and ordering key), 100 attributes, attribute
names up to 256 bytes not starting with ``goog``, values up to 1024 bytes, ordering keys
up to 1024 bytes.

This module does not talk to the broker and imports no client library.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from bus import Envelope

from .._cloudevents import (
    CONTENT_TYPE,
    Binding,
    Incoming,
    format_time,
    from_headers,
    to_headers,
)

__all__ = [
    "MAX_MESSAGE_BYTES", "PUBSUB", "Outgoing", "decode", "encode", "encode_checked", "problem",
]

PUBSUB = Binding("pubsub", "ce-", "content-type", key_header=False)
"""CloudEvents Pub/Sub binding: ``ce-`` attributes, ``content-type``, key = ordering key."""

MAX_MESSAGE_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_NAME_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024


class Outgoing(NamedTuple):
    """What to publish for one envelope."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str

    @property
    def size(self) -> int:
        """Bytes Pub/Sub counts against its message size limit."""
        n = len(self.data) + len(self.ordering_key.encode())
        for name, value in self.attributes.items():
            n += len(name.encode()) + len(value.encode())
        return n


def encode(env: Envelope[Any], body: bytes) -> Outgoing:
    """The Pub/Sub message for *env* whose encoded payload is *body*."""
    attributes = dict(to_headers(PUBSUB, env, CONTENT_TYPE))
    return Outgoing(body, attributes, env.key or "")


_SHORT = 200
"""Characters an id or ordering key may have for :func:`encode_checked`'s fast path: at
most 4 bytes each in UTF-8, 800 bytes, within every per-value limit."""
_CONSTANT: dict[tuple[str, str], tuple[dict[str, str], int] | None] = {}
"""(topic, source) -> the attributes that only depend on them and their characters, or
None when they need :func:`problem`'s full check (a topic or source over ``_SHORT``)."""
_CONSTANT_MAX = 4096


def _constant(topic: str, source: str) -> tuple[dict[str, str], int] | None:
    if len(_CONSTANT) >= _CONSTANT_MAX:
        _CONSTANT.clear()
    found: tuple[dict[str, str], int] | None = None
    if len(topic) <= _SHORT and len(source) <= _SHORT:
        attrs = {"ce-specversion": "1.0", "ce-source": source, "ce-type": topic,
                 "content-type": CONTENT_TYPE}
        found = attrs, sum(len(k) + len(v) for k, v in attrs.items())
    _CONSTANT[topic, source] = found
    return found


def encode_checked(
    env: Envelope[Any], body: bytes, max_bytes: int = MAX_MESSAGE_BYTES
) -> tuple[Outgoing, int] | str:
    """:func:`encode` and :func:`problem` in one, for the egress hot path: the message
    and an upper bound of its bytes beside the data in characters (attribute names and
    values, the key; a request's size is counted with it), or why Pub/Sub would refuse
    it. The attributes that only depend on the topic and source are built once; a
    message with no headers of its own and a short id and key is within every
    per-attribute limit by construction, so only its total size is checked; any other
    message gets :func:`problem`'s full check."""
    key = env.key or ""
    pair = (env.topic, env.source)
    constant = _CONSTANT[pair] if pair in _CONSTANT else _constant(*pair)
    ident = env.id
    if constant is None or env.headers or len(ident) > _SHORT or len(key) > _SHORT:
        out = encode(env, body)
        why = problem(out, max_bytes)
        if why is not None:
            return why
        chars = len(key) + sum(len(k) + len(v) for k, v in out.attributes.items())
        return out, chars
    attrs, chars = constant
    attributes = attrs.copy()
    attributes["ce-id"] = ident
    attributes["ce-time"] = when = format_time(env.time)
    attributes["ce-deliveryattempt"] = attempt = str(env.attempt)
    # 5 + 7 + 18: the names of the three attributes set here
    chars += 30 + len(ident) + len(when) + len(attempt) + len(key)
    if len(body) + chars * 4 > max_bytes:
        out = Outgoing(body, attributes, key)
        if out.size > max_bytes:
            return f"message of {out.size} bytes exceeds Pub/Sub's limit of {max_bytes} bytes"
    return Outgoing(body, attributes, key), chars


def problem(out: Outgoing, max_bytes: int = MAX_MESSAGE_BYTES) -> str | None:
    """Why Pub/Sub would refuse *out* for good, or None if it is within the limits."""
    attributes = out.attributes
    if len(attributes) > MAX_ATTRIBUTES:
        return (
            f"{len(attributes)} attributes (CloudEvents attributes and headers) exceed "
            f"Pub/Sub's limit of {MAX_ATTRIBUTES}"
        )
    chars = len(out.ordering_key)
    for name, value in attributes.items():
        chars += len(name) + len(value)
        # a character is at most 4 bytes in UTF-8: count bytes only when it may matter
        if len(name) * 4 > MAX_ATTRIBUTE_NAME_BYTES or not name:
            if not name or len(name.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
                return f"attribute name {name[:40]!r} must be 1-{MAX_ATTRIBUTE_NAME_BYTES} bytes"
        if len(value) * 4 > MAX_ATTRIBUTE_VALUE_BYTES:
            size = len(value.encode())
            if size > MAX_ATTRIBUTE_VALUE_BYTES:
                return (
                    f"attribute {name!r} has {size} bytes; Pub/Sub allows "
                    f"{MAX_ATTRIBUTE_VALUE_BYTES}"
                )
        if name[:4].lower() == "goog":
            return f"attribute name {name!r}: names starting with 'goog' are reserved"
    if len(out.ordering_key) * 4 > MAX_ORDERING_KEY_BYTES:
        if len(out.ordering_key.encode()) > MAX_ORDERING_KEY_BYTES:
            return f"key of more than {MAX_ORDERING_KEY_BYTES} bytes cannot be an ordering key"
    if len(out.data) + chars * 4 > max_bytes:
        size = out.size
        if size > max_bytes:
            return f"message of {size} bytes exceeds Pub/Sub's limit of {max_bytes} bytes"
    return None


def decode(
    topic: str,
    attributes: Iterable[tuple[str, str]],
    message_id: str,
    ordering_key: str,
    publish_time: _dt.datetime | float | None,
) -> Incoming:
    """What to deliver for a received message; works without any ``ce-`` attribute."""
    return from_headers(
        PUBSUB, attributes, topic=topic, fallback_id=message_id or f"{topic}-?",
        key=ordering_key or None, time=_seconds(publish_time),
    )


def _seconds(when: _dt.datetime | float | None) -> float:
    if when is None:
        return 0.0
    if isinstance(when, int | float):
        return float(when)
    if when.tzinfo is None:  # protobuf Timestamps are UTC
        when = when.replace(tzinfo=_dt.UTC)
    return when.timestamp()
