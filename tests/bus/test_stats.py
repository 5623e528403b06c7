"""What stats() gives: read-only mappings, and retained bytes that count the payload's
JSON encoding only."""

from __future__ import annotations

import msgspec
import pytest

from bus import Retention, open_bus


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
