"""CloudEvents binary mode headers, checked against the official SDK's bindings."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from bridges._cloudevents import (
    CONTENT_TYPE,
    KAFKA,
    RABBITMQ,
    format_time,
    from_headers,
    parse_time,
    to_headers,
    to_kafka_headers,
)
from bus import Envelope

T0 = 1_764_000_000.25  # 2025-11-24T16:00:00.250000Z

ENV = Envelope(
    id="0x19ac4f0e2b1a3f7c90000000001",
    topic="order.created",
    payload={"n": 1},
    key="customer-7",
    headers={"traceparent": "00-abc-def-01", "x-bus-origin": "local", "ce_sneaky": "no"},
    time=T0,
    attempt=2,
    source="shop",
)
DATA = msgspec.json.encode(ENV.payload)


def test_time_round_trips() -> None:
    assert format_time(T0) == "2025-11-24T16:00:00.250000Z"
    assert parse_time(format_time(T0)) == T0
    assert parse_time("2025-11-24T17:00:00+01:00") == 1_764_000_000.0
    assert parse_time("yesterday") is None


def test_kafka_headers_are_read_by_the_sdk() -> None:
    headers = {name: value.encode() for name, value in to_headers(KAFKA, ENV)}
    assert "ce_partitionkey" not in headers  # the record key carries it
    assert "ce_sneaky" not in headers  # a user header cannot pose as an attribute
    message = ce_kafka.KafkaMessage(headers=headers, key=ENV.key.encode(), value=DATA)
    event = ce_kafka.from_binary(message, JSONFormat())
    attrs = event.get_attributes()
    assert attrs["id"] == ENV.id
    assert attrs["source"] == "shop"
    assert attrs["type"] == "order.created"
    assert attrs["specversion"] == "1.0"
    assert attrs["datacontenttype"] == CONTENT_TYPE
    assert attrs["time"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert attrs["deliveryattempt"] == "2"
    assert attrs["partitionkey"] == "customer-7"
    assert event.get_data() == {"n": 1}


def test_kafka_sdk_message_is_read_by_us() -> None:
    event = CloudEvent(
        attributes={
            "type": "com.example.order", "source": "/shop", "id": "e-1",
            "time": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            "datacontenttype": "application/json", "partitionkey": "k-9",
            "traceparent": "00-1-2-01",
        },
        data={"n": 2},
    )
    message = ce_kafka.to_binary(event, JSONFormat())
    inc = from_headers(
        KAFKA, list(message.headers.items()), topic="orders", fallback_id="orders-0-5",
        key=message.key, time=1.0,
    )
    assert inc.cloudevent
    assert inc.topic == "orders"  # the broker's topic, what the import pattern matched
    assert inc.type == "com.example.order"
    assert inc.id == "e-1"
    assert inc.source == "/shop"
    assert inc.key == "k-9"
    assert inc.time == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert inc.attempt == 1
    assert inc.content_type == "application/json"
    assert inc.headers == {"traceparent": "00-1-2-01"}
    assert msgspec.json.decode(message.value) == {"n": 2}


def test_our_kafka_headers_read_back() -> None:
    items = [(n, v.encode()) for n, v in to_headers(KAFKA, ENV)]
    inc = from_headers(
        KAFKA, items, topic=ENV.topic, fallback_id="x", key=b"customer-7", time=5.0
    )
    assert (inc.topic, inc.id, inc.key, inc.time, inc.source, inc.attempt) == (
        ENV.topic, ENV.id, ENV.key, ENV.time, ENV.source, ENV.attempt
    )
    assert inc.headers == {"traceparent": "00-abc-def-01", "x-bus-origin": "local"}


def test_foreign_kafka_record_without_cloudevents() -> None:
    inc = from_headers(
        KAFKA, [("h-trace", b"abc"), ("bin", b"\xff\x00")], topic="payment.done",
        fallback_id="payment.done-3-17", key=None, time=12.5,
    )
    assert not inc.cloudevent
    assert (inc.topic, inc.id, inc.key, inc.time, inc.source, inc.attempt) == (
        "payment.done", "payment.done-3-17", None, 12.5, None, 1
    )
    assert inc.headers == {"h-trace": "abc", "bin": "\ufffd\x00"}


def test_bad_attribute_values_fall_back() -> None:
    inc = from_headers(
        KAFKA, [("ce_specversion", b"1.0"), ("ce_time", b"soon"),
                ("ce_deliveryattempt", b"many"), ("ce_id", b"")],
        topic="t", fallback_id="t-0-1", time=3.0,
    )
    assert (inc.time, inc.attempt, inc.id) == (3.0, 1, "t-0-1")


def test_rabbitmq_headers_are_read_by_the_sdk() -> None:
    headers = dict(to_headers(RABBITMQ, ENV))
    assert headers["ce-partitionkey"] == "customer-7"
    assert "content-type" not in headers
    message = ce_rabbitmq.RabbitMQMessage(headers=headers, content_type=CONTENT_TYPE, body=DATA)
    event = ce_rabbitmq.from_binary(message, JSONFormat())
    attrs = event.get_attributes()
    assert (attrs["id"], attrs["type"], attrs["source"]) == (ENV.id, ENV.topic, "shop")
    assert attrs["partitionkey"] == "customer-7"
    assert attrs["time"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert event.get_data() == {"n": 1}


def test_rabbitmq_sdk_message_is_read_by_us() -> None:
    event = CloudEvent(
        attributes={"type": "order.paid", "source": "/pay", "id": "p-1",
                    "partitionkey": "c-1", "datacontenttype": "application/json"},
        data={"ok": True},
    )
    message = ce_rabbitmq.to_binary(event, JSONFormat())
    inc = from_headers(
        RABBITMQ, message.headers.items(), topic="order.paid", fallback_id="m-1",
        content_type=message.content_type,
    )
    assert (inc.id, inc.key, inc.source, inc.type) == ("p-1", "c-1", "/pay", "order.paid")
    assert inc.content_type == "application/json"
    assert inc.headers == {}


@pytest.mark.parametrize("binding", [KAFKA, RABBITMQ], ids=lambda b: b.name)
def test_no_key_no_headers(binding: object) -> None:
    env = Envelope(id="1", topic="a.b", payload=None, time=0.0)
    names = [n for n, _ in to_headers(binding, env)]  # type: ignore[arg-type]
    assert not any(n.endswith("partitionkey") for n in names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("attempt", [1, 3])
def test_kafka_fast_path_equals_the_generic_mapping(attempt: int) -> None:
    env = msgspec.structs.replace(ENV, attempt=attempt)
    generic = [(n, v.encode()) for n, v in to_headers(KAFKA, env)]
    assert to_kafka_headers(env) == generic
