"""How each bundled broker looks in an AsyncAPI 3.0 document: :func:`asyncapi_side`.

Given to :func:`bus.asyncapi.document` as ``describe=``, it returns the
:class:`~bus.asyncapi.BrokerSide` of a Kafka, RabbitMQ, Kinesis, Pub/Sub or Redis bridge (None
for another bridge, which then describes itself or gets a generic server). Facts used,
each from the AsyncAPI bindings (the versions the official parser's schemas know):

- **Kafka** (binding 0.5.0): server protocol ``kafka``; channel binding ``topic`` (the bus
  topic is the Kafka topic); operation binding ``groupId`` on receive (the bridge's
  consumer group); message binding ``key``: the record key is the envelope key, the unit
  of order. CloudEvents binary mode, ``ce_`` headers.
- **AMQP / RabbitMQ** (binding 0.3.0): protocol ``amqp``, pathname = virtual host;
  channel ``is: routingKey`` on the bridge's topic exchange (routing key = bus topic,
  the queue it imports through is ``x-trio-bus-amqp-queue``); operation binding on send
  ``deliveryMode`` 2 (persistent) and ``mandatory``, on receive ``ack``. CloudEvents
  binary mode, ``ce-`` headers, the key in ``ce-partitionkey``.
- **Google Pub/Sub** (protocol ``googlepubsub``): the channel address is the topic id
  (``topic_prefix`` + bus topic); its channel binding requires ``schemaSettings``, a
  Pub/Sub schema we do not use, so none is written: the subscription is in
  ``x-trio-bus-pubsub``. The key is the ordering key. CloudEvents binary mode, ``ce-``
  attributes.
- **Kinesis**: AsyncAPI has no binding: protocol ``kinesis`` and ``x-trio-bus-kinesis``
  (region, stream, shards, partition key); records have no headers, so CloudEvents
  structured mode.
- **Redis Streams** (protocol ``redis``; its AsyncAPI bindings define no fields for
  streams): one stream per bus topic, named as the topic; the consumer group in
  ``x-trio-bus-redis``. An entry's fields carry the CloudEvents attributes as ``ce_*``
  (binary mode, ``ce_`` prefix) and each envelope header as ``h:<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from bus.abc import Bridge, is_pattern
from bus.asyncapi import BrokerSide

__all__ = ["asyncapi_side"]

KAFKA_BINDING = "0.5.0"
AMQP_BINDING = "0.3.0"

_KEY_ORDER = "The envelope key is the {what}: messages of one key keep their order{where}."


def _string(value: str, description: str) -> dict[str, Any]:
    return {"type": "string", "enum": [value], "description": description}


def _kafka(bridge: Any) -> BrokerSide:
    servers = str(bridge.bootstrap_servers).split(",")
    group = str(bridge.group_id)

    def operation(action: str) -> Mapping[str, Any]:
        if action != "receive":
            return {}
        return {"kafka": {"groupId": _string(group, "the bridge's consumer group"),
                          "bindingVersion": KAFKA_BINDING}}

    return BrokerSide(
        protocol="kafka", host=servers[0], title=f"Kafka ({type(bridge).__name__})",
        extensions={"x-trio-bus-bootstrap-servers": servers} if len(servers) > 1 else {},
        channel_bindings=lambda topic: {"kafka": {
            # a pattern is matched against the broker's topics: no one topic to name
            **({} if is_pattern(topic) else {"topic": topic}),
            "bindingVersion": KAFKA_BINDING,
        }},
        operation_bindings=operation,
        message_bindings={"kafka": {
            "key": {"type": "string",
                    "description": "The envelope key (CloudEvents partitionkey)."},
            "bindingVersion": KAFKA_BINDING,
        }},
        header_prefix="ce_",
        ordering=_KEY_ORDER.format(what="record key", where=" (one key, one partition)"),
    )


def _rabbitmq(bridge: Any) -> BrokerSide:
    parts = urlsplit(str(bridge._url))
    host = parts.hostname or "localhost"
    if parts.port:
        host = f"{host}:{parts.port}"
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    exchange = str(bridge.exchange)

    # persistent (2) unless the bridge was made with delivery_mode=1: its Features say
    delivery_mode = 2 if bridge.features.persistent else 1
    mandatory = bool(getattr(getattr(bridge, "_client", None), "_mandatory", True))

    def operation(action: str) -> Mapping[str, Any]:
        if action == "send":
            binding: dict[str, Any] = {"deliveryMode": delivery_mode, "mandatory": mandatory}
        else:
            binding = {"ack": True}
        return {"amqp": {**binding, "bindingVersion": AMQP_BINDING}}

    return BrokerSide(
        protocol="amqps" if parts.scheme == "amqps" else "amqp", host=host,
        pathname=vhost if vhost.startswith("/") else "/" + vhost, title="RabbitMQ",
        channel_bindings=lambda topic: {"amqp": {
            "is": "routingKey",
            "exchange": {"name": exchange, "type": "topic", "durable": True,
                         "autoDelete": False, "vhost": vhost},
            "bindingVersion": AMQP_BINDING,
        }},
        channel_extensions=lambda topic: {"x-trio-bus-amqp-queue": str(bridge.queue)},
        operation_bindings=operation,
        header_prefix="ce-", key_header="ce-partitionkey",
        ordering=_KEY_ORDER.format(what="ce-partitionkey header",
                                   where=" through one queue and one consumer"),
    )


def _pubsub(bridge: Any) -> BrokerSide:
    endpoint = bridge._endpoint
    project = str(endpoint.project)
    prefix = str(bridge.topic_prefix)
    return BrokerSide(
        protocol="googlepubsub",
        host=str(endpoint.emulator_host or "pubsub.googleapis.com"),
        pathname=f"/projects/{project}", title="Google Cloud Pub/Sub",
        address=lambda topic: prefix + topic,
        channel_extensions=lambda topic: {"x-trio-bus-pubsub": {
            "project": project,
            ("topics" if is_pattern(topic) else "topic"): prefix + topic,
            "subscriptionGroup": str(bridge.group),
        }},
        header_prefix="ce-",
        ordering=_KEY_ORDER.format(what="ordering key",
                                   where=" (an ordering-enabled subscription)"),
    )


def _kinesis(bridge: Any) -> BrokerSide:
    region = str(bridge.region)
    prefix = str(bridge.stream_prefix)
    host = bridge.endpoint_url or f"https://kinesis.{region}.amazonaws.com"
    parts = urlsplit(str(host))
    return BrokerSide(
        protocol="kinesis", host=parts.netloc or str(host), title="AWS Kinesis Data Streams",
        extensions={"x-trio-bus-kinesis": {"region": region, "streamPrefix": prefix}},
        address=lambda topic: prefix + topic,
        channel_extensions=lambda topic: {"x-trio-bus-kinesis": {
            ("streams" if is_pattern(topic) else "stream"): prefix + topic,
            "shardCount": int(bridge.shard_count),
            "partitionKey": "the envelope key, else its id",
            "consumerGroup": str(bridge.group),
        }},
        cloudevents="structured",
        ordering=_KEY_ORDER.format(what="partition key", where=" (one key, one shard)"),
    )


def _redis(bridge: Any) -> BrokerSide:
    parts = urlsplit(str(bridge._url))
    host = parts.hostname or "localhost"
    return BrokerSide(
        protocol="redis", host=f"{host}:{parts.port or 6379}", title="Redis Streams",
        pathname=f"/{parts.path.lstrip('/') or '0'}",
        channel_extensions=lambda topic: {"x-trio-bus-redis": {
            ("streams" if is_pattern(topic) else "stream"): topic,
            "consumerGroup": str(bridge.group),
            "headerFields": "h:<header name>",
        }},
        header_prefix="ce_", key_header="ce_partitionkey",
        ordering=_KEY_ORDER.format(
            what="ce_partitionkey field",
            where=" within one consumer (a group shares entries one by one, not by key)",
        ),
    )


_BY_PACKAGE = {
    "bridges.kafka": _kafka,
    "bridges.rabbitmq": _rabbitmq,
    "bridges.pubsub": _pubsub,
    "bridges.kinesis": _kinesis,
    "bridges.redis": _redis,
}


def asyncapi_side(bridge: Bridge) -> BrokerSide | None:
    """The AsyncAPI description of a bundled broker's bridge, else None."""
    module = type(bridge).__module__
    for package, side in _BY_PACKAGE.items():
        if module == package or module.startswith(package + "."):
            return side(bridge)
    return None
