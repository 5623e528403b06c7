"""trio-bus bridges: one module per broker, each a :class:`bus.abc.Bridge`, and
``bridges.redis``, the seed facade's Redis Streams adapter (an ``EventAdapter``).

Importing this package loads no broker SDK; each broker module imports its client
library when a bridge is opened. What is shared by the broker modules lives here too:
the runtime that runs an asyncio client inside trio (:func:`open_runtime`), and broker
URLs (:func:`from_url`: ``kafka://host:port`` and the others, see ``bridges._urls``).
"""

from ._runtime import KINDS as KINDS
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeKind as RuntimeKind
from ._runtime import open_runtime as open_runtime
from ._runtime import start_runtime as start_runtime
from ._urls import create_kept_topic as create_kept_topic
from ._urls import delete_kept_topic as delete_kept_topic
from ._urls import from_url as from_url

__all__ = [
    "KINDS",
    "Runtime",
    "RuntimeKind",
    "create_kept_topic",
    "delete_kept_topic",
    "from_url",
    "open_runtime",
    "start_runtime",
]
