"""An AsyncAPI 3.0.0 document from a bus: :func:`document`.

What maps to what (``docs/asyncapi.md`` has the whole table):

- the bus itself is a server (protocol ``trio-bus``, host ``in-process``); each attached
  (or declared) bridge is a server of its broker's protocol;
- a declared topic is a channel on the bus's server, its message's payload the topic
  type's JSON Schema; a wildcard pattern that no declared topic matches, or whose
  payload is given (``payloads=``), is a channel whose address has one parameter per
  ``*``/``#``;
- a subscription is a ``receive`` operation on each channel its pattern reaches, a
  known publisher (``sends=``) a ``send`` operation;
- a bridge's export is a ``send`` operation on the broker's channel of each exported
  channel, its import a ``receive`` on the broker's channel; the broker channel carries
  the broker's bindings and its message the CloudEvents trait of that broker;
- the key is ``x-trio-bus-ordering`` (and the Kafka binding's ``key``), retries and
  dead letters ``x-trio-bus-retry`` and ``x-trio-bus-dead-letter``.

Reads only the bus's public surface (topics, codecs, subscriptions, attachments); the
bus may be open or closed. This module does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._bridge import Bridge
from .._codec import Codec
from .._envelope import H_CORRELATION_ID, H_REPLY_TO
from .._errors import ConfigurationError
from .._routing import Pattern, is_pattern, validate_pattern
from ._broker import BrokerSide, Describe, side_of
from ._schemas import (
    PayloadSchemas,
    cloudevents_trait,
    dead_letter_trait,
    envelope_trait,
    structured_payload,
)

if TYPE_CHECKING:
    from .._bus import Bus

__all__ = ["ASYNCAPI_VERSION", "BridgeSpec", "document"]

ASYNCAPI_VERSION = "3.0.0"
LOCAL_SERVER = "bus"
_ENVELOPE_TRAIT = "trio-bus-envelope"
_DEAD_LETTER_TRAIT = "trio-bus-dead-letter"


@dataclass(frozen=True)
class BridgeSpec:
    """A bridge and the patterns it exports and imports (attached or only declared)."""

    bridge: Bridge
    export: tuple[str, ...] = ()
    import_: tuple[str, ...] = ()


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _address(pattern: str) -> tuple[str, dict[str, Any]]:
    """A pattern as a channel address expression and its parameters."""
    segments: list[str] = []
    parameters: dict[str, Any] = {}
    for i, seg in enumerate(pattern.split("."), 1):
        if seg == "*":
            name = f"segment{i}"
            parameters[name] = {"description": "any one segment (pattern `*`)"}
            segments.append("{" + name + "}")
        elif seg == "#":
            name = f"rest{i}"
            parameters[name] = {"description": "zero or more segments (pattern `#`)"}
            segments.append("{" + name + "}")
        else:
            segments.append(seg)
    return ".".join(segments), parameters


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _key(text: str) -> str:
    """A component or channel key for a topic or pattern (``*``/``#`` spelled out)."""
    return _UNSAFE.sub("_", text.replace("*", "_any_").replace("#", "_all_"))


class _Builder:
    def __init__(self, bus: Bus, payloads: Mapping[str, Any]) -> None:
        self.bus = bus
        self.payloads = dict(payloads)
        self.schemas = PayloadSchemas()
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.traits: dict[str, dict[str, Any]] = {
            _ENVELOPE_TRAIT: envelope_trait(), _DEAD_LETTER_TRAIT: dead_letter_trait(),
        }
        self.messages: dict[str, dict[str, Any]] = {}
        self._handles: dict[str, int] = {}  # channel key -> payload handle
        self._names: dict[str, str] = {}  # channel key -> topic or pattern
        self._keys: dict[str, str] = {}  # and back
        self.replies: dict[str, str] = {}  # request topic -> its reply channel's key
        self.topics = sorted(bus.topics())

    # -- local channels ---------------------------------------------------------------

    def local_channels(self, patterns: Sequence[str]) -> None:
        for topic in self.topics:
            self._channel(topic, self.bus.codec(topic), None)
        for pattern in patterns:
            if pattern in self._keys:
                continue
            given = pattern in self.payloads
            if given or not any(Pattern(pattern).matches(t) for t in self.topics):
                self._channel(pattern, None, self.payloads.get(pattern, object))

    def _channel(self, name: str, codec: Any, tp: Any, *, reply_to: str | None = None) -> str:
        key = _key(name)
        while key in self._names and self._names[key] != name:
            key += "_"
        self._names[key] = name
        self._keys[name] = key
        if isinstance(tp, Codec):  # payloads= may give a codec (RawCodec: bytes as they are)
            codec, tp = tp, None
        self._handles[key] = self.schemas.add(codec, tp if tp is not None else object)
        address, parameters = _address(name)
        channel: dict[str, Any] = {
            "address": address,
            "title": name,
            "servers": [_ref("servers", LOCAL_SERVER)],
            "messages": {key: _ref("components", "messages", key)},
        }
        if reply_to is not None:  # the requester's reply topic: known only at run time
            channel["address"] = None
            channel["title"] = f"replies to {reply_to}"
            channel["description"] = (
                f"Replies to {reply_to} requests, on the requester's private reply topic "
                f"named by the request's {H_REPLY_TO!r} header."
            )
            parameters = {}
        if parameters:
            channel["parameters"] = parameters
            channel["x-trio-bus-pattern"] = name
        if name == self.bus.dead_letter_topic:
            channel["description"] = (
                "The bus's dead-letter topic: messages whose handler failed every attempt, "
                "or that could not be decoded or delivered, with the reason in headers."
            )
            channel["x-trio-bus-dead-letter-topic"] = True
        retained = None if reply_to is not None else self._retention(name)
        if retained is not None:
            channel["x-trio-bus-retention"] = retained
        self.channels[key] = channel
        return key

    def reply_channels(self, requests: Mapping[str, Mapping[str, Any]]) -> None:
        """A channel per request topic for its replies, typed by the reply type."""
        for sender, topics in requests.items():
            for topic, reply_type in topics.items():
                if topic not in self._keys or is_pattern(topic):
                    raise ConfigurationError(
                        f"requests: {sender!r} sends requests on {topic!r}, which is not a "
                        "declared topic; declare it with bus.topic()"
                    )
                if topic not in self.replies:
                    # ':' is in no topic name: no declared topic can have this key
                    self.replies[topic] = self._channel(
                        f"{topic}:reply", None, reply_type, reply_to=topic
                    )

    def reply(self, key: str) -> dict[str, Any] | None:
        """The ``reply`` of an operation on channel *key*, if it carries requests."""
        reply_key = self.replies.get(self._names[key])
        if reply_key is None:
            return None
        return {
            "address": {
                "location": f"$message.header#/{H_REPLY_TO}",
                "description": "The requester's reply topic.",
            },
            "channel": _ref("channels", reply_key),
            "messages": [_ref("channels", reply_key, "messages", reply_key)],
        }

    def _retention(self, topic: str) -> dict[str, Any] | None:
        declared = self.bus.declared(topic) if not is_pattern(topic) else None
        retention = declared.retention if declared is not None else None
        if retention is None:
            return None
        return {k: v for k, v in (
            ("maxCount", retention.max_count), ("maxBytes", retention.max_bytes),
            ("maxAgeSeconds", retention.max_age),
        ) if v is not None}

    def reached(self, pattern: str) -> list[str]:
        """Channel keys a subscription or bridge pattern reaches."""
        keys = [self._keys[pattern]] if pattern in self._keys else []
        if is_pattern(pattern):
            match = Pattern(pattern).matches
            keys += [self._keys[t] for t in self.topics if match(t)]
        return keys

    def messages_of(self) -> None:
        resolved, components = self.schemas.resolve()
        self.components_schemas = components
        for key, handle in self._handles.items():
            name = self._names[key]
            raw = self.schemas.is_raw(handle)
            message: dict[str, Any] = {
                "name": key,
                "title": f"{name} payload",
                "contentType": "application/octet-stream" if raw else "application/json",
                "payload": resolved[handle],
                "traits": [_ref("components", "messageTraits", _ENVELOPE_TRAIT)],
                "correlationId": {
                    "description": "Request/reply: the request's id, in the reply.",
                    "location": f"$message.header#/{H_CORRELATION_ID}",
                },
            }
            if name == self.bus.dead_letter_topic:
                message["traits"].append(_ref("components", "messageTraits",
                                              _DEAD_LETTER_TRAIT))
            codec_name = None if raw else getattr(self._codec(name), "type_name", None)
            if codec_name:
                message["x-trio-bus-type"] = codec_name
            self.messages[key] = message
        self.resolved = resolved

    def _codec(self, name: str) -> Any:
        return None if is_pattern(name) or name not in self.topics else self.bus.codec(name)

    # -- operations -------------------------------------------------------------------

    def subscriptions(self) -> None:
        for sub in self.bus.subscriptions():
            if sub.skip_origin is not None or sub.pattern.startswith("bus.reply."):
                continue  # a bridge's export (described with its bridge) / request-reply
            retry = sub.retry
            info: dict[str, Any] = {
                "subscriber": sub.name,
                "pattern": sub.pattern,
                "concurrency": len(sub.lanes),
            }
            if sub.group is not None:
                info["group"] = sub.group
            for key in self.reached(sub.pattern):
                op: dict[str, Any] = {
                    "action": "receive",
                    "channel": _ref("channels", key),
                    "title": f"{sub.name} receives {self._names[key]}",
                    "messages": [_ref("channels", key, "messages", key)],
                    "x-trio-bus-subscription": info,
                    "x-trio-bus-ordering": _ordering(len(sub.lanes)),
                    "x-trio-bus-retry": {
                        "attempts": retry.attempts, "baseDelay": retry.base_delay,
                        "factor": retry.factor, "maxDelay": retry.max_delay,
                    },
                    "x-trio-bus-dead-letter": {
                        "channel": self.dead_letter_channel(),
                        "after": "the last attempt failed (handler error, poison message)",
                    },
                }
                reply = self.reply(key)
                if reply is not None:
                    op["reply"] = reply
                self._add_op(f"{sub.name}.receive.{key}", op)

    def sends(self, sends: Mapping[str, Sequence[str]]) -> None:
        for sender, patterns in sends.items():
            for pattern in patterns:
                keys = self.reached(validate_pattern(pattern))
                if not keys:
                    raise ConfigurationError(
                        f"sends: {sender!r} publishes {pattern!r}, which names no declared "
                        "topic; declare it with bus.topic() or give its payload in payloads="
                    )
                for key in keys:
                    self._add_op(f"{sender}.send.{key}", {
                        "action": "send",
                        "channel": _ref("channels", key),
                        "title": f"{sender} publishes {self._names[key]}",
                        "messages": [_ref("channels", key, "messages", key)],
                    })

    def requests(self, requests: Mapping[str, Mapping[str, Any]]) -> None:
        for sender, topics in requests.items():
            for topic in topics:
                key = self._keys[topic]
                self._add_op(f"{sender}.request.{key}", {
                    "action": "send",
                    "channel": _ref("channels", key),
                    "title": f"{sender} requests {topic}",
                    "messages": [_ref("channels", key, "messages", key)],
                    "reply": self.reply(key),
                })

    def _add_op(self, op_id: str, op: dict[str, Any]) -> None:
        op_id = _key(op_id)
        while op_id in self.operations:
            op_id += "_"
        self.operations[op_id] = op

    def dead_letter_channel(self) -> dict[str, str]:
        return _ref("channels", _key(self.bus.dead_letter_topic))

    # -- bridges ----------------------------------------------------------------------

    def bridge(self, spec: BridgeSpec, side: BrokerSide) -> None:
        name = spec.bridge.name
        server: dict[str, Any] = {"host": side.host, "protocol": side.protocol}
        if side.pathname:
            server["pathname"] = side.pathname
        server["title"] = side.title or f"bridge {name!r}"
        if side.server_bindings:
            server["bindings"] = dict(side.server_bindings)
        server.update(side.extensions)
        server["x-trio-bus-bridge"] = {"name": name, "features": _features(spec.bridge)}
        self.servers[name] = server
        trait = self._trait(side)
        for action, patterns in (("send", spec.export), ("receive", spec.import_)):
            for pattern in patterns:
                for key in self.reached(pattern):
                    bkey = self._broker_channel(name, key, side, trait)
                    op: dict[str, Any] = {
                        "action": action,
                        "channel": _ref("channels", bkey),
                        "title": (f"bridge {name} exports {self._names[key]}" if action ==
                                  "send" else f"bridge {name} imports {self._names[key]}"),
                        "messages": [_ref("channels", bkey, "messages", bkey)],
                        "x-trio-bus-ordering": _bridge_ordering(side),
                        "x-trio-bus-dead-letter": {
                            "channel": self.dead_letter_channel(),
                            "after": ("the broker refused the record for good" if action
                                      == "send" else "undecodable or wrongly typed payload"),
                        },
                    }
                    bindings = side.operation_bindings(action)
                    if bindings:
                        op["bindings"] = dict(bindings)
                    self._add_op(f"{name}.{'export' if action == 'send' else 'import'}.{key}",
                                 op)

    def _trait(self, side: BrokerSide) -> str | None:
        if side.cloudevents == "structured":
            return None
        label = {"ce_": "underscore", "ce-": "dash"}.get(side.header_prefix, "custom")
        trait_key = f"cloudevents-binary-{label}" + ("-keyed" if side.key_header else "")
        if trait_key not in self.traits:
            trait = cloudevents_trait(side.header_prefix, key_header=side.key_header)
            trait["name"] = trait_key
            self.traits[trait_key] = trait
        return trait_key

    def _broker_channel(
        self, bridge: str, key: str, side: BrokerSide, trait: str | None
    ) -> str:
        bkey = f"{bridge}:{key}"
        if bkey in self.channels:
            return bkey
        name = self._names[key]
        address, parameters = _address(side.address(name))
        message = dict(self.messages[key])
        message["name"] = bkey
        if trait is None:
            message["payload"] = structured_payload(self.resolved[self._handles[key]])
            message["contentType"] = "application/cloudevents+json"
            message["traits"] = []
        else:
            message["traits"] = [_ref("components", "messageTraits", trait)]
        message.pop("correlationId", None)
        if side.message_bindings:
            message["bindings"] = dict(side.message_bindings)
        if not message["traits"]:
            del message["traits"]
        channel: dict[str, Any] = {
            "address": address,
            "title": f"{name} on {bridge}",
            "servers": [_ref("servers", bridge)],
            "messages": {bkey: message},
        }
        if parameters:
            channel["parameters"] = parameters
        bindings = side.channel_bindings(name)
        if bindings:
            channel["bindings"] = dict(bindings)
        channel.update(side.channel_extensions(name))
        channel["x-trio-bus-topic"] = name
        self.channels[bkey] = channel
        return bkey


def _ordering(lanes: int) -> dict[str, Any]:
    return {
        "by": "key",
        "scope": "per key" if lanes > 1 else "all messages",
        "description": (
            "Messages of one key are handled in publish order (same key, same worker); "
            f"{lanes} worker{'s' * (lanes != 1)}."
        ),
    }


def _bridge_ordering(side: BrokerSide) -> dict[str, Any]:
    return {
        "by": "key",
        "scope": "per key",
        "description": side.ordering or "The broker's own order; the key is not carried.",
    }


def _features(bridge: Bridge) -> dict[str, Any]:
    f = bridge.features
    out: dict[str, Any] = {
        "ordered": f.ordered, "persistent": f.persistent,
        "consumerGroups": f.consumer_groups, "redelivery": f.redelivery,
        "headers": f.headers,
    }
    if f.max_message_bytes is not None:
        out["maxMessageBytes"] = f.max_message_bytes
    return out


def document(
    bus: Bus, *, title: str | None = None, version: str = "1.0.0",
    description: str | None = None, sends: Mapping[str, Sequence[str]] | None = None,
    payloads: Mapping[str, Any] | None = None, bridges: Sequence[BridgeSpec] | None = None,
    describe: Describe | None = None, requests: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of *bus* as a JSON-ready dict.

    *sends* names publishers: ``{"orders": ["order.confirmed"]}`` (a bus does not know
    who publishes); *requests* those that ask with ``bus.request``, each request topic
    with its reply type: ``{"orders": {"inventory.quote": Quote}}`` (AsyncAPI's
    ``reply`` on the asking and the answering operations). *payloads* gives the payload
    type (or codec) of a wildcard pattern, ``{"orders.*": object}``. *bridges* defaults
    to the bus's attachments; *describe* says what each bridge's broker looks like
    (``bridges.asyncapi_side`` for the bundled brokers; see :class:`BrokerSide`). Raises
    :class:`~bus.ConfigurationError` for a *sends* entry that reaches no channel, or a
    *requests* topic that is not declared.
    """
    specs = list(bridges) if bridges is not None else [
        BridgeSpec(a.bridge, tuple(a.export_patterns), tuple(a.port.import_patterns))
        for a in bus.attachments()
    ]
    b = _Builder(bus, payloads or {})
    patterns = [s.pattern for s in bus.subscriptions() if s.skip_origin is None]
    patterns += [p for s in specs for p in (*s.export, *s.import_)]
    patterns += list(b.payloads)
    b.local_channels([validate_pattern(p) for p in dict.fromkeys(patterns)
                      if not p.startswith("bus.reply.")])
    b.reply_channels(requests or {})
    b.messages_of()
    b.servers[LOCAL_SERVER] = {
        "host": "in-process", "protocol": "trio-bus",
        "title": f"the {bus.name!r} bus",
        "description": "The in-process trio-bus: typed topics routed between actors.",
    }
    b.subscriptions()
    b.sends(sends or {})
    b.requests(requests or {})
    for spec in specs:
        b.bridge(spec, side_of(spec.bridge, describe))
    info: dict[str, Any] = {"title": title or bus.name, "version": version}
    if description:
        info["description"] = description
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "servers": b.servers,
        "channels": b.channels,
        "operations": b.operations,
        "components": {
            "schemas": b.components_schemas,
            "messages": b.messages,
            "messageTraits": b.traits,
        },
        "x-trio-bus-dead-letter-topic": bus.dead_letter_topic,
    }
    return doc
