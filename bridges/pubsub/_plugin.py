"""Pub/Sub's registration (:data:`PLUGIN`, entry point ``pubsub`` of
``trio_bus.brokers``): its URL (``pubsub://project?emulator=host:port``), bridge, facade
backend and features. A tail reads through a subscription of its own (removed
afterwards), or through the kept one (``bus topics create``) from the beginning.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from bus.abc import Bridge, BrokerPlugin

from .._urls import KEEP_GROUP, bad, hostport, parse
from ._adapter import PubSubAdapter
from ._bridge import FEATURES, PubSubBridge

__all__ = ["PLUGIN", "from_url"]

EMULATOR_PORT = 8085


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """``pubsub://project[?emulator=host:port]`` → :class:`PubSubBridge`."""
    parts = parse(url, ("emulator",))
    parts.no_path()
    if "@" in parts.netloc or ":" in parts.netloc:
        raise bad(url, "the host part is the Google Cloud project id")
    emulator = parts.query.get("emulator")
    if emulator is not None:
        emulator = hostport(url, emulator, EMULATOR_PORT)
    return PubSubBridge(
        parts.netloc or None, name=name or "pubsub", emulator_host=emulator, **options
    )


def tail_options(topic: str, from_beginning: bool, fresh: str) -> tuple[dict[str, Any], str]:
    """A tail never creates a topic (the bridge would, by default)."""
    group = KEEP_GROUP if from_beginning else fresh
    return {"group": group, "create_topics": False}, "" if from_beginning else fresh


async def tail_cleanup(bridge: Any, private: str) -> None:
    """Remove a tail's subscriptions: one per topic its pattern matched."""
    for sid in await bridge.list_subscriptions():
        name, _, group = sid.rpartition("~")
        if group == private:
            await bridge.delete_subscription(name, private)


DEAD_LETTER_GROUP = "dead-letters"
"""The subscription group that keeps the service's dead letters by default."""


def keep_options(bridge: Any, topic: str, place: str | None) -> dict[str, Any]:
    """The service's dead letters are kept in a subscription of group *place*
    (``[service.dead_letter] group = ...``), by default ``dead-letters``."""
    return {"group": place or DEAD_LETTER_GROUP}


PLUGIN = BrokerPlugin(
    name="pubsub",
    title="Google Cloud Pub/Sub",
    schemes=("pubsub",),
    url_forms=("pubsub://project?emulator=host:port",),
    from_url=from_url,
    bridge=PubSubBridge,
    features=FEATURES,
    extra="pubsub",
    adapter=PubSubAdapter,
    facade_settings=MappingProxyType({
        "project_id": "gcp_project_id",
        "credentials_path": "gcp_credentials_path",
        "emulator_host": "pubsub_emulator_host",
    }),
    keep_key="group",
    keep_options=keep_options,
    tail_options=tail_options,
    tail_cleanup=tail_cleanup,
)
