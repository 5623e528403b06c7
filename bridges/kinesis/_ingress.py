"""Kinesis ingress: find the streams the import patterns want, read every shard.

One :class:`IngressRun` per call of ``KinesisBridge.ingest`` (the bus restarts ingest
after it raises, e.g. while the endpoint is down; a new run resumes from the stored
checkpoints). Its tasks:

- discovery: ``ListStreams`` at start and every ``discover_interval`` seconds; a stream
  whose topic (its name less the bridge's prefix) matches an import pattern gets a
  stream task;
- a stream task: ``ListShards``; a shard is read once each of its parents (split or
  merge) is finished, i.e. read to its end with every record done and ``SHARD_END``
  saved, as the KCL does, so a key's records come in order across a reshard; listed
  again when a shard ends and every ``discover_interval``;
- a shard task: an iterator ``AFTER_SEQUENCE_NUMBER`` the saved checkpoint (else at
  ``initial_position``), then a ``GetRecords`` loop, one crossing per call. Each record
  goes to ``port.deliver_nowait``; when the bus pushes back (``trio.WouldBlock``) the
  task waits in ``port.deliver`` and reads nothing more from that shard meanwhile. An
  expired iterator is renewed after the last delivered record; throttling waits.

A stream deleted while read ends its task (discovery finds it again if it comes back).
Other client errors propagate: the run fails and the bus restarts it with backoff.

**Caught up** (``KinesisBridge.on_caught_up``, for a reader that ends at the present end,
the facade's ``pull``): once the first discovery is done and, in every stream read, each
shard this member reads answered ``GetRecords`` with no records and
``MillisBehindLatest == 0`` after all it returned before was delivered, the run calls the
callbacks once. An empty answer, not only ``MillisBehindLatest == 0``: that figure has
millisecond granularity (kinesis-mock answered 0 with 10 records of the same
millisecond still unread, measured), and an empty answer at the tip leaves nothing
unread. Checked once per ``GetRecords`` call and listing, never per record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from bus import BackendError
from bus.abc import Port, get_logger

from ._checkpoints import SHARD_END, LeaseStore, start_of
from ._errors import THROTTLED, error_code
from ._wire import decode

if TYPE_CHECKING:
    from ._bridge import KinesisBridge

__all__ = ["IngressRun"]

log = get_logger("bus.bridges")

Call = Callable[..., Awaitable[Any]]

GONE = frozenset({"ResourceNotFoundException", "ResourceInUseException"})
"""A stream deleted (or not ready yet): stop reading it, discovery retries later."""
STALE = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})
"""Answers to ``GetShardIterator`` after a sequence number that is not in the shard."""


class _Stream:
    """What one stream task knows: checkpoints, shards read and finished, a wake-up."""

    def __init__(self, checkpoints: dict[str, str]) -> None:
        self.checkpoints: dict[str, str] = {}
        self.finished: set[str] = set()
        self.refresh(checkpoints)
        self.readers: dict[str, trio.CancelScope] = {}
        self.changed = trio.Event()
        self.listed = False
        """The shards to read were listed (and their readers started) since a shard ended."""
        self.at_tip: set[str] = set()
        """Shards whose last ``GetRecords`` was empty at the tip (MillisBehindLatest 0)."""

    def caught_up(self) -> bool:
        """Every shard this member reads is at its tip, and none ended since listing."""
        return self.listed and all(s in self.at_tip for s in self.readers)

    def refresh(self, checkpoints: dict[str, str]) -> None:
        """What the store holds now (other members of the group save there too)."""
        self.checkpoints = checkpoints
        self.finished |= {s for s, v in checkpoints.items() if v == SHARD_END}

    def shard_finished(self, shard: str) -> None:
        self.finished.add(shard)
        self.listed = False  # its children are listed next: not caught up until then
        self.changed.set()


class IngressRun:
    """One run of ``KinesisBridge.ingest``: reads with *client* through *call* (the
    bridge's client-call helper); takes its settings from the bridge's public ones."""

    def __init__(self, bridge: KinesisBridge, port: Port, call: Call, client: Any) -> None:
        self.bridge = bridge
        self.port = port
        self._call = call
        self.client = client
        self._active: set[str] = set()
        self._states: dict[str, _Stream] = {}
        self._discovered = False
        self._reported = not bridge.caught_up_callbacks  # nobody asks: nothing to check
        # "LATEST" reads what arrives from now on: a shard found later (or an iterator
        # that expired before its first record) starts here, not at its own latest.
        self.since = time.time()

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        b = self.bridge
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.checkpoints.run)
            await self._discover(nursery)
            self._discovered = True
            self._check_caught_up()
            task_status.started()
            while True:
                await trio.sleep(b.discover_interval)
                await self._discover(nursery)

    async def _discover(self, nursery: trio.Nursery) -> None:
        for stream in await self._call(self.client.list_streams):
            topic = self.bridge.topic_of(stream)
            if topic is None or stream in self._active or not self.port.wants(topic):
                continue
            self._active.add(stream)
            nursery.start_soon(self._stream, stream, topic)

    async def _stream(self, stream: str, topic: str) -> None:
        try:
            await self._read_stream(stream, topic)
        except BackendError as exc:
            if error_code(exc) not in GONE:
                raise
            log.info("kinesis.stream_gone", bridge=self.bridge.name, stream=stream, error=str(exc))
        finally:
            self._active.discard(stream)
            self._states.pop(stream, None)
            self._check_caught_up()

    def _check_caught_up(self) -> None:
        """Report caught up once (see the module docstring)."""
        if self._reported or not self._discovered:
            return
        states = self._states
        if all(s in states and states[s].caught_up() for s in self._active):
            self._reported = True
            for callback in self.bridge.caught_up_callbacks:
                callback()

    async def _read_stream(self, stream: str, topic: str) -> None:
        b = self.bridge
        state = self._states[stream] = _Stream(await b.checkpoints.load(stream))
        leasing = b.leasing
        wait = min(b.discover_interval, b.lease_ttl / 3) if leasing else b.discover_interval
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    shards = await self._call(self.client.list_shards, stream)
                    if leasing:
                        state.refresh(await b.checkpoints.load(stream))
                    listed = {s["ShardId"] for s in shards}
                    ready = []
                    for shard in shards:
                        sid = shard["ShardId"]
                        if sid in state.finished:
                            continue
                        parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
                        # a parent no longer listed has expired: nothing of it is left
                        if any(p and p in listed and p not in state.finished for p in parents):
                            continue
                        ready.append(sid)
                    if leasing:
                        ready = await self._lease(state, stream, ready)
                    for sid in ready:
                        if sid not in state.readers:
                            state.readers[sid] = scope = trio.CancelScope()
                            nursery.start_soon(self._shard, state, stream, topic, sid, scope)
                    state.listed = True
                    self._check_caught_up()
                    with trio.move_on_after(wait):
                        await state.changed.wait()
                    state.changed = trio.Event()
            finally:
                if leasing:  # let the others take over at once, from what is saved
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await b.checkpoints.flush()
                        await self._release(stream, None)

    async def _lease(self, state: _Stream, stream: str, ready: list[str]) -> list[str]:
        """Claim this member's share of the *ready* shards; stop reading those it lost
        and give up those over its share. Returns the shards to read."""
        b = self.bridge
        held, limit = await self._claim(stream, ready)
        keep = [s for s in held if s in state.readers] + [s for s in held if s not in state.readers]
        keep, extra = keep[:limit], keep[limit:]
        for sid, scope in list(state.readers.items()):
            if sid not in keep:  # lost (expired under us) or given up: stop reading
                scope.cancel()
                del state.readers[sid]
        if extra:
            # another member joined: save what is done of these shards, then let go
            await b.checkpoints.flush()
            await self._release(stream, extra)
            log.info("kinesis.shards_given_up", bridge=b.name, stream=stream, shards=extra)
        return keep

    async def _shard(
        self, state: _Stream, stream: str, topic: str, shard: str, scope: trio.CancelScope
    ) -> None:
        with scope:
            await self._read_shard(state, stream, topic, shard)
        if state.readers.get(shard) is scope:
            del state.readers[shard]
        state.at_tip.discard(shard)

    async def _read_shard(self, state: _Stream, stream: str, topic: str, shard: str) -> None:
        b, client = self.bridge, self.client
        key = (stream, shard)
        last = state.checkpoints.get(shard)
        initial: str = b.initial_position
        since: float | None = self.since
        start = start_of(last)
        if start is not None:  # the group's start, saved before it read anything
            (initial, since), last = start, None
        b.checkpoints.resumed(key, last)
        try:
            iterator = await self._call(client.iterator, stream, shard, last, initial, since)
        except BackendError as exc:
            if last is None or error_code(exc) not in STALE:
                raise
            # The checkpoint is not of this stream (deleted and made again under the same
            # name, or an emulator that lost its data): read the shard from its start.
            log.warning(
                "kinesis.checkpoint_stale", bridge=b.name, stream=stream, shard=shard,
                checkpoint=last, error=str(exc),
            )
            last = None
            iterator = await self._call(client.iterator, stream, shard, None, "TRIM_HORIZON")
        throttled = 0
        while iterator is not None:
            try:
                records, nxt, behind = await self._call(
                    client.get_records, iterator, b.records_per_call
                )
            except BackendError as exc:
                code = error_code(exc)
                if code == "ExpiredIteratorException":
                    iterator = await self._call(
                        client.iterator, stream, shard, last, initial, since
                    )
                    continue
                if code in THROTTLED:
                    throttled += 1
                    await trio.sleep(min(0.2 * 2**throttled, 5.0))
                    continue
                raise
            throttled = 0
            for seq, data, pkey, arrival in records:
                await self._deliver(key, topic, seq, data, pkey, arrival)
                last = seq
            iterator = nxt
            if records or nxt is None or behind:
                state.at_tip.discard(shard)
            elif shard not in state.at_tip:
                state.at_tip.add(shard)  # empty at the tip: nothing left unread
                self._check_caught_up()
            if not records and nxt is not None:
                await trio.sleep(b.poll_interval)
        # The shard is closed and read to its end: once its records are done, its
        # children may be read.
        await b.checkpoints.shard_ended(key)
        state.shard_finished(shard)

    async def _deliver(
        self, key: tuple[str, str], topic: str, seq: str, data: bytes, pkey: str, arrival: float
    ) -> None:
        b, port = self.bridge, self.port
        stream, shard = key
        incoming, payload = decode(
            topic, data, fallback_id=f"{stream}/{shard}/{seq}", partition_key=pkey or None,
            arrival=arrival,
        )
        checkpoints = b.checkpoints
        index = checkpoints.delivered(key, seq)
        kwargs: dict[str, Any] = {
            "id": incoming.id, "key": incoming.key, "headers": incoming.headers,
            "time": incoming.time, "attempt": incoming.attempt, "source": incoming.source,
            "on_done": partial(checkpoints.done, key, index),
        }
        try:
            try:
                port.deliver_nowait(topic, payload, **kwargs)
            except trio.WouldBlock:
                # A mailbox is full: this shard reads nothing more until it has room.
                await port.deliver(topic, payload, **kwargs)
        except BaseException:
            # Not delivered (cancelled, bus closing): never checkpoint past it; a new
            # run reads it again from the last checkpoint.
            checkpoints.abandon(key, index)
            raise

    async def _claim(self, stream: str, shards: list[str]) -> tuple[list[str], int]:
        b = self.bridge
        store = b.checkpoints.store
        assert isinstance(store, LeaseStore)
        return await trio.to_thread.run_sync(
            store.claim, b.group, stream, b.owner, shards, b.lease_ttl
        )

    async def _release(self, stream: str, shards: list[str] | None) -> None:
        b = self.bridge
        store = b.checkpoints.store
        assert isinstance(store, LeaseStore)
        await trio.to_thread.run_sync(store.release, b.group, stream, b.owner, shards)
