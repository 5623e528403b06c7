"""What a broker adds to an AsyncAPI document: :class:`BrokerSide`, and the bridge hook.

The core names no broker (``bus/_plugins.py``): a bridge says how its broker looks in
AsyncAPI terms through a :class:`BrokerSide` — the server (protocol, host, its bindings),
the broker's name for a bus topic, the channel, operation and message bindings, and how
the CloudEvents attributes and the key travel. Where that comes from is a *describe*
function given to :func:`bus.asyncapi.document` (``bridges.asyncapi_side`` knows the
four bundled brokers), else a bridge's own ``asyncapi_side()`` method, else (for the
in-process loopback broker) protocol ``trio-bus-loopback``, else a generic server named
after the bridge with no bindings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._bridge import Bridge
from .._loopback import LoopbackBridge

__all__ = ["BrokerSide", "Describe", "side_of"]

def _same(topic: str) -> str:
    return topic


def _none(_: str) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, kw_only=True)
class BrokerSide:
    """One bridge's broker, as AsyncAPI sees it."""

    protocol: str
    """The server's protocol: ``kafka``, ``amqp``, ``googlepubsub``... (AsyncAPI's own
    names where it has one; Kinesis has none: ``kinesis``)."""
    host: str
    """The server's host (and port)."""
    title: str = ""
    pathname: str | None = None
    """A path on the host: an AMQP virtual host, a Pub/Sub project."""
    server_bindings: Mapping[str, Any] = field(default_factory=dict)
    """``{protocol: binding}`` on the server object."""
    extensions: Mapping[str, Any] = field(default_factory=dict)
    """``x-...`` fields on the server object (a broker without an official binding)."""
    address: Callable[[str], str] = _same
    """The broker's name for a bus topic (or pattern): a Kafka topic, an AMQP routing key,
    a Kinesis stream, a Pub/Sub topic."""
    channel_bindings: Callable[[str], Mapping[str, Any]] = _none
    """``{protocol: binding}`` of the broker channel of a bus topic."""
    operation_bindings: Callable[[str], Mapping[str, Any]] = _none
    """``{protocol: binding}`` of an operation, by action: ``send`` or ``receive``."""
    message_bindings: Mapping[str, Any] = field(default_factory=dict)
    """``{protocol: binding}`` of every message on this broker (the Kafka key...)."""
    channel_extensions: Callable[[str], Mapping[str, Any]] = _none
    """``x-...`` fields of the broker channel of a bus topic."""
    cloudevents: Literal["binary", "structured"] = "binary"
    """Binary content mode (attributes as headers) or structured (the JSON event format
    as the message itself: brokers without headers)."""
    header_prefix: str = "ce-"
    """Binary mode: the attribute header prefix (``ce_`` on Kafka)."""
    key_header: str | None = None
    """Binary mode: the header that carries the key, where the broker has no key."""
    ordering: str = ""
    """How the envelope key orders messages on this broker, for ``x-trio-bus-ordering``."""


Describe = Callable[[Bridge], "BrokerSide | None"]
"""A bridge's :class:`BrokerSide`, or None for a bridge it does not know."""


def side_of(bridge: Bridge, describe: Describe | None) -> BrokerSide:
    """The broker side of *bridge*: *describe*'s, the bridge's own, or a generic one."""
    if describe is not None:
        side = describe(bridge)
        if side is not None:
            return side
    own = getattr(bridge, "asyncapi_side", None)
    if callable(own):
        side = own()
        if isinstance(side, BrokerSide):
            return side
    if isinstance(bridge, LoopbackBridge):  # memory:// and the tests' in-process broker
        return BrokerSide(protocol="trio-bus-loopback", host="in-process",
                          title="an in-process loopback broker (bus.testing)")
    return BrokerSide(
        protocol=bridge.name, host="unknown",
        title=f"{type(bridge).__name__} (no AsyncAPI description of its broker)",
    )
