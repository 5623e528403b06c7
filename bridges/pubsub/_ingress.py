"""Pub/Sub ingress: pull the subscriptions of the wanted topics, deliver to the bus,
acknowledge what is done, extend the leases of what is still in work.

:class:`Ingress` runs one ``PubSubBridge.ingest``. Pub/Sub has no wildcard
subscriptions, so it lists the project's topics, keeps those whose bus name matches an
import pattern (literal patterns: the topic is created if missing), and reads each
through its consumer group's subscription (created with message ordering), re-listing
every ``relist_interval``. Each subscription has a puller (unary ``Pull`` in a worker
thread) and a deliverer a batch apart; ``max_outstanding`` bounds what all of them hold
(the backpressure). Done messages are acknowledged in batches
(:class:`~bridges._common.AckBatcher`); messages pulled but never handed to the bus
(ingress cancelled mid-batch) are handed back at once (deadline 0).

Which received messages to acknowledge, extend or count (:class:`Leases`, sans-IO): a
pulled message is *leased*: the service redelivers it unless it is acknowledged or its
ack deadline is extended in time. :class:`Leases` remembers, per subscription, the ack
ids received and not acknowledged yet, split into those the bus has not finished
(extend their deadline while they are in work, up to a maximum lease) and those it has
(acknowledge them at the next flush). Its :attr:`~Leases.outstanding` count is what
bounds ingress: the bridge pulls only while it is under ``max_outstanding``.

**Caught up** (``PubSubBridge.on_caught_up``, for a reader that ends at the present end,
the facade's ``pull``): once the first discovery is done and every subscription read
answered a ``Pull`` with nothing, a pull sent while none of that subscription's messages
was out (received and not acknowledged, or its acknowledgement still on the wire), the
callbacks are called once. A pull sent with messages out does not count: on a
subscription with ordering the service holds a key's later messages back until the
earlier ones are acknowledged, so it may answer empty with a backlog waiting. Google's
Pull API allows an answer with fewer messages than asked for, none included, while some
wait, so on Google Cloud this end is a strong hint rather than exact; the emulator
answers with what is there (measured: with 30 messages of one ordering key, a pull of 10
got 10 and the next pulls, nothing acknowledged, got none).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from bus import BackendError
from bus.abc import Delivery, Port, get_logger, is_pattern

from .._common import AckBatcher
from ._errors import is_client_error, is_not_found, translate
from ._names import subscription_id, topic_from_id, topic_id
from ._wire import decode

__all__ = ["Ingress", "Leases"]

log = get_logger("bus.bridges")

ACK_GRACE = 0.01
"""Seconds a pull waits for the acknowledgements of what is out (see ``_puller``)."""
ACK_TIMEOUT = 10.0
"""How long flushing acknowledgements may take, even while being cancelled."""
SEEN_IDS = 65_536
"""Recent message ids remembered to count redeliveries."""

Call = Callable[..., Awaitable[Any]]


class Ingress:
    """The consuming side of one bridge (its counters last as long as the bridge)."""

    def __init__(
        self,
        call: Call,
        is_open: Callable[[], bool],
        *,
        name: str,
        group: str,
        topic_prefix: str,
        create_topics: bool,
        ordering: bool,
        ack_deadline: int,
        max_outstanding: int,
        max_lease_duration: float,
        relist_interval: float | None,
        pull_wait: float,
        pull_max: int,
    ) -> None:
        self._call = call
        self._is_open = is_open
        self.name = name
        self.group = group
        self.topic_prefix = topic_prefix
        self._create_topics = create_topics
        self._ordering = ordering
        self._ack_deadline = ack_deadline
        self._max_outstanding = max_outstanding
        self._max_lease = max_lease_duration
        self._relist = relist_interval
        self._pull_wait = pull_wait
        self._pull_max = pull_max
        self._client: Any = None
        self.pulls_in_flight = 0
        self.leases = Leases()
        self._pulling: set[str] = set()
        self._acks = AckBatcher(self.flush)
        self._room = trio.Event()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.received = 0
        """Messages received from Pub/Sub (redeliveries included)."""
        self.redelivered = 0
        """Messages received again (``delivery_attempt`` > 1, or an id seen recently)."""
        self.acked = 0
        """Messages acknowledged because the bus reported them done."""
        self.extended = 0
        """Ack deadline extensions sent for messages still in work."""
        self.caught_up_callbacks: list[Callable[[], None]] = []
        """Called once per run when every subscription read answered empty (module)."""
        self._at_end: set[str] = set()
        self._reported = True
        self._acking = 0

    async def run(self, client: Any, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Discover, pull and deliver until cancelled."""
        self._client = client
        self._pulling.clear()
        self._at_end.clear()
        self._reported = True  # not before the first discovery is done
        async with trio.open_nursery() as nursery:
            await self._discover(port, nursery)
            self._reported = not self.caught_up_callbacks
            self._check_caught_up()
            nursery.start_soon(self._acks.run)
            nursery.start_soon(self._lease_loop)
            if self._relist is not None:
                nursery.start_soon(self._relist_loop, port, nursery, self._relist)
            task_status.started()

    async def _discover(self, port: Port, nursery: trio.Nursery) -> None:
        """Pull from every topic an import pattern matches (creating literal ones), each
        through this group's subscription (created with message ordering if missing)."""
        wanted: dict[str, str] = {}
        for pattern in port.import_patterns:
            if not is_pattern(pattern):
                tid = topic_id(pattern, self.topic_prefix)
                if self._create_topics:
                    await self._call(self._client.create_topic, tid)
                wanted[tid] = pattern
        for tid in await self._call(self._client.list_topics):
            topic = topic_from_id(tid, self.topic_prefix)
            if topic is not None and port.wants(topic):
                wanted[tid] = topic
        for tid, topic in wanted.items():
            sid = subscription_id(tid, self.group)
            if sid in self._pulling:
                continue
            try:
                await self._call(
                    self._client.create_subscription, sid, tid, self._ack_deadline, self._ordering
                )
            except BackendError as exc:
                if is_not_found(exc.__cause__ or exc):
                    continue  # the topic went away since the listing
                raise
            self._pulling.add(sid)
            nursery.start_soon(self._pull_loop, port, sid, topic)
            log.debug("pubsub.subscribed", bridge=self.name, subscription=sid, topic=topic)

    async def _relist_loop(self, port: Port, nursery: trio.Nursery, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self._discover(port, nursery)
            except BackendError as exc:
                log.warning("pubsub.relist_failed", bridge=self.name, error=str(exc))

    async def _pull_loop(self, port: Port, sid: str, topic: str) -> None:
        """One puller and one deliverer per subscription, a batch apart: the next Pull
        is on the wire while the bus takes the last one, and batches are delivered in
        the order they were pulled (so in the service's order per key)."""
        send, receive = trio.open_memory_channel[list[Any]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._puller, sid, send)
            await self._deliverer(port, topic, sid, receive)

    async def _puller(self, sid: str, send: trio.MemorySendChannel[list[Any]]) -> None:
        leases = self.leases
        while True:
            room = self._max_outstanding - leases.outstanding
            if room <= 0:
                # Bounded: no more pulls until the bus finished (and we acked) some.
                await self._room.wait()
                continue
            if leases.outstanding:
                # Give the last batch a moment to be done and acknowledged: on a
                # subscription with ordering, the service holds back a key with messages
                # out, and a pull that races the acks waits for nothing (~50 ms on the
                # emulator; 2.5x the throughput without it).
                with trio.move_on_after(ACK_GRACE):
                    await self._room.wait()
                room = self._max_outstanding - leases.outstanding
            quiet = self.leases.idle(sid) and not self._acking
            self.pulls_in_flight += 1
            try:
                # Not abandoned on cancel: the service holds a pull open only briefly,
                # and what it returns must be handed back, not leased to nobody.
                received = await trio.to_thread.run_sync(
                    self._pull, sid, min(room, self._pull_max)
                )
                if not received:
                    if quiet and sid not in self._at_end:
                        self._at_end.add(sid)
                        self._check_caught_up()
                    continue
                self._at_end.discard(sid)
                now = trio.current_time()
                for rm in received:
                    leases.received(sid, rm.ack_id, now)
                try:
                    await send.send(received)
                except trio.Cancelled:
                    await self._hand_back(sid, [rm.ack_id for rm in received])
                    raise
            finally:
                self.pulls_in_flight -= 1

    def _check_caught_up(self) -> None:
        if not self._reported and self._at_end >= self._pulling:
            self._reported = True
            for callback in self.caught_up_callbacks:
                callback()

    async def _deliverer(
        self, port: Port, topic: str, sid: str, receive: trio.MemoryReceiveChannel[list[Any]]
    ) -> None:
        async for received in receive:
            for n, rm in enumerate(received):
                try:
                    await self._deliver(port, topic, sid, rm)
                except trio.Cancelled:
                    await self._hand_back(sid, [r.ack_id for r in received[n:]])
                    raise

    def _pull(self, sid: str, max_messages: int) -> list[Any]:
        """The blocking pull, in a worker thread; client errors translated."""
        try:
            received: list[Any] = self._client.pull(sid, max_messages, self._pull_wait)
        except Exception as exc:
            if not self._is_open():
                return []  # closed under it (detach): ingress is being cancelled
            if is_client_error(exc):
                raise translate(exc, self.name) from exc
            raise
        return received

    async def _hand_back(self, sid: str, ack_ids: list[str]) -> None:
        """Messages received but never given to the bus: let the service redeliver them
        now (deadline 0) rather than when their lease runs out."""
        self.leases.forget(sid, ack_ids)
        if ack_ids:
            with trio.move_on_after(ACK_TIMEOUT, shield=True), contextlib.suppress(BackendError):
                await self._call(self._client.modify_ack_deadline, sid, ack_ids, 0, check=False)

    async def _deliver(self, port: Port, topic: str, sid: str, rm: Any) -> None:
        """Deliver one raw protobuf ``ReceivedMessage`` (not proto-plus: its attribute
        access costs more than the rest of the delivery)."""
        self.received += 1
        message = rm.message
        attempt = self._attempt(message.message_id, rm.delivery_attempt)
        stamp = message.publish_time
        incoming = decode(
            topic, message.attributes.items(), message.message_id, message.ordering_key,
            stamp.seconds + stamp.nanos / 1e9 if stamp.seconds else 0.0,
        )
        on_done = partial(self._on_done, sid, rm.ack_id)
        kwargs: dict[str, Any] = {
            "id": incoming.id, "key": incoming.key, "headers": incoming.headers,
            "time": incoming.time, "attempt": max(incoming.attempt, attempt),
            "source": incoming.source, "on_done": on_done,
        }
        try:
            port.deliver_nowait(incoming.topic, message.data, **kwargs)
        except trio.WouldBlock:
            # A mailbox is full: wait here; this subscription pulls nothing meanwhile,
            # and max_outstanding bounds what all of them hold.
            await port.deliver(incoming.topic, message.data, **kwargs)

    def _attempt(self, message_id: str, delivery_attempt: int) -> int:
        """1 for a first delivery; more (and counted) for a redelivery. Pub/Sub fills
        ``delivery_attempt`` only on subscriptions with a dead-letter policy."""
        seen = self._seen
        previous = seen.pop(message_id, 0)
        seen[message_id] = previous + 1
        if len(seen) > SEEN_IDS:
            seen.popitem(last=False)
        attempt = delivery_attempt or previous + 1
        if attempt > 1:
            self.redelivered += 1
        return attempt

    def _on_done(self, sid: str, ack_id: str, delivery: Delivery) -> None:
        self.leases.done(sid, ack_id)
        self._acks.wanted()

    async def flush(self) -> None:
        """Acknowledge every done message (shielded: the ids are taken from the leases,
        so a cancelled call would only cause needless redeliveries)."""
        done = self.leases.take_done()
        if done:
            self._acking += 1  # a pull sent meanwhile is not "quiet" (see _puller)
            try:
                with trio.move_on_after(ACK_TIMEOUT, shield=True):
                    for sid, ack_ids in done.items():
                        try:
                            await self._call(self._client.acknowledge, sid, ack_ids, check=False)
                        except BackendError as exc:
                            log.warning(
                                "pubsub.ack_failed", bridge=self.name, subscription=sid,
                                messages=len(ack_ids), error=str(exc),
                            )
                        else:
                            self.acked += len(ack_ids)
            finally:
                self._acking -= 1
        self._room.set()
        self._room = trio.Event()

    async def _lease_loop(self) -> None:
        """Extend the ack deadline of messages still in work, every half deadline."""
        period = self._ack_deadline / 2
        while True:
            await trio.sleep(period)
            extend = self.leases.to_extend(trio.current_time(), self._max_lease)
            for sid, ack_ids in extend.items():
                try:
                    await self._call(
                        self._client.modify_ack_deadline, sid, ack_ids, self._ack_deadline
                    )
                except BackendError as exc:
                    log.warning(
                        "pubsub.lease_failed", bridge=self.name, subscription=sid,
                        messages=len(ack_ids), error=str(exc),
                    )
                else:
                    self.extended += len(ack_ids)


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

    def idle(self, sid: str) -> bool:
        """None of *sid*'s messages is out: all received were acknowledged (flushed)."""
        return not self._undone.get(sid) and sid not in self._done

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
