"""Where a keyed message goes: :func:`key_slot`, and :class:`Group` (competing consumers).

A key is hashed with CRC-32, so a key lands on the same lane (or group member) in every
process. A :class:`Group` spreads messages over its member subscriptions: one delivery
per group, every group gets all.
"""

from __future__ import annotations

import zlib
from typing import Any, Generic, Protocol, TypeVar

from ._envelope import Envelope
from ._mailbox import Lane

__all__ = ["Group", "Member", "key_slot"]

_crc32 = zlib.crc32


class Member(Protocol):
    """What a group needs of a member (a :class:`~bus.Subscription`)."""

    @property
    def careful(self) -> bool: ...

    def select(self, env: Envelope[Any], spread: int = 1) -> Lane | None: ...


M = TypeVar("M", bound=Member)


def key_slot(key: str, n: int, spread: int = 1) -> int:
    """The slot (lane or group member) of *key* among *n*: stable across processes.

    A group picks a member with ``spread=1`` and the member then picks its lane with
    ``spread=<members>``: the lane comes from the hash's higher digits (``h // members``),
    so the keys of one member still spread over all its lanes (``h % members`` and
    ``h % lanes`` alone would be correlated: 2 members of 2 lanes would use 1 lane each).
    """
    return (_crc32(key.encode()) // spread) % n


class Group(Generic[M]):
    """Competing consumers: each message goes to one member; each group gets every message.

    A keyed message always goes to the same member (while membership is unchanged), so
    per-key order holds across the group too. A member with ``concurrency=N`` has N lanes
    and picks one by the key's hash as well (:func:`key_slot`), so a key stays on one
    lane of one member and keeps its order; keyless messages go round-robin to a member
    and round-robin among its lanes.
    """

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.pattern = pattern
        self.members: list[M] = []
        self._next = 0

    def select(self, env: Envelope[Any]) -> Lane | None:
        members = self.members
        if not members:
            return None
        if env.key is not None:
            member = members[key_slot(env.key, len(members))]
            return member.select(env, len(members))
        self._next = (self._next + 1) % len(members)
        return members[self._next].select(env)

    def route_offer(self, env: Envelope[Any]) -> Lane | None:
        lane = self.select(env)
        return None if lane is None else lane.offer(env)

    @property
    def careful(self) -> bool:
        return any(member.careful for member in self.members)
