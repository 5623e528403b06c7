"""``AdapterWrapper``: an adapter that forwards everything to another one.

Middleware for the facade (metrics, circuit breakers, tracing) subclasses it and
overrides only the methods it cares about, as the seed's ``MetricsEventAdapter`` and
``CircuitBreakerEventAdapter`` do; the result is still an :class:`EventAdapter`, so it
can be given to ``BaseEvent(adapter=...)`` or registered with the factory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._adapter import EventAdapter, MessageCallback
from ._message import EventMessage

__all__ = ["AdapterWrapper"]


class AdapterWrapper(EventAdapter):
    """Forwards every :class:`EventAdapter` method to ``adapter``; raises what it raises."""

    def __init__(self, adapter: EventAdapter) -> None:
        self.adapter = adapter

    async def connect(self) -> None:
        await self.adapter.connect()

    async def disconnect(self) -> None:
        await self.adapter.disconnect()

    async def publish(self, message: EventMessage) -> None:
        await self.adapter.publish(message)

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        await self.adapter.subscribe(topic, callback, **kwargs)

    def consume(self, topic: str, **kwargs: Any) -> AsyncIterator[EventMessage]:
        return self.adapter.consume(topic, **kwargs)

    async def create_topic(self, topic: str, **kwargs: Any) -> None:
        await self.adapter.create_topic(topic, **kwargs)

    async def delete_topic(self, topic: str) -> None:
        await self.adapter.delete_topic(topic)

    async def list_topics(self) -> list[str]:
        return await self.adapter.list_topics()

    async def drain(self) -> None:
        await self.adapter.drain()
