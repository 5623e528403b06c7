"""``bridges.asyncapi_side``: each bundled broker as AsyncAPI sees it (no connection).

Bridges are made from URLs as ``bus asyncapi demo --bridge URL`` makes them and never
opened; the official parser's verdict on whole documents is in ``tests/asyncapi``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from bridges import asyncapi_side, from_url
from bus import open_bus
from bus.asyncapi import BridgeSpec, document
from bus.testing import LoopbackBridge, LoopbackBroker


class Placed(msgspec.Struct):
    order_id: str


async def doc_for(url: str, **options: Any) -> dict[str, Any]:
    bridge = from_url(url, name="broker", **options)
    async with open_bus(name="shop") as bus:
        bus.topic("order.placed", Placed)
        spec = BridgeSpec(bridge, export=("order.placed",), import_=("payment.#",))
        return document(bus, bridges=[spec], payloads={"payment.#": object},
                        describe=asyncapi_side)


def op(doc: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [o for o in doc["operations"].values() if o["title"] == title]
    return found


async def test_kafka_topic_group_and_key_bindings() -> None:
    doc = await doc_for("kafka://127.0.0.1:9092", group_id="shop-mirror")
    assert doc["servers"]["broker"]["protocol"] == "kafka"
    assert doc["servers"]["broker"]["host"] == "127.0.0.1:9092"
    placed = doc["channels"]["broker:order.placed"]
    assert placed["bindings"] == {"kafka": {"topic": "order.placed", "bindingVersion": "0.5.0"}}
    # a pattern names no one topic: the address has parameters, the binding no topic
    assert doc["channels"]["broker:payment._all_"]["bindings"]["kafka"] == {
        "bindingVersion": "0.5.0"
    }
    receive = op(doc, "bridge broker imports payment.#")
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == ["shop-mirror"]
    assert "bindings" not in op(doc, "bridge broker exports order.placed")
    message = placed["messages"]["broker:order.placed"]
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    trait = doc["components"]["messageTraits"]["cloudevents-binary-underscore"]
    assert {"ce_id", "ce_type", "ce_source"} <= set(trait["headers"]["properties"])


async def test_rabbitmq_exchange_vhost_and_no_password() -> None:
    doc = await doc_for("amqp://shop:s3cret@127.0.0.1:5673/orders", exchange="shop-x")
    server = doc["servers"]["broker"]
    assert (server["protocol"], server["host"], server["pathname"]) == (
        "amqp", "127.0.0.1:5673", "/orders"
    )
    amqp = doc["channels"]["broker:order.placed"]["bindings"]["amqp"]
    assert amqp["is"] == "routingKey"
    assert amqp["exchange"] == {"name": "shop-x", "type": "topic", "durable": True,
                                "autoDelete": False, "vhost": "orders"}
    send = op(doc, "bridge broker exports order.placed")["bindings"]["amqp"]
    assert (send["deliveryMode"], send["mandatory"]) == (2, True)
    assert op(doc, "bridge broker imports payment.#")["bindings"]["amqp"]["ack"] is True
    trait = doc["components"]["messageTraits"]["cloudevents-binary-dash-keyed"]
    assert "ce-partitionkey" in trait["headers"]["properties"]
    assert "s3cret" not in json.dumps(doc)


async def test_pubsub_topic_ids_under_the_prefix() -> None:
    doc = await doc_for("pubsub://shop-project?emulator=127.0.0.1:8085", topic_prefix="prod-")
    server = doc["servers"]["broker"]
    assert (server["protocol"], server["host"], server["pathname"]) == (
        "googlepubsub", "127.0.0.1:8085", "/projects/shop-project"
    )
    placed = doc["channels"]["broker:order.placed"]
    assert placed["address"] == "prod-order.placed"
    assert placed["x-trio-bus-pubsub"]["topic"] == "prod-order.placed"
    assert "bindings" not in placed  # its binding requires a Pub/Sub schema we do not use


async def test_kinesis_streams_in_structured_mode() -> None:
    doc = await doc_for("kinesis://eu-west-1?endpoint=http://127.0.0.1:4568",
                        stream_prefix="shop-", shard_count=4)
    server = doc["servers"]["broker"]
    assert (server["protocol"], server["host"]) == ("kinesis", "127.0.0.1:4568")
    assert server["x-trio-bus-kinesis"]["region"] == "eu-west-1"
    placed = doc["channels"]["broker:order.placed"]
    assert placed["address"] == "shop-order.placed"
    assert placed["x-trio-bus-kinesis"]["stream"] == "shop-order.placed"
    assert placed["x-trio-bus-kinesis"]["shardCount"] == 4
    message = placed["messages"]["broker:order.placed"]
    assert message["contentType"] == "application/cloudevents+json"
    assert message["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Placed"}


async def test_redis_streams_named_as_the_topics_with_ce_fields() -> None:
    doc = await doc_for("redis://:s3cret@127.0.0.1:6380/3", group="shop")
    server = doc["servers"]["broker"]
    assert (server["protocol"], server["host"], server["pathname"]) == (
        "redis", "127.0.0.1:6380", "/3"
    )
    placed = doc["channels"]["broker:order.placed"]
    assert placed["address"] == "order.placed"
    assert placed["x-trio-bus-redis"] == {
        "stream": "order.placed", "consumerGroup": "shop", "headerFields": "h:<header name>",
    }
    assert doc["channels"]["broker:payment._all_"]["x-trio-bus-redis"]["streams"] == "payment.#"
    traits = doc["components"]["messageTraits"]
    assert any("ce_partitionkey" in t.get("headers", {}).get("properties", {})
               for t in traits.values())
    assert "s3cret" not in json.dumps(doc)


def test_a_bridge_of_another_package_is_not_described_here() -> None:
    assert asyncapi_side(LoopbackBridge(LoopbackBroker())) is None


async def test_rabbitmq_transient_and_not_mandatory_as_the_bridge_was_made() -> None:
    doc = await doc_for("amqp://guest@127.0.0.1:5672/", delivery_mode=1, mandatory=False)
    send = op(doc, "bridge broker exports order.placed")["bindings"]["amqp"]
    assert (send["deliveryMode"], send["mandatory"]) == (1, False)
