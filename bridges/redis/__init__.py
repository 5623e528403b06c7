"""Redis Streams for the seed facade: the custom adapter of the seed's README.

``RedisStreamsAdapter(redis_url=...)`` is an :class:`~bus.events.EventAdapter`; ``register()``
makes it the ``redis-streams`` backend of ``EventFactory`` (the seed's
``EventFactory.register_adapter("redis-streams", RedisStreamsAdapter)``), so
``UserEvent(event_type="redis-streams", redis_url="redis://127.0.0.1:6379/0")`` works.
redis-py is imported when an adapter connects, not when this package is imported.
"""

from ._adapter import RedisStreamsAdapter as RedisStreamsAdapter

__all__ = ["RedisStreamsAdapter", "register"]


def register(name: str = "redis-streams") -> None:
    """Register :class:`RedisStreamsAdapter` with ``EventFactory`` as *name*; the
    facade's ``REDIS_URL`` setting fills its ``redis_url``."""
    from bus.events import EventFactory

    EventFactory.register_adapter(name, RedisStreamsAdapter, settings={"redis_url": "redis_url"})
