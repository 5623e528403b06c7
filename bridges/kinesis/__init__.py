"""The Kinesis bridge (aioboto3): each bus topic a Kinesis data stream.

``KinesisBridge(region=..., endpoint_url=..., group=...)`` attached with
``bus.attach(bridge, export=[...], import_=[...])``. aioboto3 is imported when a bridge
connects, not when this package is imported. The mapping is described in ``_bridge``;
checkpoint stores (where each shard's position is kept, and the shard leases that make
consumer groups) in ``_checkpoints`` and ``_leases``.
"""

from ._adapter import KinesisAdapter as KinesisAdapter
from ._bridge import FEATURES as FEATURES
from ._bridge import KinesisBridge as KinesisBridge
from ._checkpoints import CheckpointStore as CheckpointStore
from ._checkpoints import LeaseStore as LeaseStore
from ._checkpoints import MemoryCheckpointStore as MemoryCheckpointStore
from ._checkpoints import SQLiteCheckpointStore as SQLiteCheckpointStore
from ._plugin import PLUGIN as PLUGIN

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
