"""The :class:`Recorder`: an ordinary subscriber that keeps what it sees, for asserts."""

from __future__ import annotations

from typing import Any

import trio

from .._bus import Bus
from .._envelope import Envelope
from .._routing import Pattern

__all__ = ["Recorder"]


class Recorder:
    """Captures every envelope whose topic matches *pattern* (default: all topics).

    Made with ``Recorder.attach(bus)`` inside an open bus, or by the ``recorder`` fixture.
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope[Any]] = []
        self._changed = trio.lowlevel.ParkingLot()

    @classmethod
    def attach(cls, bus: Bus, pattern: str = "#", *, name: str | None = None) -> Recorder:
        """Subscribe a new recorder; its subscriber is named *name*, or ``recorder``
        (``recorder#2``... when a bus has several)."""
        rec = cls()
        if name is None:
            taken = {sub.name for sub in bus.subscriptions()}
            name, n = "recorder", 2
            while name in taken:
                name, n = f"recorder#{n}", n + 1
        bus.subscribe(pattern, rec._record, name=name, capacity=1_000_000)
        return rec

    def _record(self, env: Envelope[Any]) -> None:
        self.envelopes.append(env)
        self._changed.unpark_all()

    def messages(self, pattern: str = "#") -> list[Envelope[Any]]:
        """Recorded envelopes whose topic matches *pattern*, oldest first."""
        match = Pattern(pattern).matches
        return [env for env in self.envelopes if match(env.topic)]

    def payloads(self, pattern: str = "#") -> list[Any]:
        """The payloads of :meth:`messages`."""
        return [env.payload for env in self.messages(pattern)]

    async def wait_for(self, pattern: str = "#", count: int = 1) -> list[Envelope[Any]]:
        """Wait until *count* messages matching *pattern* were recorded; returns them.

        Bound it with ``trio.fail_after`` (instant under ``autojump_clock``).
        """
        while len(found := self.messages(pattern)) < count:
            await self._changed.park()
        return found

    def assert_published(
        self, topic: str, payload: Any = ..., *, key: Any = ..., count: int | None = None
    ) -> list[Envelope[Any]]:
        """Assert messages on *topic* (a name or pattern) with this payload/key were seen.

        With *count*, exactly that many must match. Returns the matching envelopes.
        """
        found = [
            env
            for env in self.messages(topic)
            if (payload is ... or env.payload == payload) and (key is ... or env.key == key)
        ]
        if (count is None and not found) or (count is not None and len(found) != count):
            seen = [(e.topic, e.key, e.payload) for e in self.envelopes]
            wanted = "at least one" if count is None else f"exactly {count}"
            raise AssertionError(
                f"expected {wanted} message(s) on {topic!r} with payload={payload!r} "
                f"key={key!r}, found {len(found)}; recorded (topic, key, payload): {seen}"
            )
        return found

    def clear(self) -> None:
        self.envelopes.clear()
