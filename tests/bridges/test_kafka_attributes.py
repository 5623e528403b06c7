"""``kafka_attributes``, Kafka ingress's cheap header reader, gives what ``from_headers``
gives for every shape it accepts, and declines (``None``) the shapes it does not know."""

from __future__ import annotations

from typing import Any

import pytest

from bridges._cloudevents import KAFKA, from_headers, kafka_attributes, to_kafka_headers
from bus import Envelope

T0 = 1_764_000_000.25
BROKER_TIME = 1_700_000_000.5


def envelope(**over: Any) -> Envelope[Any]:
    fields: dict[str, Any] = {
        "id": "0x19ac4f0e2b1a3f7c90000000001", "topic": "order.created", "payload": 1,
        "key": "customer-7", "headers": {}, "time": T0, "attempt": 1, "source": "shop",
    }
    fields.update(over)
    return Envelope(**fields)


def general(headers: list[tuple[str, Any]], key: Any) -> tuple[Any, ...]:
    inc = from_headers(KAFKA, headers, topic="t", fallback_id="", key=key, time=BROKER_TIME)
    return inc.id or None, inc.key, inc.headers or None, inc.time, inc.attempt, inc.source


def fast(headers: list[tuple[str, Any]], key: Any, cache: dict[Any, str]) -> tuple[Any, ...]:
    attrs = kafka_attributes(headers, BROKER_TIME, cache)
    assert attrs is not None
    id, source, hdrs, time, attempt, partitionkey = attrs
    if key is None:
        key = partitionkey
    elif isinstance(key, bytes):
        key = key.decode()
    return id, key, hdrs, time, attempt, source


BUS_WRITTEN = [
    to_kafka_headers(envelope()),
    to_kafka_headers(envelope(attempt=4, source="billing")),
    to_kafka_headers(envelope(headers={"traceparent": "00-ab-cd-01", "tracestate": "x=1"})),
    to_kafka_headers(envelope(headers={"x-tenant": "7", "idempotency-key": "i-1"})),
]
FOREIGN = [
    [],
    [("x-tenant", b"7"), ("x-tenant", b"8")],  # a repeated name: the last one wins
    [("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_subject", b"s"), ("subject", b"p")],
    [("ce_id", b""), ("ce_time", b"yesterday"), ("ce_deliveryattempt", b"many")],
    [("ce_id", "text-1"), ("ce_source", "str-source"), ("ce_deliveryattempt", "0")],
    [("ce_partitionkey", b"pk-1"), ("ce_time", b"2025-11-24T17:00:00+01:00")],
    [("ce_traceparent", b"00-ab-cd-01"), ("traceparent", b"00-plain-01")],
    [("ce_traceparent", b"00-ab-cd-01"), ("ce_tracestate", b"x=1")],  # a CloudEvents SDK's
    [("x-bin", b"\xff\xfe")],  # not UTF-8: replaced, as from_headers does
]


@pytest.mark.parametrize("headers", BUS_WRITTEN + FOREIGN)
@pytest.mark.parametrize("key", [None, b"customer-7", "text-key"])
def test_the_same_answer_as_from_headers(headers: list[tuple[str, Any]], key: Any) -> None:
    cache: dict[Any, str] = {}
    assert fast(headers, key, cache) == general(headers, key)
    assert fast(headers, key, cache) == general(headers, key)  # from the cache this time


@pytest.mark.parametrize("headers", [
    [("CE_ID", b"e-1")],  # a mapped attribute in another case
    [("ce_id", b"e-1"), ("Ce_Source", b"shop")],
    [("Content-Type", b"text/plain")],
    [("ce_id", None)],  # confluent-kafka gives None for a header without a value
])
def test_shapes_it_does_not_know_go_the_general_way(headers: list[tuple[str, Any]]) -> None:
    assert kafka_attributes(headers, BROKER_TIME, {}) is None
