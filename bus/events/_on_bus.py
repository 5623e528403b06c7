"""How facade messages travel on a bus: EventMessage ↔ Envelope, publish and wait, readers.

Every built-in backend of the facade runs on a :class:`~bus.Bus`: ``memory`` on a shared
(or your own) bus, the brokers on a private bus with their bridge attached. This module
holds what they share:

- an :class:`EventMessage` becomes an envelope whose payload is the message's ``data``
  (a private copy, JSON-checked), with its key and headers; its timestamp is the
  envelope's ``time``;
- :func:`publish_and_wait` publishes with done-tracking (``publish(..., confirm=True)``)
  and returns once the message is done: every local callback subscription handled it
  and every bridge exporting it got its broker's confirmation. A push made from inside a
  callback does not wait for a callback that is busy further up the same chain (it would
  wait for itself): it returns once the message is queued;
- :class:`MessageReader`, the iterator ``consume`` returns, over ``bus.read``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, Self

import msgspec
import trio

from bus import Bus, ConfigurationError, Envelope, LogReader, Retention, Subscription
from bus.abc import H_ORIGIN, ClosesOnExit, Delivery

from ._message import EventMessage, encode_message

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "MessageReader",
    "declare",
    "handling",
    "publish_and_wait",
    "to_message",
]

DEFAULT_MAX_LENGTH = 1_000_000
"""Messages a facade topic keeps unless ``create_topic(name, max_length=N)`` says less."""

_decode = msgspec.json.Decoder(dict[str, Any]).decode

_chain: contextvars.ContextVar[frozenset[Subscription]] = contextvars.ContextVar(
    "bus_events_chain", default=frozenset()
)
"""The callback subscriptions busy up the call chain of the running callback."""
_chains: dict[int, frozenset[Subscription]] = {}
"""id(Delivery) of a message being waited for → the chain that waits for it."""


def declare(bus: Bus, topic: str, max_length: int | None = None) -> None:
    """Declare facade *topic* on *bus* (JSON objects, retained) if it is not yet."""
    declared = bus.declared(topic)
    if declared is not None and declared.retention is not None:
        return
    retain = Retention(max_count=max_length or DEFAULT_MAX_LENGTH)
    try:
        bus.topic(topic, declared.type if declared is not None else dict, retain=retain)
    except ConfigurationError as exc:
        raise ConfigurationError(f"facade topic {topic!r}: {exc}") from None


def to_envelope(bus: Bus, message: EventMessage, *, track: bool) -> Envelope[Any]:
    """The envelope for *message*: checked, with a private copy of its data."""
    encode_message(message)  # raises PayloadTypeError naming what is wrong
    data = _decode(msgspec.json.encode(message.data))
    return Envelope(
        id=bus.new_id(),
        topic=message.topic,
        payload=data,
        key=message.key,
        # x-bus-origin is the ports' to set (bus.publish drops it too): a message published
        # here is new, and every bridge exporting its topic must get it
        headers={k: v for k, v in message.headers.items() if k != H_ORIGIN},
        time=message.timestamp / 1000,
        source=bus.name,
        delivery=Delivery() if track else None,
    )


def to_message(env: Envelope[Any]) -> EventMessage:
    """The EventMessage of an envelope (the bridge's origin header left out)."""
    payload = env.payload
    data = payload if isinstance(payload, dict) else msgspec.to_builtins(payload)
    if not isinstance(data, dict):
        data = {"payload": data}
    headers = env.headers
    if H_ORIGIN in headers:
        headers = {k: v for k, v in headers.items() if k != H_ORIGIN}
    return EventMessage(
        topic=env.topic, data=data, key=env.key, headers=dict(headers),
        timestamp=round(env.time * 1000),
    )


def _would_wait_for_itself(bus: Bus, topic: str, chain: frozenset[Subscription]) -> bool:
    return bool(chain) and any(sub in chain for sub in bus.subscriptions(topic))


async def publish_and_wait(bus: Bus, message: EventMessage) -> None:
    """Publish *message* on *bus* and return once it is done (see the module docstring).

    Raises :class:`~bus.NotDeliveredError` if a callback failed on it (it was
    dead-lettered), :class:`~bus.PayloadTypeError` for a malformed message.
    """
    chain = _chain.get()
    wait = not _would_wait_for_itself(bus, message.topic, chain)
    env = to_envelope(bus, message, track=wait)
    if not wait:
        await bus.route(env)
        return
    assert env.delivery is not None
    key = id(env.delivery)
    _chains[key] = chain
    try:
        await bus.route(env, confirm=True)
    finally:
        _chains.pop(key, None)


def handling(env: Envelope[Any], subscription: Subscription | None) -> contextvars.Token[Any]:
    """Enter a callback for *env* in *subscription*: pushes from it know the chain."""
    chain = _chains.get(id(env.delivery), frozenset()) if env.delivery is not None else frozenset()
    if subscription is not None:
        chain = chain | {subscription}
    return _chain.set(chain)


def done_handling(token: contextvars.Token[Any]) -> None:
    _chain.reset(token)


class MessageReader(ClosesOnExit):
    """What ``consume`` returns: EventMessages from a bus log, opened on first use.

    ``open_reader`` is called by the first ``__anext__`` (so connecting, and its errors,
    happen in the iterator, as the adapter contract says). ``commit()`` commits the last
    message now; ``aclose()`` gives an uncommitted one back to its group.
    """

    def __init__(self, open_reader: Callable[[], Any]) -> None:
        self._open_reader = open_reader
        self._reader: LogReader | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EventMessage:
        if self._closed:
            raise StopAsyncIteration
        if self._reader is None:
            self._reader = await self._open_reader()
        assert self._reader is not None
        return to_message(await self._reader.__anext__())

    def commit(self) -> None:
        if self._reader is not None:
            self._reader.commit()

    def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

