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
from ._errors import BusError, ConfigurationError, Rejected
from ._log import get_logger
from ._routing import Pattern
from ._trace import TRACEPARENT

if TYPE_CHECKING:  # only to annotate Port's constructor; neither imports this module
    from ._route import Router
    from ._state import BusState

__all__ = ["Bridge", "ExportResults", "Features", "Port", "Rejected"]

log = get_logger("bus")  # silent unless the app configures logging (bus/_log.py)


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
    starting: str | None = None
    """While :meth:`ingest` starts: what it waits for ("joining group 'g'"), named by
    ``attach`` when ``connect_timeout`` runs out before ``task_status.started()``."""

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

    def __init__(
        self, state: BusState, router: Router, bridge: Bridge, import_patterns: Sequence[str]
    ) -> None:
        self._state = state
        self._router = router
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

    def __repr__(self) -> str:
        return (
            f"<Port of {self.bridge.name!r} import={list(self.import_patterns)}: "
            f"imported={self.imported} acked={self.acked}>"
        )
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
        return self._router.topics.spec(env.topic).codec.encode(env.payload)

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
        state = self._state
        if state.tracing is not None:
            state.tracing.ingest(topic, hdrs, self.bridge.name, id)
        elif TRACEPARENT in hdrs:
            state.traced = True  # handlers' publishes inherit it from now on (bus/_trace.py)
        payload: Any
        try:
            if not self.wants(topic):
                raise ConfigurationError(
                    f"topic {topic!r} matches no import pattern of bridge "
                    f"{self.bridge.name!r} {list(self.import_patterns)}"
                )
            payload = self._router.topics.spec(topic).codec.decode(data)
        except BusError as exc:
            hdrs[H_ERROR] = str(exc)
            hdrs[H_ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            hdrs[H_ORIGINAL_TOPIC] = topic
            dead_letter_headers(hdrs, state.dead_letter_topic)  # exported to its broker too
            log.warning(
                "message.undeliverable", bridge=self.bridge.name, id=id, topic=topic, key=key,
                dead_letter_topic=state.dead_letter_topic, error=str(exc),
            )
            topic, payload, dead = state.dead_letter_topic, bytes(data), True
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
        await self._router.route(env)
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
        self._router.route_nowait(env)
        self.imported += 1
        self.import_dead_lettered += dead
        return env
