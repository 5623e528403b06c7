"""Kinesis checkpoints: which record of each shard is the last one done, kept on disk.

Kinesis keeps no consumer positions (without the KCL's DynamoDB leases): a reader says
where to start with each ``GetShardIterator``. So the bridge keeps them itself, in a
:class:`CheckpointStore`, keyed by *group* (the consumer's name) + stream + shard:

- :class:`SQLiteCheckpointStore` (the default): one SQLite file, WAL mode, one
  transaction per flush; several processes may share the file (each group's rows are
  its own);
- :class:`MemoryCheckpointStore`: a dict, for tests and throw-away consumers;
- anything else with the three methods of the :class:`CheckpointStore` protocol
  (a DynamoDB table, Redis...). They are synchronous and called in a worker thread.

A checkpoint is a sequence number (the reader resumes ``AFTER_SEQUENCE_NUMBER``),
:data:`SHARD_END` for a closed shard read to its end with everything done (its children
may then be read), or a group's *start* (:func:`start_checkpoint`: the oldest record kept,
or the records that arrived from a moment on), saved before the group read anything so
that each of its consumers starts there rather than at its own initial position.

:class:`SequenceTracker` decides what may be checkpointed: records finish out of order,
and a sequence number may be saved only when every record of its shard up to it is done.
Sequence numbers are not contiguous, so each delivered record gets a local index and
:class:`bus.abc.OffsetTracker` does the ordering on those. No trio, no AWS client here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

from bus.abc import OffsetTracker

from ._leases import Lease, claim

__all__ = [
    "SHARD_END",
    "CheckpointStore",
    "LeaseStore",
    "MemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "SequenceTracker",
    "default_path",
    "start_checkpoint",
    "start_of",
]

SHARD_END = "SHARD_END"
"""The checkpoint of a closed shard whose every record is done."""

START = "START:"
"""The prefix of a start checkpoint (never a sequence number, which is all digits)."""

K = TypeVar("K", bound=Hashable)


def start_checkpoint(from_beginning: bool, now: float) -> str:
    """The checkpoint of a group that starts at the oldest record kept
    (*from_beginning*) or at the records arriving from *now* (a Unix time) on."""
    return f"{START}TRIM_HORIZON" if from_beginning else f"{START}{now!r}"


def start_of(checkpoint: str | None) -> tuple[str, float | None] | None:
    """``(initial position, since)`` for a reader of a start checkpoint (``since``: the
    Unix time of ``LATEST``), else None (a sequence number, :data:`SHARD_END`, none)."""
    if checkpoint is None or not checkpoint.startswith(START):
        return None
    where = checkpoint[len(START):]
    return ("TRIM_HORIZON", None) if where == "TRIM_HORIZON" else ("LATEST", float(where))


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a Kinesis bridge keeps its positions. Methods run in a worker thread."""

    def load(self, group: str, stream: str) -> dict[str, str]:
        """``{shard id: sequence number or SHARD_END}`` saved for *group* on *stream*."""
        ...

    def save(self, group: str, checkpoints: Mapping[tuple[str, str], str]) -> None:
        """Save ``{(stream, shard id): checkpoint}`` for *group*, all or nothing."""
        ...

    def close(self) -> None:
        """Release the store's resources; the bridge calls it once when it closes."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """A checkpoint store that can also share shards between the members of a group
    (:mod:`._leases`). Methods run in a worker thread; each is one transaction."""

    def claim(
        self, group: str, stream: str, owner: str, shards: Sequence[str], ttl: float
    ) -> tuple[list[str], int]:
        """Heartbeat *owner*, renew and take leases among *shards*; returns the shards
        it holds and its fair share."""
        ...

    def release(self, group: str, stream: str, owner: str, shards: Sequence[str] | None) -> None:
        """Give up *owner*'s leases on *shards* (None: all of them, and its membership)."""
        ...


def default_path() -> Path:
    """``$XDG_STATE_HOME/trio-bus/kinesis-checkpoints.sqlite`` (``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "trio-bus" / "kinesis-checkpoints.sqlite"


class MemoryCheckpointStore:
    """Checkpoints in a dict: gone with the process (or shared by bridges of one)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], str] = {}
        self.members: dict[tuple[str, str], dict[str, float]] = {}
        self.leases: dict[tuple[str, str], dict[str, Lease]] = {}
        self._lock = threading.Lock()

    def claim(
        self, group: str, stream: str, owner: str, shards: Sequence[str], ttl: float
    ) -> tuple[list[str], int]:
        with self._lock:
            leases = self.leases.setdefault((group, stream), {})
            out = claim(self.members.get((group, stream), {}), leases, owner, shards, ttl,
                        time.time())
            self.members[(group, stream)] = out.members
            leases.update(out.leases)
            return out.held, out.limit

    def release(self, group: str, stream: str, owner: str, shards: Sequence[str] | None) -> None:
        with self._lock:
            leases = self.leases.get((group, stream), {})
            for shard in list(leases if shards is None else shards):
                lease = leases.get(shard)
                if lease is not None and lease.owner == owner:
                    del leases[shard]
            if shards is None:
                self.members.get((group, stream), {}).pop(owner, None)

    def load(self, group: str, stream: str) -> dict[str, str]:
        with self._lock:
            return {s: v for (g, st, s), v in self.rows.items() if g == group and st == stream}

    def save(self, group: str, checkpoints: Mapping[tuple[str, str], str]) -> None:
        with self._lock:
            for (stream, shard), value in checkpoints.items():
                self.rows[(group, stream, shard)] = value

    def close(self) -> None:
        pass


