"""Faults for the loopback broker: a broker that misbehaves on command and by seed.

:class:`Faults` is the configuration (``LoopbackBroker(faults=Faults(seed=7, ...))``);
:class:`FaultyLink` is one :class:`~bus.testing.LoopbackBridge`'s connection to such a
broker: its export and ingest when faults are on. A broker made without ``faults`` never
reaches this module: the plain loopback's paths are unchanged.

Every seeded decision is a pure function of the seed and *what* it is about (a record's
topic, partition and offset and how many times its group got it; the how-many-th write
to a topic) — never of the time or of how tasks were scheduled. So the same seed over the
same records gives the same faults, under ``MockClock`` or the real clock. What a drop or
a rebalance delivers again is what was not committed; the consumer commits as a
poll-process-commit loop does (every :data:`COMMIT_EVERY` records it waits until what it
delivered is done, then commits; and when it is idle), so what was committed at a fault
depends only on the deliveries before it: with the records waiting before consuming
starts, a run repeats exactly. (With ``slow_commit``, whether a commit landed before a
fault depends on trio's clock too.)

Not modelled: partial partitions of the network, a broker losing confirmed records,
clock skew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import trio

from ._bridge import ExportResults, Port
from ._done import Delivery
from ._envelope import Envelope
from ._errors import BackendError, BackendUnavailableError, ConfigurationError, Rejected

if TYPE_CHECKING:  # the loopback imports this module, never the reverse at run time
    from ._loopback import LoopbackBridge

__all__ = ["Faults", "FaultyLink"]

_TP = tuple[str, int]
_TP_POS = tuple[_TP, int]
COMMIT_EVERY = 32
"""Records a faulty consumer delivers between two commits (it waits for them first)."""
_PROBABILITIES = ("duplicate", "redeliver", "drop", "rebalance", "refuse", "reject")


@dataclass(frozen=True, slots=True)
class Faults:
    """What a :class:`~bus.testing.LoopbackBroker` does wrong, and how often.

    Probabilities are per delivered record (per written record for ``refuse`` and
    ``reject``; ``drop`` also per export call). ``Faults()`` injects nothing by itself
    but enables the broker's commands (``drop_connections()``, ``rebalance(group)``,
    ``refuse_next(n)``).
    """

    seed: int = 0
    """The same seed over the same records gives the same faults."""
    duplicate: float = 0.0
    """A delivered record is delivered again at once (a duplicate)."""
    redeliver: float = 0.0
    """After a delivered record, its partition rewinds to it a few records later (1 to
    4): those records, never committed, come again in order (a lost commit)."""
    reorder: bool = False
    """Partitions interleave in a seeded order; a partition (so a key) keeps its order."""
    drop: float = 0.0
    """The connection drops: after a delivered record (ingest fails; the bus restarts it
    and what was not committed comes again), or in an export call (it fails after the
    records before a seeded point of the batch were written: the bus resends the batch)."""
    rebalance: float = 0.0
    """After a delivered record the group rebalances: every partition is taken from its
    member without a last commit and moves to the next member, which gets again what was
    not committed."""
    slow_commit: float = 0.0
    """Seconds (trio's clock) before a commit takes effect. The consumer waits for its
    periodic commits (so it slows down) but not for those it makes when idle; commits
    still in flight are lost with a dropped connection or a rebalance."""
    refuse: float = 0.0
    """A write fails for now (retried by the bus), with the later records of its
    partition in the same batch, so a key's order holds."""
    reject: float = 0.0
    """A write is refused for good: the bus dead-letters the record with the reason."""

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ConfigurationError(
                    f"Faults({name}={value!r}): a probability must be a number from 0 to 1 "
                    f"(e.g. {name}=0.05 for 5% of records)"
                )
        if not isinstance(self.slow_commit, int | float) or self.slow_commit < 0:
            raise ConfigurationError(
                f"Faults(slow_commit={self.slow_commit!r}): give the seconds a commit takes, "
                f"0 or more"
            )
        if not isinstance(self.seed, int):
            raise ConfigurationError(f"Faults(seed={self.seed!r}): the seed must be an int")

    def chance(self, kind: str, *where: object) -> float:
        """A number in [0, 1) fixed by the seed, *kind* and *where*."""
        digest = hashlib.blake2b(repr((self.seed, kind, where)).encode(), digest_size=8)
        return int.from_bytes(digest.digest()) / 2**64

    def hits(self, kind: str, *where: object) -> bool:
        """True if the fault *kind* (a probability field) happens at *where*."""
        p: float = getattr(self, kind)
        return p > 0 and self.chance(kind, *where) < p

    def __repr__(self) -> str:
        set_ = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                if f.name == "seed" or getattr(self, f.name) != f.default]
        return f"Faults({', '.join(set_)})"


