"""The Kafka bridge: :class:`KafkaBridge` (aiokafka), :class:`ConfluentKafkaBridge`
(confluent-kafka / librdkafka, the ``kafka-fast`` extra), :class:`KafkaAdapter` (the
seed facade's backend), :data:`FEATURES` and :data:`PLUGIN` (its registration).

The file set every broker package has (``docs/bridges.md``)::

    _bridge    KafkaBridge: lifecycle, egress, admin
    _client    aiokafka's calls, run on the bridge's asyncio runtime
    _wire      envelope <-> record: encode, encode_batch, decode (CloudEvents ce_ headers)
    _ingress   a consumer group member that commits only what the bus is done with
    _errors    translate(exc, context, secrets): client errors as bus errors
    _adapter   KafkaAdapter, the facade's backend
    _plugin    PLUGIN: kafka://host:port URLs, features, what the service and CLI need

Where Kafka differs, and why: it has **two clients**. aiokafka is the default (pure
Python, on the asyncio runtime); confluent-kafka wraps librdkafka, measured 7x faster
producing (``docs/performance.md``), and has no asyncio API: ``_confluent.py`` is its
bridge and ``_confluent_ingress.py`` its consumer (worker threads), both on the same
``_wire``, ``_errors`` and ``_ingress.TrackedConsumer``. ``_patterns.py``: Kafka
subscribes to a list of names or one regex, so import patterns are turned into one.

Clients are imported when a bridge opens, not when this package is imported.
"""

from .._common import quiet
from ._adapter import KafkaAdapter as KafkaAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import KafkaBridge as KafkaBridge
from ._confluent import ConfluentKafkaBridge as ConfluentKafkaBridge
from ._plugin import PLUGIN as PLUGIN

# aiokafka's loggers and librdkafka's (routed to ``confluent_kafka``): silent unless
# the application configured logging
quiet("aiokafka", "kafka", "confluent_kafka")

__all__ = ["FEATURES", "PLUGIN", "ConfluentKafkaBridge", "KafkaAdapter", "KafkaBridge"]
