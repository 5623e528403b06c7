"""Where brokers plug in: the :class:`Bridge` contract and ``bus.attach``.

A bridge mirrors topics between the bus and one broker. Its whole contract is two
methods, in the spirit of httpx's transport:

- :meth:`Bridge.export` (egress) gets batches of envelopes whose topics match the
  ``export`` patterns and returns only once the broker confirmed every one of them. If it
  raises, the bus retries the same batch with backoff, forever by default: while the
  broker is down the export mailbox fills and publishers feel backpressure; nothing is
  dropped. Translate client errors into :class:`~bus.BackendError` at this boundary.
- :meth:`Bridge.ingest` (ingress) runs until cancelled, consuming from the broker, and
  calls :meth:`Port.deliver` for each message; it acknowledges or commits only after
  ``deliver`` returned (at-least-once).

The delivery path does not change for bridges: export is an ordinary batched
subscription, and ingress is an ordinary publish of an envelope. Messages that came in
through a bridge carry the ``x-bus-origin`` header, and that bridge's export skips them,
so there are no echo loops. Undecodable payloads go to the dead-letter topic with the
reason, and consumption goes on. A dead letter is a new message of the bus's, not an
echo: its origin moves to ``x-bus-dead-letter-origin``, so it reaches every bridge
exporting the dead-letter topic, the one it came from included; a message whose dead
letter could not be delivered is not acknowledged (:attr:`Port.kept_unacked`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ._done import Delivery
from ._envelope import (
    H_ERROR,
    H_ERROR_TYPE,
    H_ORIGIN,
    H_ORIGINAL_TOPIC,
    Envelope,
    dead_letter_headers,
)
from ._errors import BackendError, BackendUnavailableError, BusError, ConfigurationError
from ._log import get_logger
from ._policy import RetryPolicy
from ._routing import Pattern, validate_pattern
from ._trace import TRACEPARENT

if TYPE_CHECKING:
    from ._actor import Subscription
    from ._bus import Bus

__all__ = ["Attachment", "Bridge", "ExportResults", "Features", "Port", "Rejected"]

log = get_logger("bus")  # silent unless the app configures logging (bus/_log.py)

EXPORT_RETRY = RetryPolicy(attempts=None, base_delay=0.2, max_delay=10.0)


@dataclass(frozen=True, slots=True)
class Features:
    """What a broker (and this bridge's use of it) can do. The conformance suite skips a
    case only where a field says the broker lacks it; the docs' Characteristics table of
    each broker is generated from its record."""

    ordered: bool = True
    """Messages with the same key are consumed in the order they were produced."""
    persistent: bool = True
    """Confirmed messages survive a broker restart."""
    consumer_groups: bool = True
    """Bridges sharing a group share the stream; different groups each get all of it."""
    redelivery: bool = True
    """A message not acknowledged before a consumer dies is delivered again."""
    headers: bool = True
    """Native headers/attributes (CloudEvents binary mode); else structured mode."""
    patterns: bool = True
    """Import patterns (``*``/``#``) are matched by the broker or the bridge."""
    max_message_bytes: int | None = None
    """The largest record the broker accepts; larger ones are rejected (dead-lettered)."""
    restartable: bool = True
    """The test harness can restart the broker mid-stream (``make brokers-restart``)."""
    notes: str = ""
    """What differs on the emulator used in tests, or needs saying."""


class Rejected(BackendError):
    """The broker refused one record for good (too large, unroutable...).

    Returned (not raised) by :meth:`Bridge.export` in the slot of that record: the bus
    dead-letters it with this message as the reason and goes on with the rest.
    """


ExportResults = Sequence[BaseException | None] | None
"""What :meth:`Bridge.export` returns: ``None`` when the broker confirmed every record;
otherwise one entry per record of the batch, in order: ``None`` (confirmed), a
:class:`Rejected` (dead-lettered with the reason), or any other exception (a transient
failure: that record alone is retried with backoff)."""


class Bridge(abc.ABC):
    """A broker attachment. The bus that attaches it owns its life:

    ``open()`` when attached (bounded by ``connect_timeout``), ``ingest()`` as a
    supervised task restarted with backoff when it raises, ``aclose()`` after the export
    mailbox drained and ingress stopped when the bus exits or the bridge is detached.
    Translate client exceptions into :class:`~bus.BackendError` (or
    :class:`~bus.BackendUnavailableError`) with ``raise ... from exc``: no client's
    exception type reaches users.
    """

    name: str = "bridge"
    """Identifies the bridge in headers, logs and stats; unique per bus."""
    features: Features = Features()

    async def open(self) -> None:  # noqa: B027 - an optional hook
        """Connect to the broker. Raise :class:`~bus.BackendUnavailableError` if it is
        not reachable; the bus bounds the wait with ``attach(connect_timeout=)``."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook
        """Acknowledge/commit what is done, then close the client. Called once, shielded
        and bounded, after ingress stopped and the export mailbox drained."""

    @abc.abstractmethod
    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        """Send *batch* to the broker; return once the broker answered for every record.

        Return ``None`` if all were confirmed, else one result per record (see
        :data:`ExportResults`). Raising retries the whole batch with backoff.
        """

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume the import patterns from the broker until cancelled.

        Call ``task_status.started()`` once consuming. For each message call
        ``port.deliver(..., on_done=...)``; acknowledge it only when ``on_done`` fires.
        Raising restarts ingress after a backoff (the bus logs it).
        """
        raise NotImplementedError(f"bridge {self.name!r} cannot import from its broker")

    async def create_topic(self, name: str, **options: Any) -> None:
        """Create *name* on the broker (topic, stream, exchange binding...); idempotent."""
        raise NotImplementedError(f"bridge {self.name!r} cannot create topics")

    async def delete_topic(self, name: str) -> None:
        """Delete *name* on the broker; deleting a missing one is not an error."""
        raise NotImplementedError(f"bridge {self.name!r} cannot delete topics")

    async def list_topics(self) -> list[str]:
        """Names of the topics the broker has."""
        raise NotImplementedError(f"bridge {self.name!r} cannot list topics")

    async def health(self) -> bool:
        """True if the broker answers now. Never raises."""
        return True

    async def lag(self) -> int | None:
        """Messages waiting on the broker for this bridge's ingress, where the broker
        tells it (None: unknown). Never raises."""
        return None


class Port:
    """What a bridge may do with the bus: encode for export, deliver on import.

    Made by ``bus.attach``; one per attachment.
    """

    def __init__(self, bus: Bus, bridge: Bridge, import_patterns: Sequence[str]) -> None:
        self._bus = bus
        self.bridge = bridge
        self.import_patterns = tuple(import_patterns)
        self._matchers = [Pattern(p).matches for p in self.import_patterns]
        self._wanted: dict[str, bool] = {}  # per topic: the matchers' answer, memoised
        self.imported = 0
        """Messages delivered to the bus (dead letters included)."""
        self.import_dead_lettered = 0
        """Of those, delivered to the dead-letter topic (undecodable, unknown topic...)."""
        self.acked = 0
        """Imported messages done, so acknowledged to the broker (RabbitMQ, Pub/Sub) or
        committable (a Kafka offset, a Kinesis checkpoint) at the bridge's next flush."""
        self.redelivered = 0
        """Imported messages the broker marked as delivered before (where it does)."""
        self.kept_unacked = 0
        """Imported messages done whose dead letter could not be delivered
        (:attr:`~bus.abc.Delivery.undeliverable`): their ``on_done`` is not called, so
        they are not acknowledged and the broker delivers them again (after a restart,
        a lease or ack deadline)."""

    def count_redelivered(self) -> None:
        """Called by a bridge for a message its broker flags as a redelivery."""
        self.redelivered += 1

    def _count_done(self, on_done: Callable[[Delivery], None]) -> Callable[[Delivery], None]:
        def done(delivery: Delivery) -> None:
            if delivery.failures and delivery.undeliverable:
                # nowhere but in this process: the broker must keep it (logged by the
                # bus as dead_letter.undeliverable)
                self.kept_unacked += 1
                return
            self.acked += 1
            on_done(delivery)

        return done

    def encode(self, env: Envelope[Any]) -> bytes:
        """The payload of *env* as bytes, with its topic's codec."""
        return self._bus.codec(env.topic).encode(env.payload)

    def wants(self, topic: str) -> bool:
        """True if *topic* matches one of this attachment's import patterns."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            if len(self._wanted) > 10_000:  # topics are few; a flood of names is not
                self._wanted.clear()
            wanted = self._wanted[topic] = any(match(topic) for match in self._matchers)
        return wanted

    def envelope(
        self,
        topic: str,
        data: bytes,
        *,
        id: str,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        time: float = 0.0,
        attempt: int = 1,
        source: str | None = None,
        on_done: Callable[[Delivery], None] | None = None,
    ) -> Envelope[Any]:
        """Decode *data* for *topic* into an envelope, without publishing it.

        A payload that does not decode, a topic the bus does not know, or one that no
        import pattern matches gives an envelope for the dead-letter topic instead, with
        the reason in its headers and the raw bytes as payload. With *on_done*, the
        envelope is tracked (:class:`~bus.abc.Delivery`) and *on_done* is called once
        when it is done.
        """
        return self._envelope(
            topic, data, id=id, key=key, headers=headers, time=time, attempt=attempt,
            source=source, on_done=on_done,
        )[0]

    def _envelope(
        self,
        topic: str,
        data: bytes,
        *,
        id: str,
        key: str | None,
        headers: dict[str, str] | None,
        time: float,
        attempt: int,
        source: str | None,
        on_done: Callable[[Delivery], None] | None,
    ) -> tuple[Envelope[Any], bool]:
        """The envelope, and True if it is a dead letter."""
        hdrs = dict(headers) if headers else {}
        hdrs[H_ORIGIN] = self.bridge.name
        dead = False
        bus = self._bus
        if bus.tracing is not None:
            bus.tracing.ingest(topic, hdrs, self.bridge.name, id)
        elif TRACEPARENT in hdrs:
            bus._traced = True  # handlers' publishes inherit it from now on (bus/_trace.py)
        payload: Any
        try:
            if not self.wants(topic):
                raise ConfigurationError(
                    f"topic {topic!r} matches no import pattern of bridge "
                    f"{self.bridge.name!r} {list(self.import_patterns)}"
                )
            payload = bus.codec(topic).decode(data)
        except BusError as exc:
            hdrs[H_ERROR] = str(exc)
            hdrs[H_ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            hdrs[H_ORIGINAL_TOPIC] = topic
            dead_letter_headers(hdrs, bus.dead_letter_topic)  # exported to its broker too
            log.warning(
                "message.undeliverable", bridge=self.bridge.name, id=id, topic=topic, key=key,
                dead_letter_topic=bus.dead_letter_topic, error=str(exc),
            )
            topic, payload, dead = bus.dead_letter_topic, bytes(data), True
        delivery = None if on_done is None else Delivery(self._count_done(on_done))
        env = Envelope(
            id=id, topic=topic, payload=payload, key=key, headers=hdrs, time=time,
            attempt=attempt, source=source or self.bridge.name, delivery=delivery,
        )
        return env, dead

    async def deliver(
        self,
        topic: str,
        data: bytes,
        *,
        id: str,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        time: float = 0.0,
        attempt: int = 1,
        source: str | None = None,
        on_done: Callable[[Delivery], None] | None = None,
    ) -> Envelope[Any]:
        """Decode *data* for *topic* (see :meth:`envelope`) and publish it on the bus.

        Returns once every matching mailbox accepted it: it waits while one is full
        (backpressure). Acknowledge the broker when *on_done* fires, not before.
        """
        env, dead = self._envelope(
            topic, data, id=id, key=key, headers=headers, time=time, attempt=attempt,
            source=source, on_done=on_done,
        )
        await self._bus._route(env)
        self.imported += 1
        self.import_dead_lettered += dead
        return env

    def deliver_nowait(
        self,
        topic: str,
        data: bytes,
        *,
        id: str,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        time: float = 0.0,
        attempt: int = 1,
        source: str | None = None,
        on_done: Callable[[Delivery], None] | None = None,
    ) -> Envelope[Any]:
        """Like :meth:`deliver` but never waits: raises :exc:`trio.WouldBlock`, having
        delivered to nobody, when a mailbox is full. The signal to pause the consumer
        (keep polling the broker) and call :meth:`deliver` for this message."""
        env, dead = self._envelope(
            topic, data, id=id, key=key, headers=headers, time=time, attempt=attempt,
            source=source, on_done=on_done,
        )
        self._bus._route_nowait(env)
        self.imported += 1
        self.import_dead_lettered += dead
        return env


class Attachment:
    """A bridge attached to a bus: its export subscription, its port, its ingress task.

    Made by ``bus.attach``. The bus closes it when it exits; :meth:`detach` closes it
    earlier, after which the same bridge (or another of that name) may be attached again.
    """

    def __init__(self, bus: Bus, bridge: Bridge, port: Port, close_timeout: float) -> None:
        self._bus = bus
        self.bridge = bridge
        self.port = port
        self.export: Subscription | None = None
        self.ingress_restarts = 0
        """Times ingress was restarted after it raised."""
        self.exported = 0
        """Records handed to the broker (a record retried counts each time)."""
        self.confirmed = 0
        """Records the broker confirmed."""
        self.export_rejected = 0
        """Records the broker refused for good (dead-lettered)."""
        self.export_failed = 0
        """Records that failed for now (retried with backoff)."""
        self._close_timeout = close_timeout
        self._ingress_scope: trio.CancelScope | None = None
        self._ingress_ended = trio.Event()
        self._closed = False

    def _count_results(self, sent: int, results: ExportResults) -> None:
        if results is None:
            self.confirmed += sent
            return
        for result in results:
            if result is None:
                self.confirmed += 1
            elif isinstance(result, Rejected):
                self.export_rejected += 1
            else:
                self.export_failed += 1

    @property
    def exports(self) -> list[Subscription]:
        return [] if self.export is None else [self.export]

    def stop_intake(self) -> None:
        """Stop consuming from the broker; messages already delivered are still handled
        and acknowledged when done (by :meth:`Bridge.aclose` at the latest)."""
        if self._ingress_scope is not None:
            self._ingress_scope.cancel()

    async def detach(self) -> None:
        """Stop ingress, send what is queued for export, then close the bridge."""
        self.stop_intake()
        if self.export is not None:
            self.export.close()
            await self.export.wait_closed()
        await self.aclose()

    async def aclose(self) -> None:
        """Close the bridge once (shielded, bounded by ``close_timeout``); the bus calls
        this when it exits."""
        if self._closed:
            return
        self._closed = True
        self.stop_intake()
        self._bus._attachments.pop(self.bridge.name, None)
        with trio.move_on_after(self._close_timeout, shield=True) as scope:
            if self._ingress_scope is not None:
                await self._ingress_ended.wait()  # ingest has returned: nothing races aclose
            try:
                await self.bridge.aclose()
            except Exception as exc:
                log.error("bridge.close_failed", bridge=self.bridge.name, error=repr(exc))
        if scope.cancelled_caught:
            log.error("bridge.close_timeout", bridge=self.bridge.name, timeout=self._close_timeout)
        log.debug("bridge.closed", bridge=self.bridge.name, ingress_restarts=self.ingress_restarts)

    async def _ingress(
        self, retry: RetryPolicy, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the bridge's ingest; restart it with backoff whenever it raises.

        A failure before the first ``started()`` propagates to ``attach`` instead.
        """
        bridge, started = self.bridge, _Started(task_status)
        try:
            await self._supervise_ingress(bridge, started, retry)
        finally:
            self._ingress_ended.set()

    async def _supervise_ingress(
        self, bridge: Bridge, started: _Started, retry: RetryPolicy
    ) -> None:
        with trio.CancelScope() as scope:
            self._ingress_scope = scope
            failures = 0
            while True:
                try:
                    await bridge.ingest(self.port, started)
                    return
                except Exception as exc:
                    if not started.done:
                        raise
                    failures += 1
                    self.ingress_restarts += 1
                    delay = retry.delay(failures, self._bus._state.random.random)
                    log.warning(
                        "bridge.ingest_restart", bridge=bridge.name, restart=failures,
                        delay=delay, error=repr(exc),
                    )
                    await trio.sleep(delay)
                    if started.ready_again:  # it had consumed again before failing
                        failures, started.ready_again = 0, False


class _Started:
    """The task status handed to ``ingest``: the first ``started()`` reaches ``attach``;
    after a restart it only records that consuming resumed (resetting the backoff)."""

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status = status
        self.done = False
        self.ready_again = False

    def started(self, value: None = None) -> None:
        if self.done:
            self.ready_again = True
            return
        self.done = True
        self._status.started()


async def attach(
    bus: Bus,
    bridge: Bridge,
    *,
    export: Sequence[str] = (),
    import_: Sequence[str] = (),
    batch: int = 256,
    capacity: int = 4096,
    retry: RetryPolicy = EXPORT_RETRY,
    connect_timeout: float = 10.0,
    close_timeout: float = 10.0,
    concurrency: int = 1,
) -> Attachment:
    name = bridge.name
    if not export and not import_:
        raise ConfigurationError(
            f"attach({name!r}) needs export=[patterns] and/or import_=[patterns]"
        )
    for pattern in (*export, *import_):
        validate_pattern(pattern)
    if name in bus._attachments:
        raise ConfigurationError(
            f"a bridge named {name!r} is already attached to this bus; give each bridge "
            f"its own name= or detach the other first"
        )
    if not connect_timeout > 0:
        raise ConfigurationError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
    if import_ and type(bridge).ingest is Bridge.ingest:
        raise ConfigurationError(f"bridge {name!r} cannot import: it has no ingest()")
    port = Port(bus, bridge, import_)
    att = Attachment(bus, bridge, port, close_timeout)
    bus._attachments[name] = att
    try:
        with trio.fail_after(connect_timeout):
            await bridge.open()
    except trio.TooSlowError:
        bus._attachments.pop(name, None)
        raise BackendUnavailableError(
            f"bridge {name!r} could not reach its broker within {connect_timeout}s; is it "
            f"running and reachable? (raise attach(connect_timeout=) for a slow start)"
        ) from None
    except BaseException:
        bus._attachments.pop(name, None)
        raise
    try:
        if export:

            async def send(envs: Sequence[Envelope[Any]]) -> ExportResults:
                att.exported += len(envs)
                tracing = bus.tracing
                sent: Sequence[Envelope[Any]] = envs
                spans: list[Any] = []
                if tracing is not None:
                    sent, spans = tracing.start_export(envs, name)
                try:
                    results = await bridge.export(sent, port)
                except BaseException as exc:
                    if isinstance(exc, Exception):
                        att.export_failed += len(envs)
                    if tracing is not None:
                        tracing.end_export(spans, exc)
                    raise
                att._count_results(len(envs), results)
                if tracing is not None:
                    tracing.end_export(spans, results)
                return results

            att.export = bus._subscribe_export(
                export, send, name=f"{name}:export", batch=batch, capacity=capacity,
                retry=retry, skip_origin=name, concurrency=concurrency,
            )
        if import_:
            try:
                with trio.fail_after(connect_timeout):
                    await bus._start(att._ingress, retry, name=f"{name}:ingest")
            except trio.TooSlowError:
                raise BackendUnavailableError(
                    f"bridge {name!r} did not start consuming within {connect_timeout}s"
                ) from None
    except BaseException:
        if att.export is not None:
            att.export.close()
        await att.aclose()
        raise
    log.debug("bridge.attached", bridge=name, export=list(export), import_=list(import_))
    return att
