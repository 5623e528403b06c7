"""The Kafka bridge: :class:`KafkaBridge` (aiokafka), :class:`ConfluentKafkaBridge`
(confluent-kafka / librdkafka, the ``kafka-fast`` extra) and their :data:`FEATURES`.

Clients are imported when a bridge opens, not when this package is imported.
"""

from ._adapter import KafkaAdapter as KafkaAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import KafkaBridge as KafkaBridge
from ._confluent import ConfluentKafkaBridge as ConfluentKafkaBridge
from ._plugin import PLUGIN as PLUGIN

__all__ = ["FEATURES", "PLUGIN", "ConfluentKafkaBridge", "KafkaAdapter", "KafkaBridge"]
