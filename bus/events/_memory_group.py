"""One position per consumer group on the memory backend, for pulls and callbacks alike.

On a broker, a group's committed position is one thing: a ``pull`` left by ``break``
leaves the message in hand unacknowledged, and the next ``pull(callback=...)`` of that
group starts with it. On the memory backend a ``pull`` of a group reads the topic's log
(``bus.read(topic, group=...)``) while a callback is a bus actor; this module makes the
callback side use the same position:

- :func:`catch_up` hands a new callback what the group's log position has not
  committed (a message given back by ``break`` included) before the live subscription
  starts, with no message between the two (the last read and ``bus.subscribe`` run with
  no checkpoint in between, and a publish retains and routes in one step);
- :class:`Tracker` moves the group's log position past each message the live callback
  handled (or dead-lettered), so a later ``pull`` of the group does not read it again.

What it does not do: messages of one group taken at the same time by a ``pull`` and a
live callback are counted by position, not by identity (each handled message moves the
position by one), so run them one after the other, as the seed does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bus import Bus, Envelope, LogReader
from bus.abc import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_SUBSCRIBER,
    H_ORIGINAL_TOPIC,
    get_logger,
)

__all__ = ["Tracker", "catch_up"]

_log = get_logger("bus.events")


async def catch_up(
    bus: Bus, topic: str, group: str, *, from_beginning: bool,
    handle: Callable[[Envelope[Any]], Awaitable[None]], subscriber: str,
) -> None:
    """Hand *handle* each message *group* has not committed on *topic*, committing each
    once handled; a message whose *handle* raised goes to the bus's dead-letter topic
    with the reason (one attempt, as the callback default) and counts as handled.

    Returns at the end of the log with no checkpoint after the last read, so the caller
    can subscribe before any new message arrives. If *handle* is cancelled, the message
    in hand goes back to the group."""
    reader = bus.read(topic, group=group, from_beginning=from_beginning)
    try:
        async for env in reader:
            try:
                await handle(env)
            except Exception as exc:
                await _dead_letter(bus, env, exc, subscriber)
    finally:
        reader.close()  # gives back a message in hand if handle was cancelled


class Tracker:
    """Moves *group*'s log position on *topic* by one per message a live callback
    handled (see the module docstring)."""

    def __init__(self, bus: Bus, topic: str, group: str) -> None:
        self._bus = bus
        self._topic = topic
        self._group = group
        self._reader: LogReader | None = None

    async def handled(self) -> None:
        if self._bus.closed or self._bus.declared(self._topic) is None:
            return
        if self._reader is None:
            self._reader = self._bus.read(self._topic, group=self._group)
        try:
            await self._reader.__anext__()
        except StopAsyncIteration:  # nothing left to count (the topic was deleted)
            self._reader = None
            return
        self._reader.commit()


async def _dead_letter(bus: Bus, env: Envelope[Any], error: Exception, subscriber: str) -> None:
    _log.warning("events.callback_failed", topic=env.topic, subscriber=subscriber,
                 error=repr(error))
    headers = {
        **env.headers,
        H_ERROR: str(error)[:1000],
        H_ERROR_TYPE: f"{type(error).__module__}.{type(error).__qualname__}",
        H_ORIGINAL_TOPIC: env.topic,
        H_FAILED_SUBSCRIBER: subscriber,
        H_ATTEMPTS: "1",
    }
    await bus.route(msgspec.structs.replace(
        env, id=bus.new_id(), topic=bus.dead_letter_topic, headers=headers, delivery=None
    ))
