"""``bus.asyncapi.document``: what a bus's topics, subscriptions and bridges become.

The official parser judges whole documents in ``tests/asyncapi``; these tests pin the
mapping itself: payload schemas, channels and their addresses, operations, the
CloudEvents traits, and the ``x-trio-bus-...`` fields.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bus import ConfigurationError, Envelope, Retention, open_bus
from bus.abc import Bridge, RawCodec
from bus.asyncapi import BridgeSpec, BrokerSide, document
from bus.testing import LoopbackBridge, LoopbackBroker


class Line(msgspec.Struct):
    sku: str
    quantity: int


class Order(msgspec.Struct):
    order_id: str
    lines: list[Line]


def nothing(env: Envelope[Any]) -> None:
    pass


def deref(doc: dict[str, Any], ref: dict[str, str]) -> Any:
    node: Any = doc
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return deref(doc, node) if "$ref" in node else node


def by_title(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["title"]: op for op in doc["operations"].values()}


async def test_a_typed_topic_is_a_channel_whose_payload_is_msgspecs_schema() -> None:
    async with open_bus(name="shop") as bus:
        bus.topic("order.placed", Order, retain=Retention(max_count=100))
        doc = document(bus)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {"title": "shop", "version": "1.0.0"}
    channel = doc["channels"]["order.placed"]
    assert channel["address"] == "order.placed"
    assert channel["x-trio-bus-retention"] == {"maxCount": 100}
    message = deref(doc, channel["messages"]["order.placed"])
    assert message["contentType"] == "application/json"
    assert message["payload"] == {"$ref": "#/components/schemas/Order"}
    schemas = doc["components"]["schemas"]
    assert schemas["Order"]["required"] == ["order_id", "lines"]
    assert schemas["Order"]["properties"]["lines"]["items"] == {
        "$ref": "#/components/schemas/Line"
    }
    assert schemas["Line"]["properties"]["quantity"] == {"type": "integer"}
    # the envelope trait: the bus's headers, and its attributes as CloudEvents names them
    trait = deref(doc, message["traits"][0])
    assert {"traceparent", "correlation-id", "x-bus-origin"} <= set(
        trait["headers"]["properties"]
    )
    assert trait["x-trio-bus-cloudevents"]["topic"] == "type"
    assert message["correlationId"]["location"] == "$message.header#/correlation-id"


async def test_a_pattern_no_topic_matches_is_a_channel_with_address_parameters() -> None:
    async with open_bus() as bus:
        bus.subscribe("audit.*.#", nothing, name="auditor")
        doc = document(bus, payloads={"raw.#": RawCodec()})
    audit = doc["channels"]["audit._any_._all_"]
    assert audit["address"] == "audit.{segment2}.{rest3}"
    assert set(audit["parameters"]) == {"segment2", "rest3"}
    assert audit["x-trio-bus-pattern"] == "audit.*.#"
    raw = deref(doc, doc["channels"]["raw._all_"]["messages"]["raw._all_"])
    assert raw["contentType"] == "application/octet-stream"
    assert raw["payload"]["format"] == "binary"


async def test_subscriptions_receive_on_every_channel_their_pattern_reaches() -> None:
    async with open_bus() as bus:
        bus.topic("stock.reserved", Line)
        bus.topic("stock.released", Line)
        bus.topic("order.placed", Order)
        bus.subscribe("stock.*", nothing, name="payments", group="gateways", concurrency=3)
        doc = document(bus)
    ops = by_title(doc)
    assert set(ops) == {"payments receives stock.released", "payments receives stock.reserved"}
    op = ops["payments receives stock.reserved"]
    assert op["action"] == "receive"
    assert deref(doc, op["channel"])["address"] == "stock.reserved"
    assert op["x-trio-bus-subscription"] == {
        "subscriber": "payments", "pattern": "stock.*", "concurrency": 3, "group": "gateways"
    }
    assert op["x-trio-bus-ordering"]["by"] == "key"
    assert op["x-trio-bus-retry"]["attempts"] == 3
    dead = deref(doc, op["x-trio-bus-dead-letter"]["channel"])
    assert dead["address"] == "bus.dead_letter"
    assert dead["x-trio-bus-dead-letter-topic"] is True
    dead_message = deref(doc, dead["messages"]["bus.dead_letter"])
    dead_headers = deref(doc, dead_message["traits"][1])["headers"]
    assert {"x-bus-error", "x-bus-original-topic"} <= set(dead_headers["required"])
    assert deref(doc, op["messages"][0])["payload"] == {"$ref": "#/components/schemas/Line"}


async def test_known_publishers_send_and_an_unknown_topic_is_refused() -> None:
    async with open_bus() as bus:
        bus.topic("order.placed", Order)
        doc = document(bus, sends={"storefront": ["order.placed"]})
        assert by_title(doc)["storefront publishes order.placed"]["action"] == "send"
        with pytest.raises(ConfigurationError, match=r"'order\.paid'.*declare it"):
            document(bus, sends={"storefront": ["order.paid"]})


def kafkaish(bridge: Bridge) -> BrokerSide:
    return BrokerSide(
        protocol="kafka", host="127.0.0.1:9092",
        address=lambda topic: "prod." + topic,
        channel_bindings=lambda topic: {"kafka": {"topic": "prod." + topic}},
        operation_bindings=lambda action: {"kafka": {"groupId": {"type": "string"}}}
        if action == "receive" else {},
        message_bindings={"kafka": {"key": {"type": "string"}}},
        header_prefix="ce_", ordering="by record key",
    )


async def test_an_attached_bridge_is_a_server_with_send_and_receive_operations() -> None:
    async with open_bus() as bus:
        bus.topic("order.placed", Order)
        bus.topic("payment.captured", Line)
        await bus.attach(LoopbackBridge(LoopbackBroker(), "mirror"),
                         export=["order.*"], import_=["payment.captured"])
        doc = document(bus, describe=kafkaish)
    assert doc["servers"]["mirror"]["protocol"] == "kafka"
    assert doc["servers"]["mirror"]["x-trio-bus-bridge"]["name"] == "mirror"
    ops = by_title(doc)
    export = ops["bridge mirror exports order.placed"]
    assert export["action"] == "send"
    assert "bindings" not in export
    assert ops["bridge mirror imports payment.captured"]["bindings"] == {
        "kafka": {"groupId": {"type": "string"}}
    }
    channel = deref(doc, export["channel"])
    assert channel["address"] == "prod.order.placed"
    assert channel["servers"] == [{"$ref": "#/servers/mirror"}]
    assert channel["bindings"] == {"kafka": {"topic": "prod.order.placed"}}
    message = deref(doc, export["messages"][0])
    assert message["bindings"] == {"kafka": {"key": {"type": "string"}}}
    assert message["payload"] == {"$ref": "#/components/schemas/Order"}
    trait = deref(doc, message["traits"][0])
    assert "ce_id" in trait["headers"]["properties"]
    assert export["x-trio-bus-ordering"] == {
        "by": "key", "scope": "per key", "description": "by record key"
    }
    # the bridge's own export subscription is not a local receive
    assert not [t for t in ops if "receives" in t]


async def test_a_broker_without_headers_carries_the_structured_cloudevent() -> None:
    def structured(bridge: Bridge) -> BrokerSide:
        return BrokerSide(protocol="kinesis", host="127.0.0.1:4568", cloudevents="structured")

    async with open_bus() as bus:
        bus.topic("order.placed", Order)
        spec = BridgeSpec(LoopbackBridge(LoopbackBroker(), "streams"), export=("order.placed",))
        doc = document(bus, bridges=[spec], describe=structured)
    message = doc["channels"]["streams:order.placed"]["messages"]["streams:order.placed"]
    assert message["contentType"] == "application/cloudevents+json"
    assert "traits" not in message
    payload = message["payload"]
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/Order"}
    assert {"specversion", "id", "type", "data"} <= set(payload["required"])


class Elsewhere(Bridge):
    name = "elsewhere"

    async def export(self, batch: Any, port: Any) -> None:
        return None


async def test_a_bridge_nobody_describes_gets_a_generic_server() -> None:
    async with open_bus() as bus:
        specs = [BridgeSpec(Elsewhere(), export=("a.b",)),
                 BridgeSpec(LoopbackBridge(LoopbackBroker(), "mem"), export=("a.b",))]
        doc = document(bus, bridges=specs, payloads={"a.b": object})
    assert doc["servers"]["elsewhere"]["protocol"] == "elsewhere"
    assert doc["servers"]["elsewhere"]["host"] == "unknown"
    assert "a.b" in doc["channels"] and "elsewhere:a.b" in doc["channels"]
    assert doc["servers"]["mem"]["protocol"] == "trio-bus-loopback"
    assert doc["servers"]["mem"]["host"] == "in-process"


class Left(msgspec.Struct, tag=True):
    x: int


class Right(msgspec.Struct, tag=True):
    y: str


async def test_a_tagged_union_names_its_discriminator_property_as_asyncapi_wants() -> None:
    async with open_bus() as bus:
        bus.topic("either", Left | Right)
        doc = document(bus)
    payload = deref(doc, doc["channels"]["either"]["messages"]["either"])["payload"]
    assert payload["discriminator"] == "type"  # msgspec writes OpenAPI's object here
    assert payload["x-trio-bus-discriminator-mapping"] == {
        "Left": "#/components/schemas/Left", "Right": "#/components/schemas/Right"
    }


async def test_a_pattern_whose_key_a_topic_already_has_gets_its_own_channel() -> None:
    async with open_bus() as bus:
        bus.topic("c._any_", Line)  # the key the pattern c.* would get
        bus.subscribe("c.*", nothing, name="watcher")
        doc = document(bus, payloads={"c.*": RawCodec()})
    assert doc["channels"]["c._any_"]["title"] == "c._any_"
    assert doc["channels"]["c._any__"]["title"] == "c.*"
    reached = {deref(doc, op["channel"])["title"] for op in doc["operations"].values()}
    assert reached == {"c._any_", "c.*"}


class Ask(msgspec.Struct):
    sku: str


class Answer(msgspec.Struct):
    price: int


async def test_requests_carry_asyncapis_reply_on_both_sides() -> None:
    async with open_bus() as bus:
        bus.topic("price.ask", Ask)
        bus.subscribe("price.ask", nothing, name="pricer")
        doc = document(bus, requests={"shop": {"price.ask": Answer}})
        with pytest.raises(ConfigurationError, match=r"'price\.tell'.*not a declared topic"):
            document(bus, requests={"shop": {"price.tell": Answer}})
    ops = by_title(doc)
    asking, answering = ops["shop requests price.ask"], ops["pricer receives price.ask"]
    assert asking["action"] == "send"
    assert asking["reply"] == answering["reply"]
    reply = asking["reply"]
    assert reply["address"]["location"] == "$message.header#/reply-to"
    channel = deref(doc, reply["channel"])
    assert channel["address"] is None  # the requester's private reply topic
    assert deref(doc, reply["messages"][0])["payload"] == {
        "$ref": "#/components/schemas/Answer"
    }
