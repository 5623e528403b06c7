"""The RabbitMQ bridge (aio-pika): bus topics on a durable AMQP topic exchange.

``RabbitMQBridge(url, exchange=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``; :class:`RabbitMQAdapter` is the seed
facade's backend; :data:`FEATURES` and :data:`PLUGIN` (its registration). aio-pika is
imported when a bridge is made, not when this package is imported.

The file set every broker package has (``docs/bridges.md``)::

    _bridge    RabbitMQBridge: lifecycle, egress, admin (the mapping is described here)
    _client    aio-pika's calls, run on the bridge's asyncio runtime
    _wire      envelope <-> AMQP message: encode, decode (CloudEvents ce- headers)
    _ingress   consume the queue, deliver, acknowledge done tags (AckTracker)
    _errors    translate(exc, context, secrets): client errors as bus errors
    _adapter   RabbitMQAdapter, the facade's backend
    _plugin    PLUGIN: amqp:// and amqps:// URLs, features, what the service and CLI need
"""

from .._common import quiet
from ._adapter import RabbitMQAdapter as RabbitMQAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import RabbitMQBridge as RabbitMQBridge
from ._plugin import PLUGIN as PLUGIN

# aio-pika's and aiormq's loggers: silent unless the application configured logging
quiet("aio_pika", "aiormq", "pamqp")

__all__ = ["FEATURES", "PLUGIN", "RabbitMQAdapter", "RabbitMQBridge"]
