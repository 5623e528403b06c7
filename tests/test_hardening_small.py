"""Smaller promises (issue 6, item 14): read-only stats, str headers, what max_bytes
measures, and error messages that read well."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bus import PayloadTypeError, Retention, open_bus


class Order(msgspec.Struct):
    id: str


async def test_stats_mappings_are_read_only() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: None, name="h")
        stats = bus.stats()
    with pytest.raises(TypeError):
        stats.actors["h"] = stats.actors["h"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del stats.topics["t"]  # type: ignore[attr-defined]
    assert set(stats.actors) == {"h"} and "t" in stats.topics


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


async def test_max_bytes_counts_the_payloads_json_encoding_only() -> None:
    async with open_bus() as bus:
        bus.topic("t", Order, retain=Retention(max_bytes=40))
        await bus.publish("t", Order("a" * 10), headers={"big": "x" * 1000}, key="k" * 100)
        one = len(b'{"id":"aaaaaaaaaa"}')
        assert bus.stats().topics["t"].retained_bytes == one  # headers and key not counted
        await bus.publish("t", Order("b" * 10))
        assert bus.stats().topics["t"].retained_bytes == 2 * one  # 38 <= 40: both kept
        await bus.publish("t", Order("c" * 10))  # 57 > 40: the oldest goes
        assert [e.payload.id[0] for e in bus.retained("t")] == ["b", "c"]
        assert bus.stats().topics["t"].retained == 2
