"""Redis (Debian redis-server) through redis-py's asyncio client: a stream entry round trip."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

pytestmark = pytest.mark.brokers


async def _round_trip(brokers, stream: str) -> None:
    client = aioredis.from_url(brokers.env("REDIS_URL"))
    try:
        entry_id = await client.xadd(
            stream, {"key": "order-42", "h-trace": "abc", "body": b"\x00payload\xff"}
        )
        got = await client.xread({stream: "0-0"}, count=10, block=1000)
        assert len(got) == 1
        name, entries = got[0]
        assert name.decode() == stream
        assert len(entries) == 1
        got_id, fields = entries[0]
        assert got_id == entry_id
        assert fields == {b"key": b"order-42", b"h-trace": b"abc", b"body": b"\x00payload\xff"}
    finally:
        await client.delete(stream)
        assert await client.exists(stream) == 0
        await client.aclose()


def test_redis_round_trip(brokers, unique: str) -> None:
    brokers.require("redis")
    asyncio.run(_round_trip(brokers, unique))
