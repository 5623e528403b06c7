"""Kinesis's registration (:data:`PLUGIN`, entry point ``kinesis`` of
``trio_bus.brokers``): its URL (``kinesis://region?endpoint=http://host:port``), bridge,
facade backend and features. A service file names a checkpoint store by path
(``checkpoints = "..."``): the constructor also takes a store object, which a file cannot.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from bus.abc import Bridge, BrokerPlugin

from .._urls import bad, parse
from ._adapter import KinesisAdapter
from ._bridge import FEATURES, KinesisBridge
from ._checkpoints import MemoryCheckpointStore

__all__ = ["PLUGIN", "from_url"]


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """``kinesis://region[?endpoint=http://host:port]`` → :class:`KinesisBridge`
    (credentials come from the AWS environment)."""
    parts = parse(url, ("endpoint",))
    parts.no_path()
    if "@" in parts.netloc or ":" in parts.netloc:
        raise bad(url, "the host part is the AWS region (eu-west-1), credentials come "
                       "from the AWS environment")
    endpoint = parts.query.get("endpoint")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise bad(url, f"endpoint {endpoint!r} must be an http:// or https:// URL")
    return KinesisBridge(
        name=name or "kinesis", region=parts.netloc or None, endpoint_url=endpoint, **options
    )


def tail_options(topic: str, from_beginning: bool, fresh: str) -> tuple[dict[str, Any], str]:
    """A tail keeps its positions in memory and takes no shard leases."""
    return {"group": fresh, "checkpoints": MemoryCheckpointStore(), "leases": False,
            "initial_position": "TRIM_HORIZON" if from_beginning else "LATEST"}, ""


PLUGIN = BrokerPlugin(
    name="kinesis",
    title="Kinesis (against kinesis-mock)",
    schemes=("kinesis",),
    url_forms=("kinesis://region?endpoint=http://host:port",),
    from_url=from_url,
    bridge=KinesisBridge,
    features=FEATURES,
    extra="kinesis",
    adapter=KinesisAdapter,
    facade_settings=MappingProxyType({
        "region_name": "aws_region",
        "aws_access_key_id": "aws_access_key_id",
        "aws_secret_access_key": "aws_secret_access_key",
        "endpoint_url": "kinesis_endpoint_url",
    }),
    file_types=MappingProxyType({"checkpoints": str | None}),
    tail_options=tail_options,
)
