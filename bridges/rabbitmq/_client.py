"""The asyncio side of the RabbitMQ bridge: aio-pika calls, one coroutine per crossing.

Every ``async def`` method of :class:`AmqpClient` runs on the runtime's asyncio loop (the
bridge calls it through ``Runtime.run``); the trio side never touches aio-pika objects
except to hand back the channel of a delivery when it acknowledges it. Three channels
on one robust connection, so that an error on one (a 404 from an admin call, say) does
not disturb the others:

- publish: publisher confirms (by default), ``mandatory`` publishes of a whole batch at
  once, gathered; a returned (unroutable) message is reported per record;
- consume: ``basic.qos(prefetch)`` bounds what the broker pushes before acks; messages
  wait in a deque until the trio side takes them in batches;
- admin: short-lived channels for declare/bind/unbind/delete and the health probe.

aio-pika's robust connection reconnects after a broker restart and re-declares the
exchange, the queue, its bindings, the qos and the consumer. Deliveries of the old
channel that were not acknowledged are redelivered by the broker; their late acks are
skipped (the channel they belong to is closed). Exceptions are translated by the caller
(:func:`~bridges.rabbitmq._errors.translate`); this module raises aio-pika's own.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from bus.abc import Rejected

from ._wire import Outgoing

if TYPE_CHECKING:
    import aio_pika.abc

__all__ = ["AmqpClient", "Consumed"]

Consumed = tuple[Any, "aio_pika.abc.AbstractIncomingMessage"]
"""A delivery as the trio side sees it: (the aiormq channel it came on, the message)."""


class AmqpClient:
    """One robust AMQP connection with its publish, consume and admin channels."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str,
        publisher_confirms: bool,
        delivery_mode: int,
        mandatory: bool,
        connect_timeout: float,
    ) -> None:
        self._url = url
        self.exchange_name = exchange
        self._confirms = publisher_confirms
        self._delivery_mode = delivery_mode
        self._mandatory = mandatory
        self._connect_timeout = connect_timeout
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractChannel | None = None
        self._consume_channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._buffer: deque[Consumed] = deque()
        self._waiter: asyncio.Future[None] | None = None

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        import aio_pika
        from aio_pika.connection import make_url

        # What aio_pika.connect_robust does, with the connection kept from the start: a
        # connect that fails or is cancelled half-way (another bridge of the process
        # failed to open) leaves a reconnection task behind, which close() must stop,
        # or asyncio reports it destroyed while pending when the loop closes.
        connection = aio_pika.RobustConnection(make_url(self._url))
        self._connection = connection
        await connection.connect(timeout=self._connect_timeout)
        channel = await connection.channel(publisher_confirms=self._confirms)
        await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._publish_channel = channel

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()  # also stops a reconnection task left by connect()

    # -- egress -----------------------------------------------------------------------

    async def publish(self, records: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish *records* concurrently; one result per record (None = confirmed).

        Straight on the channel aio-pika keeps under its robust one, with the AMQP
        properties built here: what ``Exchange.publish(Message(...))`` does, without
        the two intermediate objects per message.
        """
        import aiormq.abc
        import aiormq.exceptions
        from pamqp.commands import Basic

        channel = self._publish_channel
        assert channel is not None, "publish before connect"
        if channel.is_closed:  # as aio-pika's Exchange.publish: fail now, not wait
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        underlay = await channel.get_underlay_channel()
        publish = underlay.basic_publish
        name, mode, mandatory = self.exchange_name, self._delivery_mode, self._mandatory
        utc = _dt.UTC
        sends = [
            publish(
                rec.body, exchange=name, routing_key=rec.routing_key, mandatory=mandatory,
                properties=Basic.Properties(
                    content_type=rec.content_type, delivery_mode=mode,
                    headers=cast(Any, rec.headers), message_id=rec.message_id,
                    timestamp=_dt.datetime.fromtimestamp(rec.timestamp, utc)
                    if rec.timestamp else None,
                ),
            )
            for rec in records
        ]
        answers = await asyncio.gather(*sends, return_exceptions=True)
        results: list[BaseException | None] = []
        for rec, answer in zip(records, answers, strict=True):
            if isinstance(answer, aiormq.abc.DeliveredMessage):  # Basic.Return
                frame = answer.delivery
                results.append(Rejected(
                    f"unroutable: exchange {self.exchange_name!r} has no queue bound for "
                    f"routing key {rec.routing_key!r} "
                    f"({getattr(frame, 'reply_code', '?')} {getattr(frame, 'reply_text', '')})"
                ))
            elif isinstance(answer, BaseException):
                results.append(answer)
            else:
                results.append(None)
        return results

    # -- ingress ----------------------------------------------------------------------

    async def start_consuming(
        self, queue: str, patterns: Sequence[str], prefetch: int, existing: bool = False
    ) -> None:
        """Declare *queue* (durable), bind it to *patterns*, consume it (manual acks).
        *existing*: a passive declare of the queue as it is, nothing bound."""
        import aio_pika

        if self._consumer_tag is not None:
            return  # ingress restarted by the bus: the consumer is still there
        assert self._connection is not None, "consume before connect"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if existing:
            q = await channel.declare_queue(queue, passive=True)
        else:
            q = await channel.declare_queue(queue, durable=True)
        for pattern in patterns:
            await q.bind(exchange, routing_key=pattern)
        self._consume_channel, self._queue = channel, q
        self._consumer_tag = await q.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # Runs as a task per message (aio-pika's doing): keep it to an append and a wake.
        self._buffer.append((message.channel, message))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self, limit: int) -> list[Consumed]:
        """Wait for at least one delivery; return up to *limit* of them, in order."""
        buffer = self._buffer
        while not buffer:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(buffer) < limit:
            # Deliveries arriving together reach the buffer one loop pass apart (aio-pika
            # runs a task per message): let the rest of a burst in, one crossing for it.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        n = min(limit, len(buffer))
        return [buffer.popleft() for _ in range(n)]

    async def ack(self, frames: Sequence[tuple[Any, Sequence[tuple[int, bool]]]]) -> int:
        """Send ``basic.ack`` frames per channel; skip channels that closed meanwhile
        (the broker redelivers their deliveries). Returns how many frames were sent."""
        sent = 0
        for channel, acks in frames:
            if channel.is_closed:
                continue
            last = len(acks) - 1
            try:
                for i, (tag, multiple) in enumerate(acks):
                    # Only the last frame waits for the socket to drain: one flush a batch.
                    await channel.basic_ack(tag, multiple=multiple, wait=i == last)
                    sent += 1
            except Exception:
                if not channel.is_closed:
                    raise
        return sent

    async def stop_consuming(self) -> None:
        """Cancel the consumer; what it holds unacknowledged goes back to the queue when
        the channel closes."""
        queue, tag = self._queue, self._consumer_tag
        self._consumer_tag = None
        if queue is not None and tag is not None and not queue.channel.is_closed:
            await queue.cancel(tag)
        channel, self._consume_channel = self._consume_channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()
        self._buffer.clear()

    # -- admin ------------------------------------------------------------------------

    async def bind(self, queue: str, routing_key: str) -> None:
        import aio_pika

        assert self._connection is not None
        async with self._connection.channel() as channel:
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            q = await channel.declare_queue(queue, durable=True)
            await q.bind(exchange, routing_key=routing_key)

    async def unbind(self, queue: str, routing_key: str) -> bool:
        """Remove the binding; False if the queue does not exist."""
        import aio_pika

        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            q = await channel.declare_queue(queue, passive=True)
            await q.unbind(self.exchange_name, routing_key=routing_key)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False  # the broker closed the channel with 404: nothing to unbind
        finally:
            if not channel.is_closed:
                await channel.close()
        return True

    async def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of *queue*, by a passive declare."""
        if self._connection is None:  # lag() racing open or close: no answer, not a bug
            raise ConnectionError("not connected")
        async with self._connection.channel() as channel:
            q = await channel.declare_queue(queue, passive=True)
            ok = q.declaration_result
            return int(ok.message_count or 0), int(ok.consumer_count or 0)

    async def delete_queue(self, queue: str) -> None:
        assert self._connection is not None
        async with self._connection.channel() as channel:
            await channel.queue_delete(queue)

    async def delete_exchange(self) -> None:
        assert self._connection is not None
        async with self._connection.channel() as channel:
            await channel.exchange_delete(self.exchange_name)

    async def probe(self) -> None:
        """Open and close a channel: a round trip to the broker."""
        if self._connection is None or self._connection.is_closed:  # health() racing close
            raise ConnectionError("connection closed")
        async with self._connection.channel():
            pass
