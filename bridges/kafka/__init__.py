"""The Kafka bridge (aiokafka): :class:`KafkaBridge` and its :data:`FEATURES`.

aiokafka is imported when a bridge opens, not when this package is imported.
"""

from ._bridge import FEATURES as FEATURES
from ._bridge import KafkaBridge as KafkaBridge

__all__ = ["FEATURES", "KafkaBridge"]
