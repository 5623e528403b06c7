"""The RabbitMQ bridge (aio-pika): bus topics on a durable AMQP topic exchange.

``RabbitMQBridge(url, exchange=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``. aio-pika is imported when a bridge is
made, not when this package is imported. The mapping is described in ``_bridge``.
"""

from ._adapter import RabbitMQAdapter as RabbitMQAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import RabbitMQBridge as RabbitMQBridge
from ._plugin import PLUGIN as PLUGIN

__all__ = ["FEATURES", "PLUGIN", "RabbitMQAdapter", "RabbitMQBridge"]
