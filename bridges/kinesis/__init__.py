"""The Kinesis bridge (aioboto3): each bus topic a Kinesis data stream.

``KinesisBridge(region=..., endpoint_url=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``; :class:`KinesisAdapter` is the seed
facade's backend; :data:`FEATURES` and :data:`PLUGIN` (its registration). aioboto3 is
imported when a bridge connects, not when this package is imported.

The file set every broker package has (``docs/bridges.md``)::

    _bridge    KinesisBridge: lifecycle, egress, admin (the mapping is described here)
    _client    aioboto3's calls, run on the bridge's asyncio runtime
    _wire      envelope <-> record: encode, decode (CloudEvents structured mode)
    _ingress   discover streams, read every shard, deliver
    _errors    translate(exc, context, secrets): client errors as bus errors
    _adapter   KinesisAdapter, the facade's backend
    _plugin    PLUGIN: kinesis://region URLs, features, what the service and CLI need

Where Kinesis differs, and why: the service keeps no consumer position and has no
consumer groups, so the bridge keeps both itself, as the KCL does. ``_checkpoints``
(where each shard's position is kept: :class:`CheckpointStore`, SQLite by default, and
the shard leases that make consumer groups, :class:`LeaseStore`), ``_checkpointer``
(done callbacks in, positions saved) and ``_leases`` (who reads which shard, sans-IO).
"""

from .._common import quiet
from ._adapter import KinesisAdapter as KinesisAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import KinesisBridge as KinesisBridge
from ._checkpoints import CheckpointStore as CheckpointStore
from ._checkpoints import LeaseStore as LeaseStore
from ._checkpoints import MemoryCheckpointStore as MemoryCheckpointStore
from ._checkpoints import SQLiteCheckpointStore as SQLiteCheckpointStore
from ._plugin import PLUGIN as PLUGIN

# the AWS SDK's loggers: silent unless the application configured logging
quiet("aioboto3", "aiobotocore", "botocore", "boto3")

__all__ = [
    "FEATURES",
    "PLUGIN",
    "CheckpointStore",
    "KinesisAdapter",
    "KinesisBridge",
    "LeaseStore",
    "MemoryCheckpointStore",
    "SQLiteCheckpointStore",
]
