"""The seed's multi-backend event API: ``BaseEvent``, ``EventAdapter``, ``EventFactory``...

The API of the original multi-backend README, kept by name and re-expressed for trio
(see ``docs/facade.md``). It runs on the bus: the ``memory`` backend is a
:class:`~bus.Bus` (a shared one per trio run, or yours: ``InMemoryAdapter(bus=bus)``),
and the broker backends are a private bus with the broker's bridge attached.

    from bus.events import BaseEvent, EventMessage, settings

Re-exports only; the code lives in the private modules beside it, which use the core
through ``bus`` and ``bus.abc`` only. A broker's facade backend subclasses
:class:`BridgeAdapter` (one generic adapter over its bridge on a private bus; it was
``bus.abc.BridgeAdapter`` until the facade became this package) and may use
:func:`encode_message`/:func:`decode_message` (the wire form every backend checks).
"""

from ._adapter import EventAdapter as EventAdapter
from ._adapter import MessageCallback as MessageCallback
from ._bridge_adapter import BridgeAdapter as BridgeAdapter
from ._event import DEFAULT_DEAD_LETTER_TOPIC as DEFAULT_DEAD_LETTER_TOPIC
from ._event import BaseEvent as BaseEvent
from ._event import ModelCallback as ModelCallback
from ._factory import EventFactory as EventFactory
from ._memory_adapter import InMemoryAdapter as InMemoryAdapter
from ._memory_adapter import shared_bus as shared_bus
from ._message import EventMessage as EventMessage
from ._message import decode_message as decode_message
from ._message import encode_message as encode_message
from ._on_bus import MessageReader as MessageReader
from ._settings import Settings as Settings
from ._settings import settings as settings
from ._stream import EventStream as EventStream
from ._wrapper import AdapterWrapper as AdapterWrapper

__all__ = [
    "DEFAULT_DEAD_LETTER_TOPIC",
    "AdapterWrapper",
    "BaseEvent",
    "BridgeAdapter",
    "EventAdapter",
    "EventFactory",
    "EventMessage",
    "EventStream",
    "InMemoryAdapter",
    "MessageCallback",
    "MessageReader",
    "ModelCallback",
    "Settings",
    "decode_message",
    "encode_message",
    "settings",
    "shared_bus",
]
