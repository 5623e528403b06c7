"""``PubSubAdapter``: the seed facade's ``pubsub`` backend, over :class:`PubSubBridge`.

The seed's options map onto the bridge: ``project_id``, ``credentials_path`` (a service
account file) and ``emulator_host`` (each defaulting to the environment). A topic is a
Pub/Sub topic, created on first use, and a consumer group one subscription to it
(``<topic>~<group>``); ``create_topic`` — and the first ``push`` to a topic — create the
topic and the default group's subscription, so messages pushed before anyone reads are
kept for it. A subscription holds what was published since it exists: ``from_beginning``
has nothing older to read.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from bus import ConfigurationError
from bus.abc import Bridge
from bus.events import BridgeAdapter

from ._bridge import PubSubBridge

__all__ = ["PubSubAdapter"]


class PubSubAdapter(BridgeAdapter):
    """The ``pubsub`` backend of ``bus.events``."""

    backend = "pubsub"

    def __init__(
        self,
        project_id: str | None = None,
        *,
        credentials_path: str | None = None,
        emulator_host: str | None = None,
        group: str = "events",
        connect_timeout: float = 10.0,
        end_idle: float = 2.0,
        **bridge_options: Any,
    ) -> None:
        super().__init__(group=group, connect_timeout=connect_timeout, end_idle=end_idle)
        for reserved in ("name", "group", "project"):
            if reserved in bridge_options:
                raise ConfigurationError(f"PubSubAdapter sets {reserved} itself")
        self._options: dict[str, Any] = {
            "credentials_path": credentials_path, "emulator_host": emulator_host,
            **bridge_options,
        }
        self._project = project_id
        probe = self.make_bridge(name="pubsub", group=None, topic=None, from_beginning=False)
        self.project_id: str = probe._endpoint.project  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<PubSubAdapter project={self.project_id!r} group={self.group!r}>"

    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        try:
            cls = PubSubBridge if group is None else _ConsumerBridge
            return cls(self._project, name=name, group=group, **self._options)
        except TypeError as exc:
            raise ConfigurationError(f"PubSubAdapter: {exc}") from None

    async def prepare_topic(self, bridge: Bridge, topic: str) -> None:
        await bridge.create_topic(topic, group=self.group)

    def topic_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options.setdefault("group", self.group)
        return options


class _ConsumerBridge(PubSubBridge):
    """The bridge of one facade consumer (a ``pull`` or a callback). When it closes,
    the messages its bus still had in work (a ``break`` left one in hand) are handed
    back at once (ack deadline 0), so the group gets them again now, as on the other
    brokers, not when their lease runs out (``ack_deadline``, 10 s at least)."""

    async def aclose(self) -> None:
        if self._open:
            ingress = self._ingress
            in_work = ingress.leases.to_extend(trio.current_time(), math.inf)
            for sid, ack_ids in in_work.items():
                await ingress._hand_back(sid, ack_ids)
        await super().aclose()
