"""RabbitMQ's registration (:data:`PLUGIN`, entry point ``rabbitmq`` of
``trio_bus.brokers``): its URLs (aio-pika's own ``amqp://`` and ``amqps://``, plus
``?exchange=`` and ``?queue=``), bridge, facade backend and features. AMQP cannot list a broker's
topics (no call lists exchanges or bindings), so :attr:`~bus.abc.BrokerPlugin.lists_topics`
is off; a tail reads through a queue of its own, removed afterwards.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from bus.abc import Bridge, BrokerPlugin

from .._urls import KEEP_GROUP, bad, parse
from ._adapter import RabbitMQAdapter
from ._bridge import FEATURES, RabbitMQBridge, kept_queue

__all__ = ["PLUGIN", "from_url"]


def from_url(url: str, *, name: str | None = None, **options: Any) -> Bridge:
    """``amqp[s]://user:password@host:port/vhost[?exchange=NAME][&queue=NAME]`` →
    :class:`RabbitMQBridge` (the URL without its query is aio-pika's). ``queue=`` reads
    that existing queue as it is (``existing_queue=True``: never declared nor bound)."""
    parts = parse(url, ("exchange", "queue"))
    try:
        host, port = parts.parts.hostname, parts.parts.port
    except ValueError:
        raise bad(url, "the port is not a number from 1 to 65535") from None
    if not host:
        raise bad(url, "no host")
    del port  # checked; aio-pika reads it from the URL
    if "exchange" in parts.query:
        if not parts.query["exchange"]:
            raise bad(url, "exchange= is empty")
        options.setdefault("exchange", parts.query["exchange"])
    if "queue" in parts.query:
        if not parts.query["queue"]:
            raise bad(url, "queue= is empty")
        options.update(queue=parts.query["queue"], existing_queue=True)
    plain = url.split("?", 1)[0]
    return RabbitMQBridge(plain, name=name or "rabbitmq", **options)


def tail_options(topic: str, from_beginning: bool, fresh: str) -> tuple[dict[str, Any], str]:
    """From the beginning: the kept queue (``bus topics create`` made it); else a private
    queue, removed afterwards."""
    if from_beginning:
        return {"queue": kept_queue(topic, "trio-bus", KEEP_GROUP)}, ""
    return {"queue": f"trio-bus.{fresh}"}, f"trio-bus.{fresh}"


async def tail_cleanup(bridge: Any, private: str) -> None:
    """Remove a tail's private queue."""
    await bridge.delete_queue(private)


def keep_options(bridge: Any, topic: str, place: str | None) -> dict[str, Any]:
    """The service's dead letters are kept in a durable queue bound to *topic*: *place*
    (``[service.dead_letter] queue = ...``), by default ``EXCHANGE.TOPIC``."""
    return {"queue": place or f"{getattr(bridge, 'exchange', 'trio-bus')}.{topic}"}


PLUGIN = BrokerPlugin(
    name="rabbitmq",
    title="RabbitMQ",
    schemes=("amqp", "amqps"),
    url_forms=("amqp://user:password@host:port/vhost (or amqps://)",),
    from_url=from_url,
    bridge=RabbitMQBridge,
    features=FEATURES,
    extra="rabbitmq",
    adapter=RabbitMQAdapter,
    facade_settings=MappingProxyType({"connection_url": "rabbitmq_url"}),
    keep_key="queue",
    keep_options=keep_options,
    lists_topics=False,
    tail_options=tail_options,
    tail_cleanup=tail_cleanup,
)
