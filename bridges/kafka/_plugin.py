"""Kafka's registration (:data:`PLUGIN`, entry point ``kafka`` of ``trio_bus.brokers``):
its URL (``kafka://host:port[,host:port]``), bridge, facade backend and features.

The plugin names :class:`KafkaBridge` (aiokafka); :class:`ConfluentKafkaBridge` is the
same broker through another client, chosen in code, not by URL.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from bus.abc import Bridge, BrokerPlugin

from .._urls import bad, hostport, parse
from ._adapter import KafkaAdapter
from ._bridge import FEATURES, KafkaBridge

__all__ = ["PLUGIN", "from_url"]

DEFAULT_PORT = 9092


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """``kafka://host:port[,host:port]`` (port 9092 by default) → :class:`KafkaBridge`."""
    parts = parse(url)
    parts.no_path()
    if "@" in parts.netloc:
        raise bad(url, "credentials go in options (sasl_plain_username=...), not the URL")
    servers = [s.strip() for s in parts.netloc.split(",")]
    if not any(servers):
        raise bad(url, "no bootstrap server")
    bootstrap = ",".join(hostport(url, s, DEFAULT_PORT) for s in servers)
    return KafkaBridge(bootstrap, name=name or "kafka", **options)


def tail_options(topic: str, from_beginning: bool, fresh: str) -> tuple[dict[str, Any], str]:
    """A tail reads in a group of its own, from the start or from now."""
    return {"group_id": fresh,
            "auto_offset_reset": "earliest" if from_beginning else "latest"}, ""


PLUGIN = BrokerPlugin(
    name="kafka",
    title="Kafka",
    schemes=("kafka",),
    url_forms=("kafka://host:port[,host:port]",),
    from_url=from_url,
    bridge=KafkaBridge,
    features=FEATURES,
    extra="kafka",
    adapter=KafkaAdapter,
    facade_settings=MappingProxyType({"bootstrap_servers": "kafka_server"}),
    not_in_file=frozenset({"name", "ssl_context", "sasl_oauth_token_provider"}),
    tail_options=tail_options,
)
