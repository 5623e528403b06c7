"""The Google Cloud Pub/Sub bridge (google-cloud-pubsub): bus topics as Pub/Sub topics.

``PubSubBridge(project=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``; :class:`PubSubAdapter` is the seed
facade's backend; :data:`FEATURES` and :data:`PLUGIN` (its registration).
google-cloud-pubsub is imported when a bridge is made, not when this package is imported.

The file set every broker package has (``docs/bridges.md``)::

    _bridge    PubSubBridge: lifecycle, egress, admin (the mapping is described here)
    _client    the generated synchronous clients' calls, run in worker threads
    _wire      envelope <-> message: encode, decode (CloudEvents ce- attributes)
    _ingress   discover topics, pull each subscription, deliver, ack, extend leases
    _errors    translate(exc, context, secrets): client errors as bus errors
    _adapter   PubSubAdapter, the facade's backend
    _plugin    PLUGIN: pubsub://project URLs, features, what the service and CLI need

Where Pub/Sub differs, and why: its client is threaded, not asyncio (measured faster,
see ``_bridge``), so ``_client`` runs in trio worker threads and there is no asyncio
runtime; ``_names`` maps bus topics to Pub/Sub's resource ids and subscription ids
(Pub/Sub has no wildcard subscriptions: one subscription per topic and group).
"""

from .._common import quiet
from ._adapter import PubSubAdapter as PubSubAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import PubSubBridge as PubSubBridge
from ._plugin import PLUGIN as PLUGIN

# the Pub/Sub client's loggers: silent unless the application configured logging
quiet("google.cloud.pubsub_v1", "google.api_core", "google.auth")

__all__ = ["FEATURES", "PLUGIN", "PubSubAdapter", "PubSubBridge"]
