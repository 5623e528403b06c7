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
reason, and consumption goes on.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._envelope import H_ERROR, H_ERROR_TYPE, H_ORIGIN, H_ORIGINAL_TOPIC, Envelope
from ._errors import BusError, ConfigurationError
from ._policy import RetryPolicy

if TYPE_CHECKING:
    from ._actor import Subscription
    from ._bus import Bus

__all__ = ["Attachment", "Bridge", "Port"]

EXPORT_RETRY = RetryPolicy(attempts=None, base_delay=0.2, max_delay=10.0)


class Bridge(abc.ABC):
    """A broker attachment. Subclasses set :attr:`name` and implement the two methods."""

    name: str = "bridge"
    """Identifies the bridge in headers, logs and stats; unique per bus."""

    @abc.abstractmethod
    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> None:
        """Send *batch* to the broker; return once the broker confirmed all of it.

        Raises :class:`~bus.BackendError` (or any error) to have the bus retry the batch.
        ``port.encode(env)`` gives the payload bytes.
        """

    @abc.abstractmethod
    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        """Consume the import topics from the broker until cancelled.

        Call ``task_status.started()`` once consuming, and ``await port.deliver(...)``
        for each message before acknowledging it.
        """


class Port:
    """What a bridge may do with the bus: encode for export, deliver on import."""

    def __init__(self, bus: Bus, bridge: Bridge, import_patterns: Sequence[str]) -> None:
        self._bus = bus
        self.bridge = bridge
        self.import_patterns = tuple(import_patterns)

    def encode(self, env: Envelope[Any]) -> bytes:
        """The payload of *env* as bytes, with its topic's codec."""
        return self._bus.codec(env.topic).encode(env.payload)

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
    ) -> Envelope[Any]:
        """Decode *data* for *topic* and publish it on the bus; returns the envelope.

        A payload that does not decode, or a topic the bus does not know, goes to the
        dead-letter topic with the reason in its headers (raw bytes as payload); this
        returns normally then, so the bridge acknowledges and consumption goes on.
        """
        hdrs = dict(headers or {})
        hdrs[H_ORIGIN] = self.bridge.name
        bus = self._bus
        try:
            payload = bus.codec(topic).decode(data)
        except BusError as exc:
            hdrs[H_ERROR] = str(exc)
            hdrs[H_ERROR_TYPE] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            hdrs[H_ORIGINAL_TOPIC] = topic
            topic, payload = bus.dead_letter_topic, bytes(data)
        env: Envelope[Any] = Envelope(
            id=id, topic=topic, payload=payload, key=key, headers=hdrs, time=time,
            attempt=attempt, source=source or self.bridge.name,
        )
        await bus._publish_envelope(env)
        return env


class Attachment:
    """A bridge attached to a bus: its export subscriptions and its port."""

    def __init__(self, bridge: Bridge, port: Port, exports: list[Subscription]) -> None:
        self.bridge = bridge
        self.port = port
        self.exports = exports

    def detach(self) -> None:
        """Stop exporting (queued batches are still sent). Ingress ends with the bus."""
        for sub in self.exports:
            sub.close()


async def attach(
    bus: Bus,
    bridge: Bridge,
    *,
    export: Sequence[str] = (),
    import_: Sequence[str] = (),
    batch: int = 256,
    capacity: int = 4096,
    retry: RetryPolicy = EXPORT_RETRY,
) -> Attachment:
    if not export and not import_:
        raise ConfigurationError(
            f"attach({bridge.name!r}) needs export=[patterns] and/or import_=[patterns]"
        )
    if any(sub.skip_origin == bridge.name for sub in bus.subscriptions()):
        raise ConfigurationError(f"a bridge named {bridge.name!r} is already attached")
    port = Port(bus, bridge, import_)

    async def send(envs: Sequence[Envelope[Any]]) -> None:
        await bridge.export(envs, port)

    exports = [
        bus.subscribe(
            pattern, send, name=f"{bridge.name}:export:{pattern}", batch=batch,
            capacity=capacity, retry=retry, skip_origin=bridge.name,
        )
        for pattern in export
    ]
    if import_:
        await bus._start(bridge.ingest, port, name=f"{bridge.name}:ingest")
    return Attachment(bridge, port, exports)
