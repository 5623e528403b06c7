"""The trio side of Kinesis checkpoints: done callbacks in, saved positions out.

One :class:`Checkpointer` per bridge, living as long as the bridge (not one ingress
run: records delivered by a run that failed are still handled by the bus, and their
completions still count). It

- numbers the records the ingress delivers per shard (:class:`SequenceTracker`) and
  hears when each is done (``done``, the ``on_done`` callback of ``port.deliver``);
- saves, at most every *interval* seconds while records complete and once more when
  the bridge closes, each shard's sequence number below which everything is done, in
  the :class:`CheckpointStore` (a worker thread: SQLite may wait on the disk);
- never saves a position lower than one already saved for that shard (a restarted run
  delivers the same records again, under new numbers), nor anything after
  :data:`SHARD_END`;
- lets a shard reader wait until every record of its closed shard is done, then saves
  ``SHARD_END`` (its children may then be read).
"""

from __future__ import annotations

import math

import trio

from bus.abc import Delivery

from ._checkpoints import SHARD_END, CheckpointStore, SequenceTracker

__all__ = ["Checkpointer", "Key"]

Key = tuple[str, str]
"""(stream, shard id)."""


class Checkpointer:
    def __init__(self, store: CheckpointStore, group: str, interval: float) -> None:
        self.store = store
        self.group = group
        self.interval = interval
        self.tracker: SequenceTracker[Key] = SequenceTracker()
        self._saved: dict[Key, int | float] = {}
        self._idle: dict[Key, trio.Event] = {}
        self._wanted = trio.Event()
        self._lock = trio.Lock()

    async def load(self, stream: str) -> dict[str, str]:
        """``{shard: checkpoint}`` saved for this group on *stream*."""
        return await trio.to_thread.run_sync(self.store.load, self.group, stream)

    def resumed(self, key: Key, checkpoint: str | None) -> None:
        """A reader starts *key* after *checkpoint* (what the store holds)."""
        if checkpoint is not None and checkpoint != SHARD_END and key not in self._saved:
            self._saved[key] = int(checkpoint)

    def delivered(self, key: Key, sequence: str) -> int:
        """Record *sequence* of *key* as handed to the bus; returns its index."""
        return self.tracker.started(key, sequence)

    def abandon(self, key: Key, index: int) -> None:
        """The record at *index* was not delivered after all (see the tracker)."""
        self.tracker.abandon(key, index)

    def done(self, key: Key, index: int, delivery: Delivery) -> None:
        """The ``on_done`` callback of a delivered record (in trio's thread)."""
        tracker = self.tracker
        tracker.done(key, index)
        self._wanted.set()
        idle = self._idle.get(key)
        if idle is not None and not tracker.in_flight(key):
            idle.set()

    async def shard_ended(self, key: Key) -> None:
        """Wait until every record of the closed shard *key* is done, then save
        ``SHARD_END`` for it."""
        if self.tracker.in_flight(key):
            idle = self._idle[key] = trio.Event()
            try:
                await idle.wait()
            finally:
                del self._idle[key]
        async with self._lock:
            self.tracker.forget(key)
            self._saved[key] = math.inf
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.store.save, self.group, {key: SHARD_END})

    async def run(self) -> None:
        """Save what moved, at most every *interval* seconds, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            await self.flush()
            await trio.sleep(self.interval)

    async def flush(self) -> dict[Key, str]:
        """Save the positions that moved; returns what was saved."""
        async with self._lock:
            rows: dict[Key, str] = {}
            for key, seq in self.tracker.to_checkpoint().items():
                if int(seq) > self._saved.get(key, -1):
                    rows[key] = seq
            if rows:
                # shielded: taken from the tracker, they would not be offered again
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.store.save, self.group, rows)
                for key, seq in rows.items():
                    self._saved[key] = max(int(seq), self._saved.get(key, -1))
            return rows

    async def close(self) -> None:
        """Flush, then close the store."""
        try:
            await self.flush()
        finally:
            await trio.to_thread.run_sync(self.store.close)
