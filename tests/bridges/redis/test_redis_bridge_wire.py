"""The Redis bridge's entry format (sans-IO): CloudEvents ``ce_`` fields read by the
official SDK, headers that cannot collide with the body, foreign and facade-written
entries imported; the SCAN glob of an import pattern."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from bridges.redis._bridge_ingress import glob_for
from bridges.redis._bridge_wire import decode, encode, encode_generic
from bus import Envelope
from bus.abc import Pattern

T0 = 1_764_000_000.25

ENV = Envelope(
    id="0x19ac4f0e2b1a3f7c90000000001",
    topic="order.created",
    payload={"n": 1},
    key="customer-7",
    headers={"traceparent": "00-abc-def-01", "data": "a header named data", "ce_sneaky": "no"},
    time=T0,
    attempt=2,
    source="shop",
)
BODY = msgspec.json.encode(ENV.payload)


def _as_read(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    """What redis-py gives back for an entry written with *fields*."""
    return {name.encode(): value for name, value in fields.items()}


def test_an_envelope_round_trips() -> None:
    fields = encode(ENV, BODY)
    assert fields["data"] == BODY  # the header named "data" did not replace the body
    assert fields["h:data"] == b"a header named data"
    assert "ce_sneaky" not in fields and "h:ce_sneaky" not in fields
    incoming, body = decode("order.created", b"1764000000250-0", _as_read(fields))
    assert body == BODY
    assert (incoming.id, incoming.key, incoming.source, incoming.attempt) == (
        ENV.id, "customer-7", "shop", 2,
    )
    assert incoming.time == T0
    assert incoming.headers == {"traceparent": "00-abc-def-01", "data": "a header named data"}
    assert incoming.cloudevent


@pytest.mark.parametrize("attempt", [1, 3])
@pytest.mark.parametrize(
    "headers",
    [{}, ENV.headers, {"traceparent": "00-a-b-01", "tracestate": "k=v", "Content-Type": "x"}],
)
@pytest.mark.parametrize("key", [None, "k"])
def test_the_fast_path_equals_the_generic_mapping(
    attempt: int, headers: dict[str, str], key: str | None
) -> None:
    env = Envelope(id="i", topic="t.u", payload=1, key=key, headers=headers, time=T0,
                   attempt=attempt, source="s")
    assert encode(env, b"1") == encode_generic(env, b"1")


def test_the_fields_are_read_by_the_cloudevents_sdk() -> None:
    fields = encode(ENV, BODY)
    attributes = {k: v for k, v in fields.items() if not k.startswith(("h:", "data"))}
    message = ce_kafka.KafkaMessage(headers=attributes, key=None, value=fields["data"])
    event = ce_kafka.from_binary(message, JSONFormat())
    attrs = event.get_attributes()
    assert (attrs["id"], attrs["source"], attrs["type"]) == (ENV.id, "shop", "order.created")
    assert attrs["partitionkey"] == "customer-7"
    assert attrs["time"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert event.get_data() == {"n": 1}


def test_a_foreign_entry_imports_with_the_streams_facts() -> None:
    incoming, body = decode(
        "sensor.temp", b"1764000000123-4", {b"data": b'{"c": 20}', b"room": b"kitchen"}
    )
    assert body == b'{"c": 20}'
    assert incoming.id == "sensor.temp-1764000000123-4"
    assert incoming.time == 1_764_000_000.123
    assert incoming.headers == {"room": "kitchen"}
    assert incoming.key is None and incoming.source is None and not incoming.cloudevent


def test_an_entry_without_data_has_an_empty_body() -> None:
    incoming, body = decode("t", b"1-0", {b"temperature": b"20"})
    assert body == b""  # the port dead-letters it with the decode error
    assert incoming.headers == {"temperature": "20"}


def test_the_facade_adapters_entries_give_key_and_time() -> None:
    fields = {b"data": b"{}", b"key": b"user-1", b"ts": b"1764000000500", b"h:x": b"y"}
    incoming, _ = decode("users", b"1764000009999-0", fields)
    assert (incoming.key, incoming.time, incoming.headers) == ("user-1", 1_764_000_000.5,
                                                               {"x": "y"})


@pytest.mark.parametrize(
    ("pattern", "glob", "matched", "unmatched"),
    [
        ("order.*", "order*", ["order.created"], ["order", "order.a.b", "orders.x"]),
        ("order.#", "order*", ["order", "order.a.b"], ["orders"]),
        ("#", "*", ["anything.at.all"], []),
        ("shop.*.created", "shop*", ["shop.order.created"], ["shop.order.paid"]),
    ],
)
def test_the_scan_glob_covers_the_pattern(
    pattern: str, glob: str, matched: list[str], unmatched: list[str]
) -> None:
    import fnmatch

    assert glob_for(pattern) == glob
    for stream in matched:
        assert Pattern(pattern).matches(stream)
        assert fnmatch.fnmatchcase(stream, glob)
    for stream in unmatched:
        assert not Pattern(pattern).matches(stream)
