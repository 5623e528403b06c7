"""How the conformance suite (``bus._check_bridge``) reaches a Kafka cluster.

:func:`kafka_kit` gives a :class:`~bus._check_bridge.BridgeKit` for bridges to
*bootstrap_servers*: topics are prepared with 4 partitions through the bridge's own
admin, raw records are written with a bare aiokafka producer, and the kill -9 child makes
its bridge with :func:`make_from_env` (``KAFKA_SERVER``, default ``127.0.0.1:9092``).
Used by the tests; no part of a running bus.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from bus._check_bridge import BridgeKit

from .._runtime import start_runtime
from . import _aio
from ._bridge import FEATURES, KafkaBridge

__all__ = ["kafka_kit", "make_from_env"]

DEFAULT_SERVER = "127.0.0.1:9092"


def make_from_env(name: str, group: str) -> KafkaBridge:
    """A bridge to ``$KAFKA_SERVER`` consuming in *group* (the kill -9 child's maker)."""
    return KafkaBridge(os.environ.get("KAFKA_SERVER", DEFAULT_SERVER), name=name, group_id=group)


def kafka_kit(
    bootstrap_servers: str = DEFAULT_SERVER,
    *,
    restart_broker: Callable[[], Awaitable[None]] | None = None,
    partitions: int = 4,
) -> BridgeKit:
    async def prepare(topics: list[str]) -> None:
        admin = KafkaBridge(bootstrap_servers, name="kit-admin")
        await admin.open()
        try:
            for topic in topics:
                await admin.create_topic(topic, partitions=partitions)
        finally:
            await admin.aclose()

    async def write_raw(topic: str, data: bytes) -> None:
        rt = await start_runtime("thread")
        try:
            producer = await rt.run(_aio.start_producer, {"bootstrap_servers": bootstrap_servers})
            try:
                await rt.run(producer.send_and_wait, topic, data)
            finally:
                await rt.run(producer.stop)
        finally:
            await rt.aclose()

    return BridgeKit(
        name="kafka",
        features=FEATURES,
        make=lambda name, group: KafkaBridge(bootstrap_servers, name=name, group_id=group),
        prepare=prepare,
        write_raw=write_raw,
        restart_broker=restart_broker,
        child="bridges.kafka._kit:make_from_env",
        unreachable=lambda: KafkaBridge("127.0.0.1:1", name="unreachable"),
        settle=1.0,
        env={"KAFKA_SERVER": bootstrap_servers},
    )
