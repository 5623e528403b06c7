"""The Redis Streams bridge (redis-py), and the seed's custom Redis Streams adapter.

``RedisBridge(url, group=...)`` attached with ``bus.attach(bridge, export=[...],
import_=[...])`` mirrors bus topics to streams (one per topic) and reads them in a
consumer group; :data:`FEATURES` and :data:`PLUGIN` (its registration: ``redis://``
URLs, ``type = "redis"`` in a service file). redis-py is imported when a bridge or an
adapter is made, not when this package is imported.

:class:`RedisAdapter` is the seed facade's ``redis`` backend (``EVENT_TYPE=redis``),
thin over the bridge like the other brokers'.

``RedisStreamsAdapter(redis_url=...)`` is the seed's own custom adapter, an
:class:`~bus.events.EventAdapter` of its own; ``register()`` makes it the
``redis-streams`` backend of ``EventFactory`` (the seed's
``EventFactory.register_adapter("redis-streams", RedisStreamsAdapter)``), so
``UserEvent(event_type="redis-streams", redis_url="redis://127.0.0.1:6379/0")`` works.

The file set every broker package has (``docs/bridges.md``), with one difference: the
custom adapter predates the bridge and is not an adapter over it, so it keeps its own
entry format and reader under the shared names, and the bridge's are ``_bridge_*``::

    _bridge          RedisBridge: lifecycle, egress, admin (the mapping is described here)
    _bridge_wire     envelope <-> stream entry: encode, decode (CloudEvents ce_ fields)
    _bridge_ingress  read the group, deliver, acknowledge done entries, claim a dead
                     member's
    _client          redis-py's calls, run on the asyncio runtime (bridge and adapter)
    _errors          translate(exc, context, secrets): client errors as bus errors
    _plugin          PLUGIN: redis:// and rediss:// URLs, features, tail options
    _bridge_adapter  RedisAdapter, the facade's redis backend (a BridgeAdapter)
    _adapter         RedisStreamsAdapter (the seed's custom EventAdapter)
    _wire            the adapter's entry format: encode, decode
    _ingress         the adapter's consume(): one stream's messages, iterated
    _failures        the adapter's retries and dead letters
"""

from .._common import quiet
from ._adapter import RedisStreamsAdapter as RedisStreamsAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import RedisBridge as RedisBridge
from ._bridge_adapter import RedisAdapter as RedisAdapter
from ._plugin import PLUGIN as PLUGIN

# redis-py's logger: silent unless the application configured logging
quiet("redis")

__all__ = ["FEATURES", "PLUGIN", "RedisAdapter", "RedisBridge", "RedisStreamsAdapter", "register"]


def register(name: str = "redis-streams") -> None:
    """Register :class:`RedisStreamsAdapter` with ``EventFactory`` as *name*; the
    facade's ``REDIS_URL`` setting fills its ``redis_url``."""
    from bus.events import EventFactory

    EventFactory.register_adapter(name, RedisStreamsAdapter, settings={"redis_url": "redis_url"})
