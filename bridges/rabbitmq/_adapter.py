"""``RabbitMQAdapter``: the seed facade's ``rabbitmq`` backend, over :class:`RabbitMQBridge`.

The seed's options map onto the bridge: ``connection_url`` (the AMQP URL),
``publisher_confirms`` (``push`` returns once the broker confirmed the message; without,
once it was written), ``delivery_mode`` (2: persistent). A consumer group is a durable
queue per group and topic (``<exchange>.<group>.<topic>``) bound to the topic's routing
key; the default group's queue is declared before the first ``push`` to a topic (or by
``create_topic``), so messages pushed before anyone reads are kept for it. AMQP queues
hold what arrived since they exist: ``from_beginning`` has nothing older to read.
"""

from __future__ import annotations

from typing import Any

from bus import ConfigurationError
from bus.abc import Bridge
from bus.events import BridgeAdapter

from ._bridge import RabbitMQBridge

__all__ = ["RabbitMQAdapter"]


class RabbitMQAdapter(BridgeAdapter):
    """The ``rabbitmq`` backend of ``bus.events``."""

    backend = "rabbitmq"

    def __init__(
        self,
        connection_url: str = "amqp://guest:guest@localhost:5672/",
        *,
        publisher_confirms: bool = True,
        delivery_mode: int = 2,
        exchange: str = "trio-bus",
        group: str = "events",
        connect_timeout: float = 10.0,
        end_idle: float = 2.0,
        **bridge_options: Any,
    ) -> None:
        super().__init__(group=group, connect_timeout=connect_timeout, end_idle=end_idle)
        self.connection_url = connection_url
        self.exchange = exchange
        for reserved in ("name", "group", "queue"):
            if reserved in bridge_options:
                raise ConfigurationError(f"RabbitMQAdapter sets {reserved} itself; use group=")
        self._options: dict[str, Any] = {
            "publisher_confirms": publisher_confirms, "delivery_mode": delivery_mode,
            "exchange": exchange, "connect_timeout": connect_timeout, **bridge_options,
        }
        self.make_bridge(name="rabbitmq", group=None, topic=None, from_beginning=False)

    def __repr__(self) -> str:
        return f"<RabbitMQAdapter exchange={self.exchange!r} group={self.group!r}>"

    def queue(self, group: str, topic: str) -> str:
        """The durable queue of *group* on *topic*."""
        return f"{self.exchange}.{group}.{topic}"

    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        queue = None if group is None or topic is None else self.queue(group, topic)
        try:
            return RabbitMQBridge(self.connection_url, name=name, queue=queue, **self._options)
        except TypeError as exc:
            raise ConfigurationError(f"RabbitMQAdapter: {exc}") from None

    async def start_group(
        self, bridge: Bridge, topic: str, group: str, from_beginning: bool
    ) -> int | None:
        """Declare the group's queue (the consumer would) and return its ready
        messages: AMQP hands them out in queue order, so a pull ends after that many."""
        queue = self.queue(group, topic)
        await bridge.create_topic(topic, queue=queue)
        ready, _ = await bridge.queue_counts(queue)  # type: ignore[attr-defined]
        return int(ready)

    async def remove_topic(self, bridge: Bridge, topic: str, groups: set[str]) -> None:
        """An AMQP topic is a routing key: unbind and delete each group's queue
        ``<exchange>.<group>.<topic>`` (AMQP cannot list queues: the groups are the
        default one and those this adapter used)."""
        for group in sorted(groups):
            await bridge.delete_kept_topic(topic, group)  # type: ignore[attr-defined]

    async def prepare_topic(self, bridge: Bridge, topic: str) -> None:
        await bridge.create_topic(topic, queue=self.queue(self.group, topic))

    def topic_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options.pop("durable", None)  # queues are always durable here
        if options:
            raise ConfigurationError(
                f"RabbitMQAdapter.create_topic: unknown option(s) {sorted(options)}"
            )
        return options

    async def list_topics(self) -> list[str]:
        """The topics this adapter declared a queue for (AMQP cannot list bindings)."""
        await self._producer()
        return sorted(self._prepared)
