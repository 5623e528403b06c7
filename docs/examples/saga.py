"""Saga with compensation: order → reserve inventory → payment → confirm, or release.

Seed pattern "Saga". ``OrderSaga`` is the seed's, with its models and calls: the
handlers push the seed's step messages (``InventoryReservation``, ``PaymentRequest``,
``OrderConfirmation``, ``InventoryRelease``) on the topics of other models
(``BaseEvent(model=InventoryEvent)`` & co.); ``push`` takes any model that encodes to a
JSON object and readers decode it into their own model. The inventory and payment
services the seed leaves out are two small classes here. On the memory backend a
``push`` returns once every callback of its topic handled it, so one push of
``order.created`` drives the saga to its end; a payment above the limit fails and the
compensation releases the reserved stock.
"""

from __future__ import annotations

import msgspec
import trio

from bus.events import BaseEvent


class OrderEvent(msgspec.Struct):
    id: str
    product_id: str = ""
    quantity: int = 0
    unit_price: float = 0.0


class InventoryEvent(msgspec.Struct):
    order_id: str
    product_id: str = ""
    quantity: int = 0
    total: float = 0.0


class PaymentEvent(msgspec.Struct):
    order_id: str
    amount: float = 0.0
    reason: str = ""


class InventoryReservation(msgspec.Struct):
    order_id: str
    product_id: str
    quantity: int


class PaymentRequest(msgspec.Struct):
    order_id: str
    amount: float


class OrderConfirmation(msgspec.Struct):
    order_id: str


class InventoryRelease(msgspec.Struct):
    order_id: str


class OrderSaga:
    """Saga para procesamiento de órdenes"""

    def __init__(self, event_type: str = "memory") -> None:
        self.order_events = BaseEvent(model=OrderEvent, event_type=event_type, topic_prefix="order")
        self.payment_events = BaseEvent(
            model=PaymentEvent, event_type=event_type, topic_prefix="payment"
        )
        self.inventory_events = BaseEvent(
            model=InventoryEvent, event_type=event_type, topic_prefix="inventory"
        )

    async def start_saga(self) -> None:
        """Iniciar saga de procesamiento"""

        # Manejar orden creada
        async def handle_order_created(order: OrderEvent) -> None:
            # Paso 1: Reservar inventario
            await self.inventory_events.push(
                "reserve_requested",
                InventoryReservation(
                    order_id=order.id, product_id=order.product_id, quantity=order.quantity
                ),
            )

        # Manejar inventario reservado
        async def handle_inventory_reserved(reservation: InventoryEvent) -> None:
            # Paso 2: Procesar pago
            await self.payment_events.push(
                "payment_requested",
                PaymentRequest(order_id=reservation.order_id, amount=reservation.total),
            )

        # Manejar pago procesado
        async def handle_payment_processed(payment: PaymentEvent) -> None:
            # Paso 3: Confirmar orden
            await self.order_events.push("confirmed", OrderConfirmation(order_id=payment.order_id))

        # Manejar fallos para compensación
        async def handle_payment_failed(payment: PaymentEvent) -> None:
            # Compensar: liberar inventario
            await self.inventory_events.push(
                "release_requested", InventoryRelease(order_id=payment.order_id)
            )

        # Configurar suscripciones
        await self.order_events.pull("created", callback=handle_order_created)
        await self.inventory_events.pull("reserved", callback=handle_inventory_reserved)
        await self.payment_events.pull("processed", callback=handle_payment_processed)
        await self.payment_events.pull("failed", callback=handle_payment_failed)


class InventoryService:
    """Reserves and releases stock; prices come from its catalogue."""

    def __init__(self, stock: dict[str, int], prices: dict[str, float]) -> None:
        self.stock, self.prices = stock, prices
        self.events = BaseEvent(model=InventoryEvent, event_type="memory", topic_prefix="inventory")
        self.reserved: dict[str, InventoryEvent] = {}

    async def start(self) -> None:
        async def reserve(request: InventoryEvent) -> None:
            self.stock[request.product_id] -= request.quantity
            request.total = request.quantity * self.prices[request.product_id]
            self.reserved[request.order_id] = request
            await self.events.push("reserved", request, key=request.order_id)

        async def release(request: InventoryEvent) -> None:
            reservation = self.reserved.pop(request.order_id)
            self.stock[reservation.product_id] += reservation.quantity

        await self.events.pull("reserve_requested", callback=reserve)
        await self.events.pull("release_requested", callback=release)


class PaymentService:
    """Charges up to a limit; above it the payment fails."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.events = BaseEvent(model=PaymentEvent, event_type="memory", topic_prefix="payment")

    async def start(self) -> None:
        async def charge(request: PaymentEvent) -> None:
            if request.amount > self.limit:
                request.reason = "limit exceeded"
                await self.events.push("failed", request, key=request.order_id)
            else:
                await self.events.push("processed", request, key=request.order_id)

        await self.events.pull("payment_requested", callback=charge)


async def main() -> tuple[dict[str, str], dict[str, int]]:
    saga = OrderSaga()
    inventory = InventoryService(stock={"book": 10}, prices={"book": 20.0})
    payments = PaymentService(limit=100.0)
    await saga.start_saga()
    await inventory.start()
    await payments.start()

    await saga.order_events.push("created", OrderEvent("o1", "book", 2), key="o1")
    await saga.order_events.push("created", OrderEvent("o2", "book", 6), key="o2")

    # Readers pick the model they decode into: confirmations are OrderConfirmations.
    confirmations = BaseEvent(model=OrderConfirmation, event_type="memory", topic_prefix="order")
    outcome: dict[str, str] = {}
    async for confirmed in confirmations.pull("confirmed"):
        outcome[confirmed.order_id] = "confirmed"
    async for failed in saga.payment_events.pull("failed"):
        outcome[failed.order_id] = f"compensated ({failed.reason})"
    print(f"outcomes: {outcome}; stock: {inventory.stock}")
    return outcome, inventory.stock


if __name__ == "__main__":
    trio.run(main)
