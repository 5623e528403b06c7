"""Which offsets of a partitioned log may be committed, given out-of-order completions.

A consumer that hands records to several workers learns that they are done in any order;
it may commit an offset only when every record below it is done, or a crash would skip
the ones still in work. :class:`OffsetTracker` keeps, per partition, the records handed
out and not yet done, and answers "the next offset to commit" (Kafka's convention: the
offset of the first record *not* done). Sans-IO: no clock, no client, no trio.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["OffsetTracker"]

P = TypeVar("P", bound=Hashable)


class _Partition:
    __slots__ = ("committed", "next", "outstanding")

    def __init__(self, start: int) -> None:
        self.next = start  # the offset after the last one handed out
        self.committed = start  # what was last reported as committable
        self.outstanding: set[int] = set()  # handed out, not done


class OffsetTracker(Generic[P]):
    """Tracks handed-out and done offsets per partition (any hashable key)."""

    def __init__(self) -> None:
        self._parts: dict[P, _Partition] = {}

    def started(self, partition: P, offset: int) -> None:
        """Record *offset* of *partition* as handed out (offsets rise within a partition;
        gaps, e.g. compacted or transaction markers, are allowed)."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(offset)
        part.outstanding.add(offset)
        part.next = max(part.next, offset + 1)

    def done(self, partition: P, offset: int) -> None:
        """Record *offset* as done. Unknown partitions (revoked meanwhile) are ignored."""
        part = self._parts.get(partition)
        if part is not None and offset in part.outstanding:
            part.outstanding.discard(offset)

    def committable(self, partition: P) -> int | None:
        """The offset to commit for *partition* (first not done), or None if unknown."""
        part = self._parts.get(partition)
        if part is None:
            return None
        return min(part.outstanding) if part.outstanding else part.next

    def to_commit(self) -> dict[P, int]:
        """Offsets that moved since the last call, per partition: commit these."""
        moved: dict[P, int] = {}
        for key, part in self._parts.items():
            offset = min(part.outstanding) if part.outstanding else part.next
            if offset > part.committed:
                part.committed = offset
                moved[key] = offset
        return moved

    def in_flight(self, partition: P | None = None) -> int:
        """Records handed out and not done (in one partition, or in all)."""
        if partition is not None:
            part = self._parts.get(partition)
            return 0 if part is None else len(part.outstanding)
        return sum(len(p.outstanding) for p in self._parts.values())

    def forget(self, partition: P) -> None:
        """Drop *partition* (revoked): late completions for it are then ignored."""
        self._parts.pop(partition, None)

    def partitions(self) -> list[P]:
        return list(self._parts)