class FaultyLink:
    """One bridge's connection to a broker with faults: its export, ingest and commits."""

    def __init__(self, bridge: LoopbackBridge, faults: Faults) -> None:
        self.bridge = bridge
        self.broker = bridge.broker
        self.faults = faults
        self.epoch = self.broker.epoch  # drop_connections() bumps the broker's
        self._pending: list[tuple[float, dict[_TP, int]]] = []  # slow commits in flight
        self._queued: dict[_TP, int] = {}

    # -- export --------------------------------------------------------------------

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        broker, faults = self.broker, self.faults
        broker._check()
        if self.epoch != broker.epoch:  # the connection dropped since the last call
            self.epoch = broker.epoch
            raise BackendUnavailableError("the loopback broker dropped the connection")
        await trio.lowlevel.checkpoint()
        results: list[BaseException | None] = []
        refused: set[int] = set()  # partitions with a refused record earlier in the batch
        cut = -1  # the connection drops before this record of the batch
        if batch:
            where = (batch[0].topic, broker._writes.get(batch[0].topic, 0))
            if faults.hits("drop", "export", *where):
                cut = int(faults.chance("cut", *where) * len(batch))
        for i, env in enumerate(batch):
            n = broker._writes[env.topic] = broker._writes.get(env.topic, 0) + 1
            if i == cut:
                broker.injected["drop"] += 1
                raise BackendUnavailableError(
                    f"the loopback broker dropped the connection (fault injected; "
                    f"{len(results)} of {len(batch)} records written, unconfirmed)"
                )
            slot = broker.partition_of(env.key or env.id)
            if slot in refused:
                results.append(BackendError(
                    "not written: an earlier record of its partition was refused (fault injected)"
                ))
            elif broker._refusals:
                permanent = broker._refusals.pop(0)
                broker.injected["reject" if permanent else "refuse"] += 1
                if permanent:
                    results.append(Rejected("the loopback broker refused the record for good "
                                            "(fault injected by refuse_next)"))
                else:
                    refused.add(slot)
                    results.append(BackendError("the loopback broker refused the record for "
                                                "now (fault injected by refuse_next)"))
            elif faults.hits("reject", env.topic, n):
                broker.injected["reject"] += 1
                results.append(Rejected("the loopback broker refused the record for good "
                                        "(fault injected)"))
            elif faults.hits("refuse", env.topic, n):
                broker.injected["refuse"] += 1
                refused.add(slot)
                results.append(BackendError("the loopback broker refused the record for now "
                                            "(fault injected)"))
            else:
                results.append(self.bridge._write(env, port))
        return results

    # -- ingest --------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        bridge, broker, faults = self.bridge, self.broker, self.faults
        group, tracker = bridge.group, bridge._tracker
        broker._check()
        if not bridge._joined:
            broker.join(group, bridge._member)
            bridge._joined = True
        self.epoch = broker.epoch
        generation = broker.groups[group].generation
        positions: dict[_TP, int] = {}
        rewinds: dict[_TP, tuple[int, int]] = {}  # partition: (rewind to, after offset)
        since_commit = 0
        task_status.started()
        while True:
            broker._check()
            if self.epoch != broker.epoch:
                self._lose_session()
                raise BackendUnavailableError("the loopback broker dropped the connection")
            if broker.groups[group].generation != generation:  # rebalanced: start again
                generation = broker.groups[group].generation
                positions.clear()
                rewinds.clear()
                self._lose_session()
                continue
            if since_commit >= COMMIT_EVERY:
                since_commit = 0
                while tracker.in_flight() and self._same(generation):
                    await broker.changed()  # a record done, or the session ended
                if not self._same(generation):
                    continue
                self.commit(limits={tp: to for tp, (to, _) in rewinds.items()})
                if self._pending:  # a slow commit: this loop waits for it (commitSync)
                    await trio.sleep_until(self._pending[-1][0])
                continue  # a drop or rebalance meanwhile loses it (checked first)
            owned = [tp for tp in broker.assignment(group, bridge._member) if port.wants(tp[0])]
            for tp in set(positions) - set(owned):  # a member joined or left
                bridge._commit_one(tp)
                del positions[tp]
                rewinds.pop(tp, None)
                tracker.forget(tp)
            self._apply_due()
            tp_pos = self._next(owned, positions)
            if tp_pos is None:
                if rewinds:
                    for tp, (to, _) in rewinds.items():
                        positions[tp] = to
                    rewinds.clear()
                    continue
                self.commit()
                since_commit = 0
                wait = 0.05
                if self._pending:
                    wait = max(0.0, min(wait, self._pending[0][0] - trio.current_time()))
                with trio.move_on_after(wait):
                    await broker.changed()
                continue
            tp, pos = tp_pos
            since_commit += 1
            k = await self._deliver(port, tp, pos)
            positions[tp] = pos + 1
            where = (tp[0], tp[1], pos, k)
            if faults.hits("duplicate", *where):
                broker.injected["duplicate"] += 1
                k = await self._deliver(port, tp, pos)
            if tp in rewinds:
                if pos >= rewinds[tp][1]:
                    positions[tp] = rewinds.pop(tp)[0]
            elif faults.hits("redeliver", *where):
                broker.injected["redeliver"] += 1
                rewinds[tp] = (pos, pos + 1 + int(faults.chance("window", *where) * 4))
            if faults.hits("drop", "ingest", *where):
                broker.injected["drop"] += 1
                self._lose_session()
                raise BackendUnavailableError(
                    "the loopback broker dropped the connection (fault injected)"
                )
            if faults.hits("rebalance", *where):
                broker.rebalance(group)

    def _same(self, generation: int) -> bool:
        """True while this consumer's session lasts (no drop, no rebalance)."""
        broker = self.broker
        return self.epoch == broker.epoch and (
            broker.groups[self.bridge.group].generation == generation
        )

    def _next(self, owned: list[_TP], positions: dict[_TP, int]) -> _TP_POS | None:
        """The partition to read from next, and where: the first with records waiting,
        or with ``reorder`` the one whose next record draws lowest."""
        broker, group = self.broker, self.bridge.group
        ready = []
        for tp in owned:
            pos = positions.get(tp)
            if pos is None:
                pos = positions[tp] = broker.committed(group, *tp)
            if pos < len(broker.logs[tp[0]][tp[1]]):
                ready.append((tp, pos))
        if not ready:
            return None
        if not self.faults.reorder:
            return ready[0]
        seen = broker._deliveries
        return min(ready, key=lambda r: self.faults.chance(
            "reorder", *r[0], r[1], seen.get((group, *r[0], r[1]), 0)))

    async def _deliver(self, port: Port, tp: _TP, pos: int) -> int:
        """Hand the record at *pos* to the bus; returns how many times its group got it."""
        broker, bridge = self.broker, self.bridge
        key = (bridge.group, tp[0], tp[1], pos)
        k = broker._deliveries[key] = broker._deliveries.get(key, 0) + 1
        if k > 1:
            port.count_redelivered()
        rec = broker.logs[tp[0]][tp[1]][pos]
        tracker = bridge._tracker
        tracker.started(tp, pos)

        def done(delivery: Delivery) -> None:
            tracker.done(tp, pos)
            broker._changed.unpark_all()  # a consumer waiting to commit rechecks

        await port.deliver(
            rec.topic, rec.data, id=rec.headers.get("ce-id", rec.id), key=rec.key,
            headers={h: v for h, v in rec.headers.items() if h != "ce-id"},
            time=rec.time, on_done=done,
        )
        return k

    # -- commits -------------------------------------------------------------------

    def _lose_session(self) -> None:
        """The consumer's session is gone: what it tracked and commits in flight too."""
        tracker = self.bridge._tracker
        for tp in tracker.partitions():
            tracker.forget(tp)
        self._pending.clear()
        self._queued.clear()

    def commit(self, now: bool = False, limits: dict[_TP, int] | None = None) -> None:
        """Commit what is done and not yet committed (no further than *limits*: where a
        partition will rewind to); with ``slow_commit``, it takes effect that much later
        unless *now*."""
        bridge, broker = self.bridge, self.broker
        if not bridge._joined or broker.down:
            return
        offsets = {}
        for tp in bridge._tracker.partitions():
            offset = bridge._tracker.committable(tp)
            if offset is not None and limits and tp in limits:
                offset = min(offset, limits[tp])
            floor = max(broker.committed(bridge.group, *tp), self._queued.get(tp, 0))
            if offset is not None and offset > floor:
                offsets[tp] = offset
        if now:
            self._apply_due(everything=True)
            self._advance(offsets)
        elif offsets:
            if self.faults.slow_commit:
                self._queued.update(offsets)
                self._pending.append((trio.current_time() + self.faults.slow_commit, offsets))
            else:
                self._advance(offsets)

    def _apply_due(self, everything: bool = False) -> None:
        now = trio.current_time()
        while self._pending and (everything or self._pending[0][0] <= now):
            self._advance(self._pending.pop(0)[1])

    def _advance(self, offsets: dict[_TP, int]) -> None:
        group = self.bridge.group
        moved = {tp: o for tp, o in offsets.items() if o > self.broker.committed(group, *tp)}
        if moved:
            self.broker.commit(group, moved)

