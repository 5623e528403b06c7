"""The RabbitMQ bridge: the bus's topics on an AMQP 0-9-1 topic exchange (aio-pika).

Mapping (the whole of it):

- one durable **topic exchange** (default ``"trio-bus"``); the routing key is the bus
  topic. The bus's patterns are AMQP's (``*`` one word, ``#`` zero or more), so import
  patterns are bound to the queue as they are;
- **egress**: a batch is published in one crossing to the asyncio loop, all records at
  once, each ``mandatory`` and persistent (``delivery_mode=2``) with publisher confirms;
  a record the broker returns as unroutable (no queue bound for its routing key) is
  :class:`~bus.abc.Rejected` and dead-lettered by the bus; other failures are transient
  and retried by the bus with backoff;
- **ingress**: one durable queue per bridge, ``f"{exchange}.{group or name}"``: bridges
  with the same ``group`` share it (competing consumers), different groups each get
  everything. ``prefetch`` bounds the unacknowledged messages, so memory; a delivery
  is acknowledged only when the bus reports it done; acks of a batch go in one crossing
  (``multiple=True`` over the done prefix, see :mod:`._ingress`);
- **reconnects**: aio-pika's robust connection; what was unacknowledged when the
  connection dropped is redelivered (at-least-once: the bus may see it twice);
- **CloudEvents** binary mode with ``ce-`` headers (:mod:`._wire`).

What this module does not do: AMQP 0-9-1 has no way to list exchanges, queues or
bindings (RabbitMQ's management HTTP API does, a plugin the harness does not enable), so
:meth:`RabbitMQBridge.list_topics` lists what this bridge bound itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from bus import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    Envelope,
)
from bus.abc import Bridge, Features, Port, Rejected

from .._close import close_step
from .._common import call, not_open, require
from .._runtime import Runtime, RuntimeKind, start_runtime
from ._client import AmqpClient
from ._errors import describe, is_client_error, translate
from ._ingress import Ingress
from ._wire import Outgoing, encode, mask_url

__all__ = ["FEATURES", "RabbitMQBridge"]

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""RabbitMQ's default ``max_message_size`` (3.8+). A larger publish would close the
publish channel (PRECONDITION_FAILED) and fail every record in flight on it, so the
bridge rejects it before sending."""

CLOSE_STEP_TIMEOUT = 2.0
"""Bound of each step of closing (final acks and consumer cancel; connection close)."""

FEATURES = Features(
    ordered=True,
    persistent=True,
    consumer_groups=True,
    redelivery=True,
    headers=True,
    patterns=True,
    max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
    restartable=True,
    notes=(
        "Order holds per queue with one consumer; a redelivery after a reconnect can "
        "arrive after later messages. persistent requires delivery_mode=2 (default)."
    ),
)


