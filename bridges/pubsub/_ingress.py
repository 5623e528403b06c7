"""Which received Pub/Sub messages to acknowledge, extend or count (sans-IO).

A pulled message is *leased*: the service redelivers it unless it is acknowledged or its
ack deadline is extended in time. :class:`Leases` remembers, per subscription, the ack
ids received and not acknowledged yet, split into those the bus has not finished
(extend their deadline while they are in work, up to a maximum lease) and those it has
(acknowledge them at the next flush). Its :attr:`outstanding` count is what bounds
ingress: the bridge pulls only while it is under ``max_outstanding``.

This module knows nothing of trio or the client library.
"""

from __future__ import annotations

__all__ = ["Leases"]


class Leases:
    """Ack ids received and not acknowledged, per subscription id."""

    __slots__ = ("_done", "_done_count", "_undone")

    def __init__(self) -> None:
        self._undone: dict[str, dict[str, float]] = {}
        """subscription -> ack id -> when it was received (trio clock)."""
        self._done: dict[str, list[str]] = {}
        self._done_count = 0

    @property
    def outstanding(self) -> int:
        """Messages received and not acknowledged (in work, or done and not flushed)."""
        return sum(map(len, self._undone.values())) + self._done_count

    @property
    def pending(self) -> bool:
        """Some done messages wait for :meth:`take_done`."""
        return self._done_count > 0

    def received(self, sid: str, ack_id: str, now: float) -> None:
        self._undone.setdefault(sid, {})[ack_id] = now

    def done(self, sid: str, ack_id: str) -> None:
        """The bus finished it: acknowledge it at the next flush."""
        undone = self._undone.get(sid)
        if undone is None or undone.pop(ack_id, None) is None:
            return  # given up (lease too long, or forgotten): the service redelivers it
        self._done.setdefault(sid, []).append(ack_id)
        self._done_count += 1

    def forget(self, sid: str, ack_ids: list[str]) -> None:
        """Stop tracking *ack_ids* (handed back to the service undone)."""
        undone = self._undone.get(sid)
        if undone is not None:
            for ack_id in ack_ids:
                undone.pop(ack_id, None)

    def take_done(self) -> dict[str, list[str]]:
        """The done ack ids to acknowledge now, per subscription."""
        done, self._done, self._done_count = self._done, {}, 0
        return done

    def to_extend(self, now: float, max_lease: float) -> dict[str, list[str]]:
        """Ack ids in work to extend now; those held longer than *max_lease* are given up
        (no longer extended: the service redelivers them after their deadline)."""
        out: dict[str, list[str]] = {}
        for sid, undone in self._undone.items():
            expired = [a for a, t in undone.items() if now - t > max_lease]
            for ack_id in expired:
                del undone[ack_id]
            if undone:
                out[sid] = list(undone)
        return out
