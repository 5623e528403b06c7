"""Redis's registration (:data:`PLUGIN`, entry point ``redis`` of ``trio_bus.brokers``):
its URLs (redis-py's own ``redis://`` and ``rediss://``), bridge, facade backend
(:class:`RedisAdapter`, ``EVENT_TYPE=redis``; the seed's custom ``redis-streams`` adapter
is registered by ``bridges.redis.register()``) and features. A tail reads in a consumer
group of its own, removed afterwards; a stream keeps its entries whether or not anyone
reads, so ``bus topics create`` just makes the stream.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from bus.abc import Bridge, BrokerPlugin

from .._urls import bad, parse
from ._bridge import FEATURES, RedisBridge
from ._bridge_adapter import RedisAdapter

__all__ = ["PLUGIN", "from_url"]


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """``redis[s]://[user:password@]host[:port][/db]`` → :class:`RedisBridge` (the URL is
    redis-py's own)."""
    parts = parse(url)
    try:
        host, port = parts.parts.hostname, parts.parts.port
    except ValueError:
        raise bad(url, "the port is not a number from 1 to 65535") from None
    if not host:
        raise bad(url, "no host")
    del port  # checked; redis-py reads it from the URL
    db = parts.parts.path.strip("/")
    if db and not db.isdigit():
        raise bad(url, f"the path is the database number (/0), not {parts.parts.path!r}")
    return RedisBridge(url, name=name or "redis", **options)


def tail_options(topic: str, from_beginning: bool, fresh: str) -> tuple[dict[str, Any], str]:
    """A tail reads in a group of its own (*fresh*), from the stream's start or from now;
    the group is removed afterwards."""
    return {"group": fresh,
            "initial_position": "earliest" if from_beginning else "latest"}, fresh


async def tail_cleanup(bridge: Any, private: str) -> None:
    """Remove a tail's private group."""
    await bridge.delete_group(private)


PLUGIN = BrokerPlugin(
    name="redis",
    title="Redis Streams",
    schemes=("redis", "rediss"),
    url_forms=("redis://[user:password@]host:port/db (or rediss://)",),
    from_url=from_url,
    bridge=RedisBridge,
    features=FEATURES,
    extra="redis",
    adapter=RedisAdapter,
    facade_settings=MappingProxyType({"redis_url": "redis_url"}),
    tail_options=tail_options,
    tail_cleanup=tail_cleanup,
)
