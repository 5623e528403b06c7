"""What publish refuses, and how its errors read: header values that are not str, a
payload of the wrong type."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bus import PayloadTypeError, open_bus


class Order(msgspec.Struct):
    id: str


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"attempt": 1}, "header 'attempt' must have a str value, got int: 1"),
        ({"ok": "yes", "flag": None}, "header 'flag' must have a str value, got NoneType"),
        ({"x": b"raw"}, "header 'x' must have a str value, got bytes"),
        ({1: "one"}, "header names must be str, got int: 1"),
        ([("a", "b")], "headers must be a dict"),
    ],
)
async def test_non_str_headers_are_refused_naming_the_header(headers: Any, fragment: str) -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        got: list[int] = []
        bus.subscribe("t", lambda env: got.append(env.payload), name="h")
        with pytest.raises(PayloadTypeError) as caught:
            await bus.publish("t", 1, headers=headers)
        assert fragment in str(caught.value)
        await bus.publish("t", 2, headers={"fine": "1"})
    assert got == [2]  # the refused message went nowhere


async def test_type_errors_read_well() -> None:
    async with open_bus() as bus:
        bus.topic("orders", Order)
        with pytest.raises(PayloadTypeError) as caught:
            await bus.publish("orders", "not an order")
    message = str(caught.value)
    assert "a Order" not in message
    assert "publish a value of type Order" in message
