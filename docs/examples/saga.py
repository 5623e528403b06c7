"""Saga with compensation: order → reserve inventory → payment → confirm, or release.

Seed pattern "Saga". The four ``await ...pull(name, callback=...)`` calls register and
return; every step then runs inline in the publisher's task, so one ``push`` of
``order.created`` drives the whole saga before it returns. A payment above the
customer's limit fails and the compensation releases the reserved stock.
"""

from __future__ import annotations

import msgspec
import trio

from bus import BaseEvent


class OrderEvent(msgspec.Struct):
    order_id: str
    product_id: str = ""
    quantity: int = 0
    unit_price: float = 0.0
    status: str = "created"


class InventoryEvent(msgspec.Struct):
    order_id: str
    product_id: str = ""
    quantity: int = 0
    total: float = 0.0


class PaymentEvent(msgspec.Struct):
    order_id: str
    amount: float
    reason: str = ""


class OrderSaga:
    """Saga para procesamiento de órdenes."""

    def __init__(self, stock: dict[str, int], payment_limit: float) -> None:
        self.order_events = BaseEvent(model=OrderEvent, event_type="memory", topic_prefix="order")
        self.payment_events = BaseEvent(
            model=PaymentEvent, event_type="memory", topic_prefix="payment"
        )
        self.inventory_events = BaseEvent(
            model=InventoryEvent, event_type="memory", topic_prefix="inventory"
        )
        self.stock = stock
        self.payment_limit = payment_limit
        self.reserved: dict[str, InventoryEvent] = {}
        self.outcome: dict[str, str] = {}

    async def start_saga(self) -> None:
        async def handle_order_created(order: OrderEvent) -> None:
            await self.inventory_events.push(
                "reserve_requested",
                InventoryEvent(
                    order.order_id,
                    order.product_id,
                    order.quantity,
                    order.quantity * order.unit_price,
                ),
            )

        async def handle_reserve_requested(request: InventoryEvent) -> None:
            # The inventory service: reserve and report.
            self.stock[request.product_id] -= request.quantity
            self.reserved[request.order_id] = request
            await self.inventory_events.push("reserved", request, key=request.order_id)

        async def handle_inventory_reserved(reservation: InventoryEvent) -> None:
            # The payment service: charge or refuse.
            payment = PaymentEvent(reservation.order_id, reservation.total)
            if reservation.total > self.payment_limit:
                payment.reason = "limit exceeded"
                await self.payment_events.push("failed", payment, key=payment.order_id)
            else:
                await self.payment_events.push("processed", payment, key=payment.order_id)

        async def handle_payment_processed(payment: PaymentEvent) -> None:
            await self.order_events.push(
                "confirmed", OrderEvent(payment.order_id, status="confirmed")
            )
            self.outcome[payment.order_id] = "confirmed"

        async def handle_payment_failed(payment: PaymentEvent) -> None:
            # Compensation: give the stock back.
            reservation = self.reserved.pop(payment.order_id)
            self.stock[reservation.product_id] += reservation.quantity
            await self.inventory_events.push("release_requested", reservation)
            self.outcome[payment.order_id] = f"compensated ({payment.reason})"

        await self.order_events.pull("created", callback=handle_order_created)
        await self.inventory_events.pull("reserve_requested", callback=handle_reserve_requested)
        await self.inventory_events.pull("reserved", callback=handle_inventory_reserved)
        await self.payment_events.pull("processed", callback=handle_payment_processed)
        await self.payment_events.pull("failed", callback=handle_payment_failed)


async def main() -> tuple[dict[str, str], dict[str, int]]:
    saga = OrderSaga(stock={"book": 10}, payment_limit=100.0)
    await saga.start_saga()
    await saga.order_events.push("created", OrderEvent("o1", "book", 2, 20.0), key="o1")
    await saga.order_events.push("created", OrderEvent("o2", "book", 5, 30.0), key="o2")
    print(f"outcomes: {saga.outcome}; stock: {saga.stock}")
    return saga.outcome, saga.stock


if __name__ == "__main__":
    trio.run(main)
