"""Payload schemas, messages and the CloudEvents message traits of an AsyncAPI document.

Payload schemas come from msgspec's JSON Schema (:func:`msgspec.json.schema_components`),
every named type once under ``components/schemas`` and referenced from the messages. A
topic of raw bytes (``RawCodec``) has no schema: its message says
``application/octet-stream``. A type msgspec cannot describe (an opaque class, a
pydantic model) gets an empty schema named after the type in ``x-trio-bus-type``; the
document stays valid, it only says less.

The CloudEvents mapping is a message trait per way of carrying it (binary mode headers
with ``ce_`` or ``ce-`` names, structured mode as the JSON event format): the context
attributes every envelope has (``id``, ``source``, ``type``, ``time``, ``specversion``,
``deliveryattempt``) as header schemas. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from .._codec import Codec, RawCodec, codec_for
from .._envelope import (
    H_ATTEMPTS,
    H_CORRELATION_ID,
    H_DEAD_LETTER_ORIGIN,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_IDEMPOTENCY_KEY,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    H_REPLY_TO,
)
from .._trace import TRACEPARENT, TRACESTATE

__all__ = [
    "CLOUDEVENTS_ATTRIBUTES",
    "PayloadSchemas",
    "cloudevents_trait",
    "dead_letter_trait",
    "envelope_trait",
    "structured_payload",
]

SCHEMA_REF = "#/components/schemas/{name}"

CLOUDEVENTS_ATTRIBUTES: Mapping[str, Mapping[str, Any]] = {
    "specversion": {"type": "string", "const": "1.0",
                    "description": "CloudEvents specification version."},
    "id": {"type": "string", "description": "The envelope id: unique, sortable."},
    "source": {"type": "string", "description": "The bus (or bridge) that produced it."},
    "type": {"type": "string", "description": "The bus topic."},
    "time": {"type": "string", "format": "date-time",
             "description": "When it was published (RFC 3339, UTC)."},
    "deliveryattempt": {"type": "integer", "minimum": 1,
                        "description": "The delivery attempt (1 on first delivery)."},
}
"""The CloudEvents context attributes a bus envelope carries (SPEC §1, envelope)."""


def _payload_type(codec: Codec[Any] | None, tp: Any) -> tuple[Any, bool]:
    """(type to describe, raw?) for a topic's codec or declared type."""
    if isinstance(codec, RawCodec):
        return bytes, True
    if codec is not None:
        return codec.type, False
    return tp, False


class PayloadSchemas:
    """Collects the payload types of a document; :meth:`schema` answers for one of them
    and :meth:`components` gives ``components/schemas`` once all were added."""

    def __init__(self) -> None:
        self._types: list[Any] = []
        self._raw: set[int] = set()

    def add(self, codec: Codec[Any] | None = None, tp: Any = object) -> int:
        """Register the payload of one topic; returns a handle for :meth:`message`."""
        payload, raw = _payload_type(codec, tp)
        self._types.append(payload)
        if raw:
            self._raw.add(len(self._types) - 1)
        return len(self._types) - 1

    def resolve(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(one schema per handle, the named components), msgspec's where it can."""
        schemas: list[dict[str, Any]] = []
        components: dict[str, Any] = {}
        describable: list[int] = []
        for i, tp in enumerate(self._types):
            if i in self._raw:
                schemas.append({"type": "string", "format": "binary",
                                "description": "raw bytes, passed on as they are"})
            elif tp is object or tp is Any:
                schemas.append({"description": "any JSON value"})
            elif _msgspec_can(tp):
                schemas.append({})
                describable.append(i)
            else:
                name = getattr(tp, "__qualname__", None) or repr(tp)
                schemas.append({"x-trio-bus-type": name,
                                "description": f"{name}: a type msgspec cannot describe"})
        if describable:
            found, components = msgspec.json.schema_components(
                [self._types[i] for i in describable], ref_template=SCHEMA_REF
            )
            for i, schema in zip(describable, found, strict=True):
                schemas[i] = _asyncapi_schema(schema)
        return schemas, {k: _asyncapi_schema(v) for k, v in sorted(components.items())}

    def is_raw(self, handle: int) -> bool:
        return handle in self._raw


def _asyncapi_schema(node: Any) -> Any:
    """msgspec's JSON Schema as an AsyncAPI Schema Object. The one difference met:
    msgspec writes OpenAPI's ``discriminator`` object for a tagged union, AsyncAPI's is
    the property name alone; the tag values stay in ``x-trio-bus-discriminator-mapping``
    (each member's schema also pins its tag with ``enum``)."""
    if isinstance(node, list):
        return [_asyncapi_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _asyncapi_schema(value) for key, value in node.items()}
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict) and "propertyName" in discriminator:
        out["discriminator"] = discriminator["propertyName"]
        if "mapping" in discriminator:
            out["x-trio-bus-discriminator-mapping"] = discriminator["mapping"]
    return out