class RabbitMQBridge(Bridge):
    """Mirror bus topics to and from a RabbitMQ topic exchange.

    ``url`` is an AMQP URL (``amqp://user:password@host:5672/vhost``; the password never
    appears in reprs, logs or errors). ``publisher_confirms`` and ``delivery_mode`` are
    the seed's options (on and persistent by default); ``mandatory`` makes unroutable
    records dead letters instead of silent drops (needs confirms to be reported).
    ``prefetch`` bounds unacknowledged deliveries; ``runtime`` picks how aio-pika runs
    (``"thread"``: an asyncio loop in a thread of ours; ``"trio-asyncio"``).

    ``existing_queue=True`` reads ``queue`` as it is: it must exist (a passive declare,
    :class:`~bus.ConfigurationError` naming it if not), and nothing is declared or bound,
    so its arguments and bindings stay the operator's (import patterns only filter).
    ``acknowledge=False`` never acknowledges a delivery: what the bridge read goes back
    to the queue when it closes (a peek; at most ``prefetch`` messages are read).
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@localhost:5672/",
        *,
        name: str = "rabbitmq",
        exchange: str = "trio-bus",
        group: str | None = None,
        queue: str | None = None,
        existing_queue: bool = False,
        acknowledge: bool = True,
        publisher_confirms: bool = True,
        delivery_mode: int = 2,
        mandatory: bool = True,
        prefetch: int = 512,
        connect_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        runtime: RuntimeKind = "thread",
    ) -> None:
        require("aio_pika", "rabbitmq", "the RabbitMQ bridge", "aio-pika")
        if delivery_mode not in (1, 2):
            raise ConfigurationError(
                f"delivery_mode must be 1 (transient) or 2 (persistent), not {delivery_mode!r}"
            )
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be at least 1, not {prefetch!r}")
        self.name = name
        self.exchange = exchange
        self.queue = queue or f"{exchange}.{group or name}"
        if existing_queue and not queue:
            raise ConfigurationError("existing_queue=True needs the queue's name (queue=...)")
        self._existing_queue = existing_queue
        self.features = dataclasses.replace(
            FEATURES, persistent=delivery_mode == 2, max_message_bytes=max_message_bytes
        )
        self._url = url
        self._secret = _password(url)
        self._prefetch = prefetch
        self._max_bytes = max_message_bytes
        self._runtime_kind = runtime
        self._client = AmqpClient(
            url, exchange=exchange, publisher_confirms=publisher_confirms,
            delivery_mode=delivery_mode, mandatory=mandatory, connect_timeout=connect_timeout,
        )
        self._rt: Runtime | None = None
        self._ingress = Ingress(self._call, prefetch, acknowledge=acknowledge)
        self._bound: set[str] = set()
        self._importing = False

    def __repr__(self) -> str:
        return (
            f"RabbitMQBridge(name={self.name!r}, url={mask_url(self._url)!r}, "
            f"exchange={self.exchange!r}, queue={self.queue!r})"
        )

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._rt is not None:
            raise ConfigurationError(f"bridge {self.name!r} is open already")
        self._rt = await start_runtime(self._runtime_kind)
        try:
            await self._call(self._client.connect)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._shutdown()
            if isinstance(exc, BackendUnavailableError) and exc.__cause__ is not None:
                cause = exc.__cause__
                raise BackendUnavailableError(
                    f"RabbitMQ bridge {self.name!r} cannot reach {mask_url(self._url)} "
                    f"({describe(cause, self._secret)})"
                ) from cause
            raise

    async def aclose(self) -> None:
        if self._rt is not None:
            await self._shutdown()

    async def _shutdown(self) -> None:
        # Each step bounded: with the broker down, a close handshake or basic.cancel
        # would wait for a reply that never comes; the runtime then cancels what is left.
        # Whatever was not acknowledged is redelivered by the broker.
        rt = self._rt
        assert rt is not None
        try:
            await close_step(self._stop_consuming(), bridge=self.name,
                             step="stopping consumers", within=CLOSE_STEP_TIMEOUT)
            await close_step(self._call(self._client.close), bridge=self.name,
                             step="closing the connection", within=CLOSE_STEP_TIMEOUT)
        finally:
            self._rt = None
            self._ingress.trackers.clear()
            await rt.aclose()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run *fn* on the asyncio loop; translate the client's exceptions."""
        rt = self._rt
        return await call(
            None if rt is None else rt.run, fn, *args, is_client_error=is_client_error,
            translate=self._translate, closed=partial(not_open, self.name),
        )

    def _translate(self, exc: BaseException) -> BaseException:
        return translate(exc, self.name, (self._secret,))

    # -- egress -----------------------------------------------------------------------

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None] | None:
        results: list[BaseException | None] = [None] * len(batch)
        records: list[Outgoing] = []
        slots: list[int] = []
        limit = self._max_bytes
        for i, env in enumerate(batch):
            body = port.encode(env)
            if len(body) > limit:
                results[i] = Rejected(
                    f"message of {len(body)} bytes exceeds RabbitMQ's max message size "
                    f"({limit} bytes)"
                )
                continue
            records.append(encode(env, body))
            slots.append(i)
        if records:
            answers = await self._call(self._client.publish, records)
            for i, answer in zip(slots, answers, strict=True):
                results[i] = self._result(answer)
        return None if all(r is None for r in results) else results

    def _result(self, answer: BaseException | None) -> BaseException | None:
        if answer is None or isinstance(answer, Rejected):
            return answer
        if isinstance(answer, ValueError):  # aiormq: routing key over 255 bytes...
            return Rejected(f"refused by the AMQP client: {answer}")
        if is_client_error(answer):  # transient: the bus retries this record
            return translate(answer, self.name, (self._secret,))
        return answer

    # -- ingress ----------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        client = self._client
        if self._existing_queue:
            await self.queue_counts()  # ConfigurationError now if the queue does not exist
            await self._call(client.start_consuming, self.queue, (), self._prefetch, True)
        else:
            await self._call(
                client.start_consuming, self.queue, port.import_patterns, self._prefetch
            )
            self._bound.update(port.import_patterns)
        self._importing = True
        await self._ingress.run(client, port, task_status)

    # -- admin ------------------------------------------------------------------------

    async def create_topic(self, name: str, **options: Any) -> None:
        """Declare the exchange and bind a durable queue (``queue=``, default this
        bridge's) to routing key *name*, so its messages are kept until consumed."""
        queue = _queue_option(options, self.queue)
        await self._call(self._client.bind, queue, name)
        if queue == self.queue:
            self._bound.add(name)

    async def delete_topic(self, name: str, **options: Any) -> None:
        """Unbind routing key *name* from the queue (``queue=``, default this bridge's).
        Messages already queued stay; a missing queue or binding is not an error."""
        queue = _queue_option(options, self.queue)
        await self._call(self._client.unbind, queue, name)
        if queue == self.queue:
            self._bound.discard(name)

    async def _stop_consuming(self) -> None:
        await self._ingress.flush()
        await self._call(self._client.stop_consuming)

    async def list_topics(self) -> list[str]:
        """The routing keys and patterns this bridge bound to its queue (import patterns
        and :meth:`create_topic`), sorted. AMQP 0-9-1 cannot list the broker's bindings."""
        return sorted(self._bound)

    async def health(self) -> bool:
        """True if a channel can be opened on the connection within 5 seconds."""
        if self._rt is None:
            return False
        with trio.move_on_after(5):
            try:
                await self._call(self._client.probe)
            except BackendError:
                return False
            return True
        return False

    async def lag(self) -> int | None:
        """Messages ready in this bridge's queue (not yet delivered to it), once it
        imports; None otherwise or when the broker does not answer within 5 seconds."""
        if self._rt is None or not self._importing:
            return None
        with trio.move_on_after(5):
            try:
                ready, _ = await self.queue_counts()
            except BackendError:
                return None
            return ready
        return None

    # -- for tests and tools ----------------------------------------------------------

    async def queue_counts(self, queue: str | None = None) -> tuple[int, int]:
        """``(ready messages, consumers)`` of *queue* (default this bridge's): messages
        delivered but not acknowledged are not counted as ready.
        :class:`~bus.ConfigurationError` if *queue* does not exist."""
        name = queue or self.queue
        try:
            return await self._call(self._client.queue_counts, name)
        except BackendError as exc:
            if "NOT_FOUND" not in str(exc):
                raise
            raise ConfigurationError(
                f"RabbitMQ has no queue {name!r} on {mask_url(self._url)}: check its name "
                f"(it is read as it is, never declared)"
            ) from None

    async def create_kept_topic(self, name: str, group: str) -> None:
        """Keep topic *name*'s messages for *group* from now on, even while nobody reads:
        a durable queue (:func:`kept_queue`) bound to it (``bus topics create``)."""
        await self.create_topic(name, queue=kept_queue(name, self.exchange, group))

    async def delete_kept_topic(self, name: str, group: str) -> None:
        """Undo :meth:`create_kept_topic`: unbind and delete the kept queue."""
        queue = kept_queue(name, self.exchange, group)
        await self.delete_topic(name, queue=queue)
        await self.delete_queue(queue)

    async def delete_queue(self, queue: str | None = None) -> None:
        """Delete *queue* (default this bridge's) and its messages."""
        await self._call(self._client.delete_queue, queue or self.queue)

    async def delete_exchange(self) -> None:
        """Delete this bridge's exchange and its bindings."""
        await self._call(self._client.delete_exchange)


def kept_queue(topic: str, exchange: str, group: str) -> str:
    """The durable queue that keeps *topic*'s messages for *group*."""
    return f"{exchange}.{group}.{topic}"


def _queue_option(options: dict[str, Any], default: str) -> str:
    queue = options.pop("queue", None) or default
    if options:
        raise ConfigurationError(f"unknown RabbitMQ topic option(s): {sorted(options)}")
    return str(queue)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