class SQLiteCheckpointStore:
    """Checkpoints in one SQLite file (made with its folder on first use)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Used from trio's worker threads, one call at a time (the lock).
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints (grp TEXT NOT NULL, stream TEXT "
                "NOT NULL, shard TEXT NOT NULL, checkpoint TEXT NOT NULL, updated REAL NOT "
                "NULL, PRIMARY KEY (grp, stream, shard))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS members (grp TEXT NOT NULL, stream TEXT NOT "
                "NULL, owner TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (grp, stream, "
                "owner))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS leases (grp TEXT NOT NULL, stream TEXT NOT NULL, "
                "shard TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY "
                "(grp, stream, shard))"
            )
            db.commit()
            self._db = db
        return self._db

    def load(self, group: str, stream: str) -> dict[str, str]:
        with self._lock:
            rows = self._open().execute(
                "SELECT shard, checkpoint FROM checkpoints WHERE grp = ? AND stream = ?",
                (group, stream),
            )
            return {shard: value for shard, value in rows}

    def save(self, group: str, checkpoints: Mapping[tuple[str, str], str]) -> None:
        now = time.time()
        rows = [(group, st, sh, value, now) for (st, sh), value in checkpoints.items()]
        with self._lock:
            db = self._open()
            with db:  # one transaction
                db.executemany(
                    "INSERT INTO checkpoints (grp, stream, shard, checkpoint, updated) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, stream, shard) DO UPDATE SET "
                    "checkpoint = excluded.checkpoint, updated = excluded.updated",
                    rows,
                )

    def claim(
        self, group: str, stream: str, owner: str, shards: Sequence[str], ttl: float
    ) -> tuple[list[str], int]:
        with self._lock:
            db = self._open()
            # BEGIN IMMEDIATE: take the write lock first, so two processes claiming at
            # once run one after the other on what the other wrote
            db.execute("BEGIN IMMEDIATE")
            try:
                key = (group, stream)
                members = dict(db.execute(
                    "SELECT owner, expires FROM members WHERE grp = ? AND stream = ?", key
                ).fetchall())
                leases = {
                    shard: Lease(o, exp) for shard, o, exp in db.execute(
                        "SELECT shard, owner, expires FROM leases WHERE grp = ? AND stream = ?",
                        key,
                    )
                }
                out = claim(members, leases, owner, shards, ttl, time.time())
                db.execute("DELETE FROM members WHERE grp = ? AND stream = ?", key)
                db.executemany(
                    "INSERT INTO members (grp, stream, owner, expires) VALUES (?, ?, ?, ?)",
                    [(group, stream, m, exp) for m, exp in out.members.items()],
                )
                db.executemany(
                    "INSERT INTO leases (grp, stream, shard, owner, expires) VALUES "
                    "(?, ?, ?, ?, ?) ON CONFLICT (grp, stream, shard) DO UPDATE SET "
                    "owner = excluded.owner, expires = excluded.expires",
                    [(group, stream, sh, ls.owner, ls.expires) for sh, ls in out.leases.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return out.held, out.limit

    def release(self, group: str, stream: str, owner: str, shards: Sequence[str] | None) -> None:
        with self._lock:
            db = self._open()
            with db:
                if shards is None:
                    db.execute(
                        "DELETE FROM leases WHERE grp = ? AND stream = ? AND owner = ?",
                        (group, stream, owner),
                    )
                    db.execute(
                        "DELETE FROM members WHERE grp = ? AND stream = ? AND owner = ?",
                        (group, stream, owner),
                    )
                else:
                    db.executemany(
                        "DELETE FROM leases WHERE grp = ? AND stream = ? AND shard = ? AND "
                        "owner = ?",
                        [(group, stream, shard, owner) for shard in shards],
                    )

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.path)!r})"


class SequenceTracker(Generic[K]):
    """Delivered and done records per shard; which sequence number may be saved."""

    def __init__(self) -> None:
        self._offsets: OffsetTracker[K] = OffsetTracker()
        self._next: dict[K, int] = {}
        self._seqs: dict[K, dict[int, str | None]] = {}
        self._last: dict[K, str | None] = {}

    def started(self, shard: K, sequence: str) -> int:
        """*sequence* of *shard* was delivered; returns the index to pass to :meth:`done`."""
        index = self._next.get(shard, 0)
        self._next[shard] = index + 1
        self._offsets.started(shard, index)
        self._seqs.setdefault(shard, {})[index] = sequence
        return index

    def done(self, shard: K, index: int) -> None:
        self._offsets.done(shard, index)

    def abandon(self, shard: K, index: int) -> None:
        """The record at *index* (the shard's latest) was not delivered after all: it
        counts as done, with the checkpoint of the record before it, so nothing is ever
        saved past it (it is read again from the last checkpoint)."""
        seqs = self._seqs.setdefault(shard, {})
        seqs[index] = seqs.get(index - 1, self._last.get(shard))
        self._offsets.done(shard, index)

    def in_flight(self, shard: K | None = None) -> int:
        """Delivered records not done yet (of one shard, or of all)."""
        return self._offsets.in_flight(shard)

    def to_checkpoint(self) -> dict[K, str]:
        """The sequence numbers that moved since the last call: every record of the
        shard up to that one is done."""
        out: dict[K, str] = {}
        for shard, offset in self._offsets.to_commit().items():
            seqs = self._seqs[shard]
            seq = seqs[offset - 1]
            for index in [i for i in seqs if i < offset - 1]:
                del seqs[index]  # the latest stays: abandon() may need it
            self._last[shard] = seq
            if seq is not None:
                out[shard] = seq
        return out

    def forget(self, shard: K) -> None:
        self._offsets.forget(shard)
        self._seqs.pop(shard, None)
        self._next.pop(shard, None)
        self._last.pop(shard, None)
