"""A broker inside the process, and the bridge to it: the contract's test double.

:class:`LoopbackBroker` keeps, per topic, a log split into partitions by key, consumer
groups with committed offsets, and nothing else; :class:`LoopbackBridge` speaks to it
exactly as a real bridge speaks to Kafka: batched confirmed export, per-record
rejection of records over ``max_bytes``, group consumption with commits of done offsets
only, redelivery of what was not committed to the next member of the group, pause under
backpressure. It lets the bus's bridge machinery, and the conformance suite itself, be
tested without a server; it is not a broker for production (nothing leaves the process).

``LoopbackBroker(faults=Faults(...))`` makes it misbehave, by seed and on command
(``bus/_faults.py``); without ``faults`` none of that code runs.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._bridge import Bridge, ExportResults, Features, Port, Rejected
from ._done import Delivery
from ._envelope import Envelope
from ._errors import BackendUnavailableError, ConfigurationError
from ._faults import Faults, FaultyLink
from ._offsets import OffsetTracker

__all__ = ["LOOPBACK_FEATURES", "LoopbackBridge", "LoopbackBroker", "LoopbackRecord"]

LOOPBACK_FEATURES = Features(
    persistent=False,
    restartable=False,
    max_message_bytes=1 << 20,
    notes="in-process: nothing survives the process, so no kill -9 or restart cases",
)


@dataclass(frozen=True, slots=True)
class LoopbackRecord:
    topic: str
    data: bytes
    id: str
    key: str | None
    headers: dict[str, str]
    time: float


@dataclass
class _Group:
    members: list[object] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    generation: int = 0


class LoopbackBroker:
    """An in-process, partitioned log with consumer groups. ``down = True`` makes every
    call fail as an unreachable broker would; *faults* makes it misbehave (:class:`Faults`).
    """

    def __init__(
        self, partitions: int = 4, max_bytes: int = 1 << 20, *, faults: Faults | None = None
    ) -> None:
        if faults is not None and not isinstance(faults, Faults):
            raise ConfigurationError(
                f"LoopbackBroker(faults={faults!r}): give a bus.testing.Faults(...) or None"
            )
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.logs: dict[str, list[list[LoopbackRecord]]] = {}
        self.groups: dict[str, _Group] = {}
        self.down = False
        self.faults = faults
        self.injected: Counter[str] = Counter()
        """Faults injected so far, by kind (``"duplicate"``, ``"drop"``...)."""
        self.epoch = 0  # bumped by drop_connections()
        self._changed = trio.lowlevel.ParkingLot()
        self._commits = trio.lowlevel.ParkingLot()
        self._refusals: list[bool] = []  # refuse_next(): permanent or not, in order
        self._writes: dict[str, int] = {}  # per topic: writes asked for (faults' index)
        self._deliveries: dict[tuple[str, str, int, int], int] = {}  # per group and record

    # -- faults on command ---------------------------------------------------------

    def _need_faults(self, command: str) -> None:
        if self.faults is None:
            raise ConfigurationError(
                f"{command} injects a fault: make the broker with "
                f"LoopbackBroker(faults=Faults(...)) (Faults() alone injects nothing)"
            )

    def drop_connections(self) -> None:
        """Drop every bridge's connection: each one's next export and its ingest fail
        as if the broker went away (the bus retries and restarts them with backoff)."""
        self._need_faults("drop_connections()")
        self.epoch += 1
        self.injected["drop"] += 1
        self._changed.unpark_all()

    def rebalance(self, group: str) -> None:
        """Rebalance *group*: every partition is taken from its member without a last
        commit and moves to the next member, which gets again what was not committed."""
        self._need_faults(f"rebalance({group!r})")
        if group not in self.groups:
            raise ConfigurationError(
                f"rebalance({group!r}): no such consumer group on this broker; "
                f"groups: {sorted(self.groups)}"
            )
        g = self.groups[group]
        g.generation += 1
        if g.members:
            g.members.append(g.members.pop(0))
        self.injected["rebalance"] += 1
        self._changed.unpark_all()

    def refuse_next(self, count: int = 1, *, permanent: bool = False) -> None:
        """Refuse the next *count* records written: for now (the bus retries them) or,
        with *permanent*, for good (the bus dead-letters them)."""
        self._need_faults(f"refuse_next({count!r})")
        if not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"refuse_next({count!r}): give a count of 1 or more")
        self._refusals.extend([permanent] * count)

    # -- the log -------------------------------------------------------------------

    def partition_of(self, key: str) -> int:
        """The partition a record with this key (or id, without a key) goes to."""
        return zlib.crc32(key.encode()) % self.partitions

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("loopback broker is down")

    def create(self, topic: str) -> None:
        self._check()
        self.logs.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(self, record: LoopbackRecord) -> None:
        self.create(record.topic)
        self.logs[record.topic][self.partition_of(record.key or record.id)].append(record)
        self._changed.unpark_all()

    def records(self, topic: str) -> list[LoopbackRecord]:
        """Every record of *topic*, partition by partition."""
        return [r for part in self.logs.get(topic, []) for r in part]

    def join(self, group: str, member: object) -> None:
        self.groups.setdefault(group, _Group()).members.append(member)
        self._changed.unpark_all()

    def leave(self, group: str, member: object) -> None:
        self.groups[group].members.remove(member)
        self._changed.unpark_all()

    def assignment(self, group: str, member: object) -> list[tuple[str, int]]:
        """The (topic, partition) pairs *member* owns now: partition p of every topic
        goes to member ``p % len(members)``."""
        members = self.groups[group].members
        index = members.index(member)
        return [
            (topic, p)
            for topic in sorted(self.logs)
            for p in range(self.partitions)
            if p % len(members) == index
        ]

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._check()
        self.groups[group].committed.update(offsets)
        self._commits.unpark_all()

    async def wait_committed(self, group: str, topic: str) -> None:
        """Return once *group* has committed every record of *topic* written so far (so
        the broker would deliver none of them again)."""
        while self.groups.get(group) is None or any(
            self.committed(group, topic, p) < len(part)
            for p, part in enumerate(self.logs.get(topic, []))
        ):
            await self._commits.park()

    def committed(self, group: str, topic: str, partition: int) -> int:
        return self.groups[group].committed.get((topic, partition), 0)

    async def changed(self) -> None:
        await self._changed.park()


class LoopbackBridge(Bridge):
    """A bridge to a :class:`LoopbackBroker`: consumes as member of *group*."""

    def __init__(self, broker: LoopbackBroker, name: str = "loopback", *, group: str = "") -> None:
        self.broker = broker
        self.name = name
        self.group = group or f"trio-bus.{name}"
        self.features = LOOPBACK_FEATURES
        self._tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
        self._member = object()
        self._joined = False
        faults = broker.faults
        self._link = None if faults is None else FaultyLink(self, faults)

    async def open(self) -> None:
        self.broker._check()
        if self._link is not None:
            self._link.epoch = self.broker.epoch

    async def aclose(self) -> None:
        if self._link is not None:
            self._link.commit(now=True)
        else:
            self._commit()
        if self._joined:
            self.broker.leave(self.group, self._member)
            self._joined = False

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        if self._link is not None:
            return await self._link.export(batch, port)
        self.broker._check()
        await trio.lowlevel.checkpoint()
        return [self._write(env, port) for env in batch]

    def _write(self, env: Envelope[Any], port: Port) -> Rejected | None:
        data = port.encode(env)
        if len(data) > self.broker.max_bytes:
            return Rejected(f"record of {len(data)} bytes is over the broker's "
                            f"limit of {self.broker.max_bytes}")
        headers = {**env.headers, "ce-id": env.id}
        self.broker.append(LoopbackRecord(env.topic, data, env.id, env.key, headers, env.time))
        return None

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        if self._link is not None:
            return await self._link.ingest(port, task_status)
        broker, group = self.broker, self.group
        broker._check()
        if not self._joined:
            broker.join(group, self._member)
            self._joined = True
        positions: dict[tuple[str, int], int] = {}
        task_status.started()
        for tick in itertools.count():
            broker._check()
            owned = [tp for tp in broker.assignment(group, self._member) if port.wants(tp[0])]
            for tp in set(positions) - set(owned):  # revoked: forget, the new owner redelivers
                self._commit_one(tp)
                del positions[tp]
                self._tracker.forget(tp)
            moved = False
            for tp in owned:
                pos = positions.setdefault(tp, broker.committed(group, *tp))
                log = broker.logs[tp[0]][tp[1]]
                while pos < len(log):
                    rec = log[pos]
                    self._tracker.started(tp, pos)
                    await port.deliver(
                        rec.topic, rec.data, id=rec.headers.get("ce-id", rec.id), key=rec.key,
                        headers={k: v for k, v in rec.headers.items() if k != "ce-id"},
                        time=rec.time, on_done=self._on_done(tp, pos),
                    )
                    pos += 1
                    positions[tp] = pos
                    moved = True
            if tick % 64 == 0:
                self._commit()
            if not moved:
                self._commit()
                with trio.move_on_after(0.05):
                    await broker.changed()

    def _on_done(self, tp: tuple[str, int], offset: int) -> Any:
        def done(delivery: Delivery) -> None:
            self._tracker.done(tp, offset)

        return done

    def _commit(self) -> None:
        if self._joined and not self.broker.down:
            moved = self._tracker.to_commit()
            if moved:
                self.broker.commit(self.group, moved)

    def _commit_one(self, tp: tuple[str, int]) -> None:
        offset = self._tracker.committable(tp)
        if offset is not None and not self.broker.down:
            self.broker.commit(self.group, {tp: offset})

    async def create_topic(self, name: str, **options: Any) -> None:
        self.broker.create(name)

    async def delete_topic(self, name: str) -> None:
        self.broker._check()
        self.broker.logs.pop(name, None)

    async def list_topics(self) -> list[str]:
        self.broker._check()
        return sorted(self.broker.logs)

    async def health(self) -> bool:
        return not self.broker.down
