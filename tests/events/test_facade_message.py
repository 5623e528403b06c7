"""EventMessage: fields, defaults, and the checks the memory broker's codec adds."""

from __future__ import annotations

import time

import pytest

from bus import DecodeError, PayloadTypeError
from bus.events import EventMessage, decode_message, encode_message


def test_defaults_and_timestamp() -> None:
    before = int(time.time() * 1000)
    message = EventMessage(topic="user.created", data={"id": "1"})
    assert message.key is None
    assert message.headers == {}
    assert before <= message.timestamp <= int(time.time() * 1000) + 1


def test_headers_default_is_not_shared() -> None:
    a = EventMessage(topic="t", data={})
    b = EventMessage(topic="t", data={})
    a.headers["x"] = "1"
    assert b.headers == {}


def test_round_trip_preserves_everything() -> None:
    message = EventMessage(
        topic="product.inventory_updated",
        data={"id": "p1", "qty": 3, "tags": ["a"]},
        key="p1",
        headers={"source": "inventory_service", "version": "1.0"},
        timestamp=1234,
    )
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (EventMessage(topic="t", data={"x": object()}), "not JSON-serializable"),
        (EventMessage(topic="t", data={}, headers={"n": 1}), "headers must map str to str"),  # type: ignore[dict-item]
        (EventMessage(topic="t", data={}, key=5), "key must be a str"),  # type: ignore[arg-type]
        (EventMessage(topic="t", data=[1]), "must be a dict"),  # type: ignore[arg-type]
    ],
)
def test_encode_rejects_malformed_messages(message: EventMessage, match: str) -> None:
    with pytest.raises(PayloadTypeError, match=match):
        encode_message(message)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(PayloadTypeError, match="EventMessage"):
        encode_message({"topic": "t"})  # type: ignore[arg-type]


def test_decode_garbage() -> None:
    with pytest.raises(DecodeError):
        decode_message(b"{not json")
