"""How an envelope looks on the AMQP wire, and back (sans-IO).

Binary content mode of the CloudEvents RabbitMQ binding (the Knative binding that
``cloudevents.core.bindings.rabbitmq`` implements): each context attribute is an AMQP
header ``ce-<name>``, ``datacontenttype`` is the message's ``content_type`` property,
the body is the encoded payload. The envelope's key travels as ``ce-partitionkey``;
user headers travel as they are. For consumers that read AMQP properties rather than
headers, ``message_id`` is the envelope id and ``timestamp`` its time.

Import reads the same and accepts foreign messages: the bus topic is always the routing
key (what the queue's binding matched); the id is ``ce-id``, else the AMQP
``message_id``, else a fresh one; the time is ``ce-time``, else the AMQP ``timestamp``.
Header values that are not strings (AMQP tables carry ints, bytes, timestamps...) are
turned into strings. Also here: hiding the password of a broker URL.

This module does not talk to the broker and imports no client library.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from bus import Envelope

__all__ = ["CE_PREFIX", "Incoming", "Outgoing", "from_amqp", "mask_url", "to_amqp"]

CE_PREFIX = "ce-"
_CE_DATACONTENTTYPE = "datacontenttype"
# Attributes that become envelope fields on import; any other ce- header stays a header.
_CE_FIELDS = frozenset(
    {"specversion", "id", "source", "type", "time", "partitionkey", "deliveryattempt"}
)


class Outgoing(NamedTuple):
    """What to publish for one envelope."""

    routing_key: str
    body: bytes
    headers: dict[str, str]
    content_type: str
    message_id: str
    timestamp: float


class Incoming(NamedTuple):
    """The keyword arguments of ``Port.deliver`` for one consumed message."""

    topic: str
    id: str
    key: str | None
    headers: dict[str, str]
    time: float
    attempt: int
    source: str | None


def to_amqp(env: Envelope[Any], body: bytes) -> Outgoing:
    """The AMQP message for *env* whose encoded payload is *body*."""
    attrs = env.cloudevent_attributes()
    content_type = attrs.pop(_CE_DATACONTENTTYPE)
    headers = dict(env.headers)
    for name, value in attrs.items():
        headers[CE_PREFIX + name] = value
    return Outgoing(env.topic, body, headers, content_type, env.id, env.time)


def from_amqp(
    routing_key: str,
    headers: Mapping[str, Any] | None,
    message_id: str | None,
    timestamp: _dt.datetime | float | None,
    app_id: str | None = None,
) -> Incoming:
    """Deliver arguments for a consumed message; works without any ``ce-`` header."""
    user: dict[str, str] = {}
    ce: dict[str, str] = {}
    for name, value in (headers or {}).items():
        text = _text(value)
        lname = name.lower()
        if lname.startswith(CE_PREFIX) and lname[len(CE_PREFIX):] in _CE_FIELDS:
            ce[lname[len(CE_PREFIX):]] = text
        else:
            user[name] = text
    event_id = ce.get("id") or message_id or f"amqp-{uuid.uuid4().hex}"
    return Incoming(
        topic=routing_key,
        id=event_id,
        key=ce.get("partitionkey"),
        headers=user,
        time=_time(ce.get("time"), timestamp),
        attempt=_attempt(ce.get("deliveryattempt")),
        source=ce.get("source") or app_id,
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, _dt.datetime):
        return _iso(value)
    return str(value)


def _iso(value: _dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def _time(ce_time: str | None, timestamp: _dt.datetime | float | None) -> float:
    if ce_time:
        try:
            parsed = _dt.datetime.fromisoformat(ce_time)
        except ValueError:
            pass  # a foreign producer's bad time: fall back, do not drop the message
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=_dt.UTC)
            return parsed.timestamp()
    if isinstance(timestamp, _dt.datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=_dt.UTC)
        return timestamp.timestamp()
    if isinstance(timestamp, int | float):
        return float(timestamp)
    return 0.0


def _attempt(value: str | None) -> int:
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        return 1


def mask_url(url: str) -> str:
    """*url* with the password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        user = parts.username or ""
        netloc = f"{user}:***@{host}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        # Unparseable (bad port...): show only the scheme rather than risk leaking it.
        return url.split("://", 1)[0] + "://***"
