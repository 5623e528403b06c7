"""Redis Streams for the seed facade: the custom adapter of the seed's README.

``RedisStreamsAdapter(redis_url=...)`` is an :class:`~bus.events.EventAdapter`; ``register()``
makes it the ``redis-streams`` backend of ``EventFactory`` (the seed's
``EventFactory.register_adapter("redis-streams", RedisStreamsAdapter)``), so
``UserEvent(event_type="redis-streams", redis_url="redis://127.0.0.1:6379/0")`` works.
redis-py is imported when an adapter connects, not when this package is imported.

Redis is not a bridge yet (issue 20 makes it one): it has the parts of the file set
(``docs/bridges.md``) that a facade adapter needs, and no ``PLUGIN``, since a plugin
names a :class:`~bus.abc.Bridge`::

    _adapter   RedisStreamsAdapter (an EventAdapter, what _bridge is for the others)
    _client    redis-py's calls, run on the adapter's asyncio runtime
    _wire      message <-> stream entry: encode, decode
    _ingress   what consume() returns: one stream's messages, iterated
    _errors    translate(exc, context, secrets): client errors as bus errors
    _failures  retries and dead letters (the bus does that for the bridges)
"""

from .._common import quiet
from ._adapter import RedisStreamsAdapter as RedisStreamsAdapter

# redis-py's logger: silent unless the application configured logging
quiet("redis")

__all__ = ["RedisStreamsAdapter", "register"]


def register(name: str = "redis-streams") -> None:
    """Register :class:`RedisStreamsAdapter` with ``EventFactory`` as *name*; the
    facade's ``REDIS_URL`` setting fills its ``redis_url``."""
    from bus.events import EventFactory

    EventFactory.register_adapter(name, RedisStreamsAdapter, settings={"redis_url": "redis_url"})
