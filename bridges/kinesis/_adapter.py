"""``KinesisAdapter``: the seed facade's ``kinesis`` backend, over :class:`KinesisBridge`.

The seed's options map onto the bridge: ``region_name``, ``aws_access_key_id``,
``aws_secret_access_key``, ``endpoint_url`` (each defaulting to the environment, as the
bridge reads it), ``shard_count`` for streams it creates (``create_topic(name,
shard_count=2)`` too). A message's key is its partition key. Each topic is a stream,
created on first use; a consumer group starts at the oldest record kept
(``from_beginning=True``: ``TRIM_HORIZON``) or at new ones (``LATEST``), and that start
is saved as the group's checkpoint on each shard it has none for before a ``pull`` or
``pull(callback=...)`` returns (:meth:`KinesisAdapter.start_group`), so that a later
consumer of the group resumes there, not at its own initial position.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from bus import ConfigurationError
from bus.abc import Bridge
from bus.events import BridgeAdapter

from ._bridge import KinesisBridge
from ._checkpoints import start_checkpoint
from ._errors import error_code

__all__ = ["KinesisAdapter"]


class KinesisAdapter(BridgeAdapter):
    """The ``kinesis`` backend of ``bus.events``."""

    backend = "kinesis"

    def __init__(
        self,
        region_name: str | None = None,
        *,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        shard_count: int = 1,
        group: str = "events",
        connect_timeout: float = 10.0,
        end_idle: float = 2.0,
        **bridge_options: Any,
    ) -> None:
        super().__init__(group=group, connect_timeout=connect_timeout, end_idle=end_idle)
        for reserved in ("name", "group", "initial_position", "region"):
            if reserved in bridge_options:
                raise ConfigurationError(f"KinesisAdapter sets {reserved} itself")
        self._options: dict[str, Any] = {
            "region": region_name, "access_key_id": aws_access_key_id,
            "secret_access_key": aws_secret_access_key, "endpoint_url": endpoint_url,
            "shard_count": shard_count, "connect_timeout": connect_timeout, **bridge_options,
        }
        probe = self.make_bridge(name="kinesis", group=None, topic=None, from_beginning=False)
        self.region_name = probe.region  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<KinesisAdapter region={self.region_name!r} group={self.group!r}>"

    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        try:
            return KinesisBridge(
                name=name, group=group,
                initial_position="TRIM_HORIZON" if from_beginning else "LATEST",
                **self._options,
            )
        except TypeError as exc:
            raise ConfigurationError(f"KinesisAdapter: {exc}") from None

    async def start_group(
        self, bridge: Bridge, topic: str, group: str, from_beginning: bool
    ) -> int | None:
        """Save the group's start (the oldest record kept with *from_beginning*, else the
        records arriving from now on) as its checkpoint on each shard of *topic*'s stream
        it has none for, creating the stream if missing: a ``break`` on the group's first
        message then leaves it to the group's next consumer, which would otherwise start
        at ``LATEST``. Kinesis cannot say how many records wait: None."""
        assert isinstance(bridge, KinesisBridge)
        now = time.time()
        try:
            shards = await bridge.shards(topic)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            await bridge.create_topic(topic)
            shards = await bridge.shards(topic)
        # the consumers' bridges keep checkpoints under the group's name (make_bridge)
        stream, store = bridge.stream_of(topic), bridge.checkpoints.store
        saved = await trio.to_thread.run_sync(store.load, group, stream)
        start = start_checkpoint(from_beginning, now)
        missing = {(stream, s["ShardId"]): start for s in shards if s["ShardId"] not in saved}
        if missing:
            await trio.to_thread.run_sync(store.save, group, missing)
        return None
