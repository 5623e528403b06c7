"""``RedisAdapter``: the seed facade's ``redis`` backend, over :class:`RedisBridge`.

(The seed's *custom* adapter, ``RedisStreamsAdapter`` in ``_adapter.py``, registered as
``redis-streams`` by ``bridges.redis.register()``, is an ``EventAdapter`` of its own and
stays as the seed wrote it; this is the backend the plugin offers, thin over the
bridge like the other four.)

The options: ``redis_url`` (default ``REDIS_URL``, else ``redis://localhost:6379/0``;
the facade's ``REDIS_URL`` setting fills it), and any :class:`RedisBridge` option
(``maxlen``, ``claim_idle``...). Each topic is a stream, created by its first entry or
by ``create_topic``; a consumer group reads from the stream's start
(``from_beginning=True``) or from what is published after it started. Every consumer
this adapter makes in a group has one name, so a ``pull`` reads what an earlier one left
unacknowledged (the message in hand at a ``break``) first, at once; another process's
unacknowledged entries are taken over after ``claim_idle`` seconds.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any

from bus import ConfigurationError
from bus.abc import Bridge
from bus.events import BridgeAdapter

from ._bridge import RedisBridge

__all__ = ["RedisAdapter"]

_serial = itertools.count(1)


class RedisAdapter(BridgeAdapter):
    """The ``redis`` backend of ``bus.events``."""

    backend = "redis"

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        group: str = "events",
        connect_timeout: float = 10.0,
        **bridge_options: Any,
    ) -> None:
        super().__init__(group=group, connect_timeout=connect_timeout)
        for reserved in ("name", "group", "consumer", "initial_position"):
            if reserved in bridge_options:
                raise ConfigurationError(f"RedisAdapter sets {reserved} itself; use group=")
        self.redis_url = redis_url or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
        self.consumer = f"events-{socket.gethostname()}-{os.getpid()}-{next(_serial)}"
        """The name of this adapter's consumers in their groups."""
        self._options: dict[str, Any] = {"connect_timeout": connect_timeout, **bridge_options}
        probe = self.make_bridge(name="redis", group=None, topic=None, from_beginning=False)
        self._shown = repr(probe)  # the URL checked, its password masked

    def __repr__(self) -> str:
        return f"<RedisAdapter {self._shown} group={self.group!r}>"

    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        try:
            return RedisBridge(
                self.redis_url, name=name, group=group,
                consumer=None if group is None else self.consumer,
                initial_position="earliest" if from_beginning else "latest",
                **self._options,
            )
        except TypeError as exc:
            raise ConfigurationError(f"RedisAdapter: {exc}") from None

    def topic_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise ConfigurationError(
                f"RedisAdapter.create_topic: unknown option(s) {sorted(options)}; a Redis "
                f"stream takes none (cap streams with RedisAdapter(maxlen=...))"
            )
        return options

    async def backlog(
        self, bridge: Bridge, topic: str, group: str, from_beginning: bool
    ) -> int | None:
        """Exact on Redis 7: what *group* has not been delivered yet on the stream, plus
        what this adapter's consumer holds unacknowledged (a ``pull`` reads both)."""
        assert isinstance(bridge, RedisBridge)
        return await bridge.backlog(topic, group, self.consumer, from_beginning)
