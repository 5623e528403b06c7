"""How an envelope looks on the AMQP wire, and back (sans-IO).

Binary content mode of the CloudEvents RabbitMQ binding, through the shared
:mod:`bridges._cloudevents` (:data:`~bridges._cloudevents.RABBITMQ`): each context
attribute is an AMQP header ``ce-<name>`` (the key as ``ce-partitionkey``),
``datacontenttype`` is the message's ``content_type`` property, the body is the encoded
payload, user headers travel as they are. For consumers that read AMQP properties rather
than headers, ``message_id`` is the envelope id and ``timestamp`` its time.

Import accepts foreign messages: the bus topic is always the routing key (what the
queue's binding matched); the id is ``ce-id``, else the AMQP ``message_id``, else a fresh
one (AMQP has no offset to derive one from); the time is ``ce-time``, else the AMQP
``timestamp``; the source ``ce-source``, else the AMQP ``app_id``. Also here: hiding the
password of a broker URL.

This module does not talk to the broker and imports no client library.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from bus import Envelope
from bus.abc import mask_url

from .._cloudevents import CONTENT_TYPE, RABBITMQ, Incoming, from_headers, to_headers

__all__ = ["Incoming", "Outgoing", "decode", "encode", "mask_url"]


class Outgoing(NamedTuple):
    """What to publish for one envelope."""

    routing_key: str
    body: bytes
    headers: dict[str, str]
    content_type: str
    message_id: str
    timestamp: float


def encode(env: Envelope[Any], body: bytes) -> Outgoing:
    """The AMQP message for *env* whose encoded payload is *body*."""
    headers = dict(to_headers(RABBITMQ, env))
    return Outgoing(env.topic, body, headers, CONTENT_TYPE, env.id, env.time)


def decode(
    routing_key: str,
    headers: Mapping[str, Any] | None,
    message_id: str | None,
    timestamp: _dt.datetime | float | None,
    app_id: str | None = None,
) -> Incoming:
    """What to deliver for a consumed message; works without any ``ce-`` header."""
    incoming = from_headers(
        RABBITMQ, (headers or {}).items(), topic=routing_key,
        fallback_id=message_id or f"amqp-{uuid.uuid4().hex}", time=_seconds(timestamp),
    )
    if incoming.source is None and app_id:
        return dataclasses.replace(incoming, source=app_id)
    return incoming


def _seconds(timestamp: _dt.datetime | float | None) -> float:
    if isinstance(timestamp, _dt.datetime):
        if timestamp.tzinfo is None:  # AMQP timestamps are seconds since the epoch, UTC
            timestamp = timestamp.replace(tzinfo=_dt.UTC)
        return timestamp.timestamp()
    if isinstance(timestamp, int | float):
        return float(timestamp)
    return 0.0
