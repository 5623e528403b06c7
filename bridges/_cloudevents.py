"""CloudEvents binary content mode: envelope attributes <-> broker message headers.

Shared by the Kafka and RabbitMQ bridges; each names its :class:`Binding`:

- :data:`KAFKA` (CloudEvents Kafka protocol binding): attributes as ``ce_<name>``
  headers, ``datacontenttype`` as the ``content-type`` header, ``partitionkey`` as the
  record key (not repeated in a header);
- :data:`RABBITMQ` (the Knative RabbitMQ binding, ``cloudevents.core.bindings.rabbitmq``
  in the ``cloudevents`` SDK 2.2): attributes as ``ce-<name>`` headers, ``partitionkey``
  among them, ``datacontenttype`` as the AMQP ``content_type`` property (the bridge sets
  it from :data:`CONTENT_TYPE`; no header).

What goes out (:func:`to_headers`), for an envelope: ``specversion`` 1.0, ``id``,
``source``, ``type`` (= the topic), ``time`` (RFC 3339, UTC), ``deliveryattempt``, the key
where the binding carries it in a header, then the envelope's own headers as they are
(a user header that would read as an attribute, ``ce_...`` or ``content-type``, is not
sent: the attributes win).

What comes in (:func:`from_headers`): an :class:`Incoming` with the attributes found, and
for a foreign message without them the broker's own facts: the topic is always the
broker's topic or routing key (what the import pattern matched), the id falls back to
the broker's message id or ``topic-partition-offset``, the time to the broker's
timestamp. CloudEvents extensions we do not map (``traceparent``, ``subject``...) become
plain headers under their attribute name; other headers travel as they are.

Trace context: an envelope's W3C ``traceparent`` and ``tracestate`` headers go out
twice, as the plain headers W3C Trace Context and OpenTelemetry's messaging
instrumentations read, and as the CloudEvents distributed tracing extension's attributes
(``ce_traceparent``/``ce-traceparent``...), which a CloudEvents SDK reports. On the way in
a plain header wins over the attribute; a message carrying only the attribute (a
CloudEvents SDK producer) gets the plain header from it.

This module does no I/O and imports no broker client or CloudEvents SDK.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bus import Envelope

__all__ = [
    "CONTENT_TYPE",
    "KAFKA",
    "RABBITMQ",
    "Binding",
    "Incoming",
    "format_time",
    "from_headers",
    "parse_time",
    "to_headers",
    "to_kafka_headers",
]

CONTENT_TYPE = "application/json"
"""Every bus codec writes JSON."""

_UTC = _dt.UTC
# Attributes read into Incoming fields; every other ce_ attribute becomes a header.
_MAPPED = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "deliveryattempt",
     "partitionkey"}
)


@dataclass(frozen=True, slots=True)
class Binding:
    """How one protocol binding spells CloudEvents attributes in message headers."""

    name: str
    prefix: str
    """Prefix of attribute headers: ``ce_`` (Kafka) or ``ce-`` (RabbitMQ)."""
    content_type_header: str | None
    """Header carrying ``datacontenttype``; ``None`` where a message property does."""
    key_header: bool
    """``partitionkey`` travels as a header (else as the broker's record key)."""


KAFKA = Binding("kafka", "ce_", "content-type", key_header=False)
RABBITMQ = Binding("rabbitmq", "ce-", None, key_header=True)


@dataclass(slots=True)
class Incoming:
    """What a received message says about the envelope to deliver. (Not frozen: one is
    made per imported message, and a frozen dataclass's ``__init__`` is several times
    slower.)"""

    topic: str
    """The broker's topic or routing key."""
    id: str
    key: str | None
    time: float
    """Seconds since the epoch; 0.0 when neither the event nor the broker said."""
    source: str | None
    """``None`` for a foreign message: the port then names the bridge."""
    attempt: int
    headers: dict[str, str]
    type: str | None
    """The CloudEvents ``type``; equal to :attr:`topic` for what a bus wrote."""
    content_type: str | None
    """``datacontenttype`` if the message carried it in a header."""
    cloudevent: bool
    """True if the message had CloudEvents attributes (``specversion``)."""


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with a ``Z``, as the CloudEvents SDK writes it.

    The egress hot path (every exported message): the text up to the second is built
    once per second and reused; only the microseconds are formatted per call. Equal to
    ``datetime.fromtimestamp(seconds, UTC).isoformat()`` with ``+00:00`` as ``Z``
    (rounded half-even to the microsecond, no fraction when it is zero).
    """
    if seconds < 0:  # before 1970: rare, the long way
        return _format_time_slowly(seconds)
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)  # exact fraction, half-even like datetime
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    cached = _second
    if cached[0] != whole:
        cached = _second[:] = [whole, _format_time_slowly(whole)[:-1]]
    prefix: str = cached[1]
    return f"{prefix}.{micros:06d}Z" if micros else prefix + "Z"


_second: list[Any] = [None, ""]
"""The last whole second :func:`format_time` formatted, and its text without the ``Z``."""


def _format_time_slowly(seconds: float) -> str:
    text = _dt.datetime.fromtimestamp(seconds, _UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(text: str) -> float | None:
    """Seconds since the epoch from an RFC 3339 timestamp; ``None`` if it is not one."""
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:  # RFC 3339 requires an offset; read a naive one as UTC
        value = value.replace(tzinfo=_UTC)
    return value.timestamp()


def to_headers(
    binding: Binding, env: Envelope[Any], content_type: str = CONTENT_TYPE
) -> list[tuple[str, str]]:
    """The message headers for one envelope's attributes and headers, as strings."""
    p = binding.prefix
    out = [
        (p + "specversion", "1.0"),
        (p + "id", env.id),
        (p + "source", env.source),
        (p + "type", env.topic),
        (p + "time", format_time(env.time)),
        (p + "deliveryattempt", str(env.attempt)),
    ]
    if binding.content_type_header is not None:
        out.append((binding.content_type_header, content_type))
    if env.key is not None and binding.key_header:
        out.append((p + "partitionkey", env.key))
    headers = env.headers
    if headers:
        ct = binding.content_type_header
        for name, value in headers.items():
            lowered = name.lower()
            if lowered.startswith(p) or lowered == ct:
                continue
            out.append((name, value))
        parent = headers.get("traceparent")
        if parent is not None:  # the distributed tracing extension too (module docstring)
            out.append((p + "traceparent", parent))
            state = headers.get("tracestate")
            if state is not None:
                out.append((p + "tracestate", state))
    return out


_KAFKA_CT = ("content-type", CONTENT_TYPE.encode())
_KAFKA_SPEC = ("ce_specversion", b"1.0")
_KAFKA_ATTEMPT_1 = ("ce_deliveryattempt", b"1")
_KAFKA_CONSTANT: dict[tuple[str, str], tuple[tuple[str, bytes], tuple[str, bytes]]] = {}
"""(topic, source) -> the encoded ``ce_source`` and ``ce_type`` headers: an export sends
the same few topics from one source, so these are encoded once, not per record."""
_KAFKA_CONSTANT_MAX = 4096
"""Entries kept at most (a bus exporting ever new topic names clears it now and then)."""


def to_kafka_headers(env: Envelope[Any]) -> list[tuple[str, bytes]]:
    """``to_headers(KAFKA, env)`` with UTF-8 values, as Kafka records carry them; the
    egress hot path, so written out rather than encoded from the generic list: headers
    that only depend on the topic and source are encoded once and shared (header pairs
    are immutable tuples: sharing them between records is safe); per record, only
    ``id``, ``time`` and (after a retry) ``deliveryattempt`` are encoded."""
    topic, source, attempt = env.topic, env.source, env.attempt
    constant = _KAFKA_CONSTANT.get((topic, source))
    if constant is None:
        if len(_KAFKA_CONSTANT) >= _KAFKA_CONSTANT_MAX:
            _KAFKA_CONSTANT.clear()
        constant = _KAFKA_CONSTANT[topic, source] = (
            ("ce_source", source.encode()), ("ce_type", topic.encode()),
        )
    out = [
        _KAFKA_SPEC,
        ("ce_id", env.id.encode()),
        constant[0],
        constant[1],
        ("ce_time", format_time(env.time).encode()),
        _KAFKA_ATTEMPT_1 if attempt == 1 else ("ce_deliveryattempt", str(attempt).encode()),
        _KAFKA_CT,
    ]
    headers = env.headers
    if headers:
        for name, value in headers.items():
            lowered = name.lower()
            if not lowered.startswith("ce_") and lowered != "content-type":
                out.append((name, value.encode()))
        parent = headers.get("traceparent")
        if parent is not None:
            out.append(("ce_traceparent", parent.encode()))
            state = headers.get("tracestate")
            if state is not None:
                out.append(("ce_tracestate", state.encode()))
    return out


_KNOWN: dict[Binding, dict[str, str]] = {}


def _known(binding: Binding) -> dict[str, str]:
    """Header name -> attribute, for the exact spellings a bus writes."""
    known = _KNOWN.get(binding)
    if known is None:
        known = {binding.prefix + attr: attr for attr in _MAPPED}
        if binding.content_type_header is not None:
            known[binding.content_type_header] = "datacontenttype"
        _KNOWN[binding] = known
    return known


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def from_headers(
    binding: Binding,
    items: Iterable[tuple[str, Any]],
    *,
    topic: str,
    fallback_id: str,
    key: str | bytes | None = None,
    time: float = 0.0,
    content_type: str | None = None,
) -> Incoming:
    """Read one received message's headers (*items*: name, ``str`` or ``bytes``).

    *topic*, *fallback_id*, *key* and *time* are the broker's own facts (record key,
    timestamp in seconds); *content_type* a message property where the binding keeps
    ``datacontenttype`` there.
    """
    # Hot path (every imported message): exact names of the attributes we map are one
    # dict lookup; only other headers pay for lower() and the prefix test.
    known = _known(binding)
    p = binding.prefix
    n = len(p)
    ct_header = binding.content_type_header
    attrs: dict[str, str] = {}
    headers: dict[str, str] = {}
    extensions = False
    for name, raw in items:
        value = raw.decode("utf-8", "replace") if type(raw) is bytes else _text(raw)
        attr = known.get(name)
        if attr is not None:
            attrs[attr] = value
            continue
        lowered = name.lower()
        if lowered.startswith(p):
            attr = lowered[n:]
            attrs[attr] = value
            extensions = extensions or attr not in _MAPPED
        elif ct_header is not None and lowered == ct_header:
            attrs["datacontenttype"] = value
        else:
            headers[name] = value
    if extensions:
        for attr, value in attrs.items():
            if attr not in _MAPPED:
                headers.setdefault(attr, value)
    if key is None:
        key = attrs.get("partitionkey")
    elif not isinstance(key, str):
        key = _text(key)
    when = time
    if "time" in attrs:
        parsed = parse_time(attrs["time"])
        if parsed is not None:
            when = parsed
    attempt = 1
    if "deliveryattempt" in attrs:
        try:
            attempt = max(1, int(attrs["deliveryattempt"]))
        except ValueError:
            attempt = 1
    return Incoming(
        topic=topic,
        id=attrs.get("id") or fallback_id,
        key=key,
        time=when,
        source=attrs.get("source") or None,
        attempt=attempt,
        headers=headers,
        type=attrs.get("type"),
        content_type=attrs.get("datacontenttype", content_type),
        cloudevent="specversion" in attrs,
    )