def _msgspec_can(tp: Any) -> bool:
    try:
        msgspec.json.schema(tp)
    except (TypeError, ValueError):
        return False
    # codec_for says whether the bus itself encodes it with msgspec (not pydantic)
    return type(codec_for(tp)) is Codec


def _header_schema(names: Iterable[str], prefix: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f"{prefix}{n}": dict(CLOUDEVENTS_ATTRIBUTES[n]) for n in names},
        "required": [f"{prefix}{n}" for n in ("specversion", "id", "source", "type")],
    }


def _strings(described: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"type": "string", "description": text} for name, text in described.items()}


ENVELOPE_HEADERS: Mapping[str, str] = {
    TRACEPARENT: "W3C trace context, carried across bridges.",
    TRACESTATE: "W3C trace state, beside traceparent.",
    H_CORRELATION_ID: "Request/reply: the id of the request this message answers.",
    H_REPLY_TO: "Request/reply: the topic the reply goes to.",
    H_IDEMPOTENCY_KEY: "Deduplication key (else the message id is the key).",
    H_ORIGIN: "The bridge a message came in through (its export skips it: no echo).",
}
"""Headers the bus itself reads or writes on ordinary messages."""

DEAD_LETTER_HEADERS: Mapping[str, str] = {
    H_ERROR: "Why it was dead-lettered (the handler's error, the broker's refusal...).",
    H_ERROR_TYPE: "The exception type.",
    H_ORIGINAL_TOPIC: "The topic the message was published on.",
    H_FAILED_SUBSCRIBER: "The subscriber whose handler failed.",
    H_ATTEMPTS: "How many attempts were made.",
    H_DEAD_LETTER_ORIGIN: "The bridge the message had come in through, if any.",
}
"""Headers of a dead letter (``docs/design.md``, dead letters)."""


def envelope_trait() -> dict[str, Any]:
    """An in-process envelope: the bus's headers, and its attributes (CloudEvents')."""
    return {
        "name": "trio-bus-envelope",
        "summary": "A bus envelope: id, topic, key, headers, timestamp, payload, attempt.",
        "description": (
            "The envelope's attributes map 1:1 onto CloudEvents context attributes "
            "(x-trio-bus-cloudevents); the bridges carry them as each broker's CloudEvents "
            "binding says. Headers are strings; these are the ones the bus reads."
        ),
        "headers": {
            "type": "object",
            "properties": _strings(ENVELOPE_HEADERS),
            "additionalProperties": {"type": "string"},
        },
        "x-trio-bus-cloudevents": {
            "id": "id", "topic": "type", "source": "source", "timestamp": "time",
            "attempt": "deliveryattempt", "key": "partitionkey",
            "contentType": "datacontenttype",
        },
    }


def dead_letter_trait() -> dict[str, Any]:
    """What a dead letter adds: the reason and where it came from, in headers."""
    return {
        "name": "trio-bus-dead-letter",
        "summary": "A dead letter: the original message with the reason in headers.",
        "headers": {
            "type": "object",
            "properties": _strings({**ENVELOPE_HEADERS, **DEAD_LETTER_HEADERS}),
            "required": [H_ERROR, H_ORIGINAL_TOPIC],
            "additionalProperties": {"type": "string"},
        },
    }


def cloudevents_trait(prefix: str, *, key_header: str | None = None) -> dict[str, Any]:
    """CloudEvents binary content mode: each attribute a header named ``prefix + name``
    (``ce_`` on Kafka, ``ce-`` on AMQP and Pub/Sub); *key_header* names the header that
    carries the key when the broker has no key of its own."""
    headers = _header_schema(CLOUDEVENTS_ATTRIBUTES, prefix)
    if key_header is not None:
        headers["properties"][key_header] = {
            "type": "string", "description": "The envelope key (CloudEvents partitionkey)."
        }
    return {
        "summary": "CloudEvents 1.0, binary content mode",
        "headers": headers,
    }


def structured_payload(data: dict[str, Any]) -> dict[str, Any]:
    """CloudEvents structured mode (the JSON event format): the attributes beside the
    payload, which is ``data``; ``partitionkey`` holds the key, ``busheaders`` the
    headers that are not valid attribute names (a JSON object in a string)."""
    properties: dict[str, Any] = {n: dict(s) for n, s in CLOUDEVENTS_ATTRIBUTES.items()}
    properties["datacontenttype"] = {"type": "string", "const": "application/json"}
    properties["partitionkey"] = {"type": "string", "description": "The envelope key."}
    properties["busheaders"] = {
        "type": "string", "description": "Other headers, as a JSON object in a string."
    }
    properties["data"] = data
    return {
        "type": "object",
        "properties": properties,
        "required": ["specversion", "id", "source", "type", "data"],
    }
