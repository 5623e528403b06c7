"""Dead-letter queue: events a handler cannot process go to ``dlq.failed`` with the error.

Seed pattern "Dead Letter Queue". The handler retries a failing event a few times,
counting attempts in the ``retry_count`` header (headers are strings on every broker,
so the count is parsed, unlike the seed's ``headers.get("retry_count", 0) + 1``), then
hands it to :class:`DeadLetterHandler`. Consumption goes on with the next event.
Separately, data that does not even decode into the model is dead-lettered by
``BaseEvent`` itself, to the bus's ``bus.dead_letter`` topic with the reason in the
``x-bus-error`` header, as the bus does for every subscriber.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import trio

from bus.events import BaseEvent, EventMessage


class Payment(msgspec.Struct):
    id: str
    amount: float


class DeadLetterHandler:
    """Manejador para eventos fallidos."""

    def __init__(self, event_type: str = "memory", prefix: str = "") -> None:
        self.dlq_events: BaseEvent[dict[str, Any]] = BaseEvent(
            model=dict, event_type=event_type, topic_prefix=f"{prefix}dlq"
        )

    async def handle_failed_event(self, original_message: EventMessage, error: Exception) -> None:
        dlq_message = {
            "original_topic": original_message.topic,
            "original_data": original_message.data,
            "error": repr(error),
            "timestamp": int(time.time()),
            "retry_count": int(original_message.headers.get("retry_count", "0")),
        }
        await self.dlq_events.push("failed", dlq_message, key=original_message.key)


class PaymentProcessor:
    max_attempts = 3

    def __init__(self, event_type: str = "memory", prefix: str = "") -> None:
        self.payments = BaseEvent(
            model=Payment, event_type=event_type, topic_prefix=f"{prefix}payment"
        )
        self.dlq = DeadLetterHandler(event_type, prefix)
        self.processed: list[str] = []

    def process(self, payment: Payment) -> None:
        if payment.amount <= 0:
            raise ValueError(f"invalid amount {payment.amount}")
        self.processed.append(payment.id)

    async def run(self) -> None:
        stream = self.payments.pull("requested")
        async for payment in stream:
            message = stream.message
            assert message is not None
            for attempt in range(1, self.max_attempts + 1):
                try:
                    self.process(payment)
                    break
                except ValueError as exc:
                    if attempt == self.max_attempts:
                        failed = msgspec.structs.replace(
                            message, headers={**message.headers, "retry_count": str(attempt)}
                        )
                        await self.dlq.handle_failed_event(failed, exc)


async def main(
    event_type: str = "memory", prefix: str = ""
) -> tuple[list[str], list[dict[str, Any]]]:
    processor = PaymentProcessor(event_type, prefix)
    for payment in (Payment("p1", 10.0), Payment("p2", -5.0), Payment("p3", 7.5)):
        await processor.payments.push("requested", payment, key=payment.id)
    await processor.run()
    dead = [d async for d in processor.dlq.dlq_events.pull("failed")]
    print(f"processed: {processor.processed}; dead-lettered: {dead}")
    for events in (processor.payments, processor.dlq.dlq_events):
        await events.disconnect()
    return processor.processed, dead


if __name__ == "__main__":
    trio.run(main)
