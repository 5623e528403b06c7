"""W3C trace context through every bridge's wire mapping, and the CloudEvents SDK's view.

Sans-IO: the envelope -> message -> envelope mapping of Kafka, RabbitMQ, Pub/Sub and
Kinesis keeps ``traceparent`` and ``tracestate``; the binary bindings also write them as
the CloudEvents distributed tracing extension (what the SDK reports), Kinesis' structured
events as extension attributes; a CloudEvents producer's extension alone is read back as
the W3C headers. (The brokers themselves: tests/bridges/test_trace_brokers.py and each
bridge's round trip test.)
"""

from __future__ import annotations

from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from bridges._cloudevents import KAFKA, Incoming, from_headers, to_kafka_headers
from bridges.kinesis import _wire as kinesis_wire
from bridges.pubsub import _wire as pubsub_wire
from bridges.rabbitmq import _wire as rabbitmq_wire
from bus import Envelope

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
BODY = b'{"n": 1}'
ENV = Envelope(
    id="0x1", topic="order.created", payload={"n": 1}, key="c1",
    headers={"traceparent": TP, "tracestate": STATE, "tenant": "t1"}, time=1_700_000_000.5,
    source="shop",
)
TRACE = {"traceparent": TP, "tracestate": STATE}


def kafka() -> tuple[Incoming, dict[str, Any]]:
    headers = to_kafka_headers(ENV)
    back = from_headers(KAFKA, headers, topic=ENV.topic, fallback_id="x", key=b"c1")
    sdk = ce_kafka.from_binary(
        ce_kafka.KafkaMessage(headers=dict(headers), key=b"c1", value=BODY), JSONFormat()
    )
    return back, sdk.get_attributes()


def rabbitmq() -> tuple[Incoming, dict[str, Any]]:
    out = rabbitmq_wire.encode(ENV, BODY)
    back = rabbitmq_wire.decode(out.routing_key, out.headers, out.message_id, None)
    sdk = ce_rabbitmq.from_binary(
        ce_rabbitmq.RabbitMQMessage(out.headers, out.content_type, BODY), JSONFormat()
    )
    return back, sdk.get_attributes()


def pubsub() -> tuple[Incoming, dict[str, Any]]:
    out = pubsub_wire.encode(ENV, BODY)
    back = pubsub_wire.decode(ENV.topic, out.attributes.items(), "m1", out.ordering_key, None)
    # no Pub/Sub binding in the SDK: its attributes are ce-<name>, as RabbitMQ's headers
    attrs = {k[3:]: v for k, v in out.attributes.items() if k.startswith("ce-")}
    return back, attrs


def kinesis() -> tuple[Incoming, dict[str, Any]]:
    record = kinesis_wire.encode(ENV, BODY)
    back, _ = kinesis_wire.decode(
        ENV.topic, record, fallback_id="s/1", partition_key="c1", arrival=0.0
    )
    return back, JSONFormat().read(None, record).get_attributes()


@pytest.mark.parametrize("mapping", [kafka, rabbitmq, pubsub, kinesis])
def test_trace_context_survives_each_bridges_mapping(mapping: Any) -> None:
    back, attrs = mapping()
    assert back.headers == {**TRACE, "tenant": "t1"}  # once, under the W3C names
    assert attrs["traceparent"] == TP  # the distributed tracing extension
    assert attrs["tracestate"] == STATE


def test_a_cloudevents_producers_tracing_extension_becomes_the_w3c_headers() -> None:
    event = CloudEvent(
        attributes={"type": "order.created", "source": "/shop", "id": "e-1", **TRACE},
        data={"n": 2},
    )
    message = ce_kafka.to_binary(event, JSONFormat())
    assert "traceparent" not in message.headers  # only ce_traceparent
    kafka_in = from_headers(
        KAFKA, list(message.headers.items()), topic="order.created", fallback_id="x"
    )
    amqp = ce_rabbitmq.to_binary(event, JSONFormat())
    amqp_in = rabbitmq_wire.decode("order.created", amqp.headers, None, None)
    assert kafka_in.headers == amqp_in.headers == TRACE


def test_a_plain_header_wins_over_a_differing_extension_attribute() -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    inc = from_headers(
        KAFKA, [("ce_traceparent", other.encode()), ("traceparent", TP.encode())],
        topic="t", fallback_id="x",
    )
    assert inc.headers == {"traceparent": TP}
