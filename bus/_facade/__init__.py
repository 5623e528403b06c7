"""The seed facade: the multi-backend event API of the original README, on trio.

``EventMessage``, ``EventAdapter``, ``EventFactory``, ``BaseEvent[Model]``, the
``settings`` object and the ``memory`` backend (``InMemoryAdapter`` over
``MemoryBroker``). Re-exports only; see ``docs/facade.md``.
"""

from ._adapter import EventAdapter as EventAdapter
from ._adapter import MessageCallback as MessageCallback
from ._event import BaseEvent as BaseEvent
from ._event import ModelCallback as ModelCallback
from ._factory import EventFactory as EventFactory
from ._factory import LazyAdapter as LazyAdapter
from ._memory_adapter import InMemoryAdapter as InMemoryAdapter
from ._memory_broker import MemoryBroker as MemoryBroker
from ._memory_reader import MemoryReader as MemoryReader
from ._message import EventMessage as EventMessage
from ._settings import Settings as Settings
from ._settings import settings as settings
from ._stream import EventStream as EventStream
from ._wrapper import AdapterWrapper as AdapterWrapper

__all__ = [
    "AdapterWrapper",
    "BaseEvent",
    "EventAdapter",
    "EventFactory",
    "EventMessage",
    "EventStream",
    "InMemoryAdapter",
    "LazyAdapter",
    "MemoryBroker",
    "MemoryReader",
    "MessageCallback",
    "ModelCallback",
    "Settings",
    "settings",
]
