"""The Google Cloud Pub/Sub bridge (google-cloud-pubsub): bus topics as Pub/Sub topics.

``PubSubBridge(project=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``. google-cloud-pubsub is imported when a
bridge is made, not when this package is imported. The mapping is described in
``_bridge``.
"""

from ._adapter import PubSubAdapter as PubSubAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import PubSubBridge as PubSubBridge
from ._plugin import PLUGIN as PLUGIN

__all__ = ["FEATURES", "PLUGIN", "PubSubAdapter", "PubSubBridge"]
