"""Redis ingress: read the import streams as a member of a consumer group, deliver to
the bus, acknowledge (``XACK``) what is done.

(``_ingress.py`` is the seed facade adapter's reader; this is the bridge's.)

:class:`Ingress` runs one ``RedisBridge.ingest``:

- **streams**: an exact import topic is one stream, made with its group at once
  (``XGROUP CREATE ... MKSTREAM``); a pattern (``order.*``, ``#``) is matched against the
  server's streams (``SCAN ... TYPE stream`` on the pattern's literal prefix) every
  ``discover_interval`` seconds. A group new on a stream starts at the position of
  ``initial_position``: ``"latest"`` is the server's clock when this bridge first
  started ingress (so a stream made after that is read whole, and nothing published
  after the start is missed), ``"earliest"`` the stream's start. An existing group
  resumes where it was;
- **reading**: first this consumer's own pending entries (``XREADGROUP ... 0``: what
  it read and did not acknowledge before an ingress restart), then new ones
  (``XREADGROUP ... >``, blocking up to ``block`` seconds), all streams in one call, at
  most ``batch`` entries a read. Reading stops while a mailbox is full (the bus's
  backpressure), so entries stay on the server and memory stays bounded;
- **a dead member's entries**: every ``claim_idle / 2`` seconds, entries of the group
  pending for ``claim_idle`` seconds or more (their consumer died, ``kill -9``) are taken
  over (``XAUTOCLAIM``) and delivered again: at-least-once. An entry already in flight
  here is never delivered twice by this process;
- **acks**: an entry is acknowledged only when the bus reports it done, every stream's
  done ids in one round trip (:class:`~bridges._common.AckBatcher`); acks that could not
  be sent are kept for the next flush. An entry deleted from its stream while pending
  (``XTRIM``, ``MAXLEN``) has no fields: it is acknowledged and not delivered.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from bus import BackendError
from bus.abc import Delivery, Port, get_logger, is_pattern

from .._common import AckBatcher
from . import _client
from ._bridge_wire import decode
from ._errors import is_no_group

__all__ = ["Ingress", "glob_for"]

ACK_TIMEOUT = 5.0
"""How long sending a batch of acks may take, even while ingress is being cancelled."""
MAX_SEQUENCE = 2**64 - 1

log = get_logger("bus.redis")
Call = Callable[..., Awaitable[Any]]


class Ingress:
    """The consuming side of one bridge: entries in, acks out. Kept across ingress
    restarts (what is in flight and what is done outlive a lost connection)."""

    def __init__(
        self, call: Call, *, group: str, consumer: str, earliest: bool, batch: int,
        block: float, claim_idle: float, discover_interval: float,
    ) -> None:
        self._call = call
        self.group = group
        self.consumer = consumer
        self._earliest = earliest
        self._batch = batch
        self._block_ms = max(1, int(block * 1000))
        self._claim_idle = claim_idle
        self._discover_interval = discover_interval
        self._start: str | None = None
        self.streams: set[str] = set()
        """The streams this bridge reads (its group exists on each)."""
        self.in_flight: set[tuple[str, bytes]] = set()
        """Entries delivered to the bus and not done yet."""
        self.done: dict[str, list[bytes]] = {}
        """Done entry ids to acknowledge, by stream."""
        self._acks = AckBatcher(self.flush)
        self.claimed = 0
        """Entries taken over from other (dead) members of the group."""
        self.acked = 0
        """Entries acknowledged (``XACK`` answered)."""

    # -- the loop -----------------------------------------------------------------------

    async def run(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume until cancelled; raises a :class:`~bus.BackendError` when Redis fails
        (the bus restarts ingress with backoff)."""
        if self._start is None:
            millis = await self._call(_client.server_time_ms)
            self._start = "0" if self._earliest else f"{millis - 1}-{MAX_SEQUENCE}"
        await self.discover(port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._acks.run)
            nursery.start_soon(self._claim_loop, port)
            task_status.started()
            for stream in sorted(self.streams):
                await self._own_pending(port, stream)
            discovered = trio.current_time()
            while True:
                if trio.current_time() - discovered >= self._discover_interval:
                    await self.discover(port)
                    discovered = trio.current_time()
                if not self.streams:  # a pattern no stream matches yet
                    await trio.sleep(self._discover_interval)
                    continue
                await self._read(port)

    async def _read(self, port: Port) -> None:
        wanted = dict.fromkeys(sorted(self.streams), ">")
        try:
            answer = await self._call(
                _client.read_groups, self.group, self.consumer, wanted, self._batch,
                self._block_ms,
            )
        except BackendError as exc:
            if exc.__cause__ is None or not is_no_group(exc.__cause__):
                raise
            # a stream (and its group) was deleted, or the server lost it: find them again
            log.info("redis.group_gone", group=self.group, error=str(exc))
            self.streams.clear()
            await self.discover(port)
            return
        for stream, entries in answer:
            for entry_id, fields in entries:
                await self._deliver(port, stream, entry_id, fields)

    async def _own_pending(self, port: Port, stream: str) -> None:
        """Deliver what this consumer read before and did not acknowledge."""
        after = "0"
        while True:
            answer = await self._call(
                _client.read_groups, self.group, self.consumer, {stream: after}, self._batch,
                None,
            )
            entries = [e for _, found in answer for e in found]
            if not entries:
                return
            for entry_id, fields in entries:
                await self._deliver(port, stream, entry_id, fields, redelivered=True)
            after = entries[-1][0].decode()

    async def _claim_loop(self, port: Port) -> None:
        idle_ms = int(self._claim_idle * 1000)
        while True:
            await trio.sleep(max(0.05, self._claim_idle / 2))
            for stream in sorted(self.streams):
                try:
                    entries = await self._call(
                        _client.autoclaim, stream, self.group, self.consumer, idle_ms,
                        self._batch,
                    )
                except BackendError as exc:
                    if exc.__cause__ is not None and is_no_group(exc.__cause__):
                        continue  # the read loop finds the streams again
                    raise
                for entry_id, fields in entries:
                    if (stream, entry_id) not in self.in_flight:
                        self.claimed += 1
                        await self._deliver(port, stream, entry_id, fields, redelivered=True)

    # -- streams ------------------------------------------------------------------------

    async def discover(self, port: Port) -> None:
        """Make sure the group exists on every stream the import patterns name."""
        found: set[str] = set()
        for pattern in port.import_patterns:
            if not is_pattern(pattern):
                found.add(pattern)
                continue
            for stream in await self._call(_client.scan_streams, glob_for(pattern)):
                if port.wants(stream):
                    found.add(stream)
        assert self._start is not None
        for stream in sorted(found - self.streams):
            await self._call(_client.create_group, stream, self.group, self._start)
            self.streams.add(stream)
            log.info("redis.stream_joined", stream=stream, group=self.group)

    # -- delivery and acks --------------------------------------------------------------

    async def _deliver(
        self, port: Port, stream: str, entry_id: bytes, fields: dict[bytes, bytes], *,
        redelivered: bool = False,
    ) -> None:
        ident = (stream, entry_id)
        if ident in self.in_flight:
            return
        if not fields:  # deleted from the stream while pending: nothing to deliver
            self._ack_later(stream, entry_id)
            return
        incoming, body = decode(stream, entry_id, fields)
        if redelivered:
            port.count_redelivered()
        on_done = partial(self.on_done, stream, entry_id)
        kwargs: dict[str, Any] = {
            "id": incoming.id, "key": incoming.key, "headers": incoming.headers,
            "time": incoming.time, "attempt": incoming.attempt, "source": incoming.source,
            "on_done": on_done,
        }
        self.in_flight.add(ident)
        try:
            try:
                port.deliver_nowait(stream, body, **kwargs)
            except trio.WouldBlock:
                # A mailbox is full: wait here, reading no more (entries stay on Redis).
                await port.deliver(stream, body, **kwargs)
        except BaseException:
            self.in_flight.discard(ident)  # not delivered: read again after a restart
            raise

    def on_done(self, stream: str, entry_id: bytes, delivery: Delivery | None) -> None:
        """The bus finished entry *entry_id* of *stream*: acknowledge it soon."""
        self.in_flight.discard((stream, entry_id))
        self._ack_later(stream, entry_id)

    def _ack_later(self, stream: str, entry_id: bytes) -> None:
        self.done.setdefault(stream, []).append(entry_id)
        self._acks.wanted()

    async def flush(self) -> None:
        """Acknowledge everything done so far, every stream in one round trip."""
        if not self.done:
            return
        acks, self.done = self.done, {}
        try:
            # Shielded: a cancelled flush would leave done entries pending (redelivered).
            with trio.move_on_after(ACK_TIMEOUT, shield=True) as scope:
                await self._call(_client.ack_streams, self.group, acks)
                self.acked += sum(map(len, acks.values()))
            if scope.cancelled_caught:
                raise BackendError(f"acknowledging {sum(map(len, acks.values()))} entries "
                                   f"took more than {ACK_TIMEOUT}s")
        except BaseException:
            for stream, ids in acks.items():  # keep them for the next flush
                self.done.setdefault(stream, []).extend(ids)
            raise


_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_for(pattern: str) -> str:
    """A ``SCAN MATCH`` glob that every stream *pattern* matches covers: its literal
    prefix, then ``*`` (the bridge filters the answer with the pattern itself)."""
    literal: list[str] = []
    for segment in pattern.split("."):
        if segment in ("*", "#"):
            break
        literal.append(segment)
    # no trailing dot: ``order.#`` matches ``order`` itself
    return _GLOB_SPECIAL.sub(r"\\\1", ".".join(literal)) + "*"
