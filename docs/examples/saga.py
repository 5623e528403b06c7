"""Saga with compensation: order → reserve inventory → payment → confirm, or release.

Seed pattern "Saga". ``OrderSaga`` is the seed's, with its models and calls: the
handlers push the seed's step messages (``InventoryReservation``, ``PaymentRequest``,
``OrderConfirmation``, ``InventoryRelease``) on the topics of other models
(``BaseEvent(model=InventoryEvent)`` & co.); ``push`` takes any model that encodes to a
JSON object and readers decode it into their own model. The inventory and payment
services the seed leaves out are two small classes here. On the memory backend a
``push`` returns once every callback of its topic handled it, so one push of
``order.created`` drives the saga to its end; on a broker the steps follow after it
returned, and ``main`` waits for the outcomes. A payment above the limit fails and the
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

    def __init__(self, event_type: str = "memory", prefix: str = "") -> None:
        self.order_events = BaseEvent(
            model=OrderEvent, event_type=event_type, topic_prefix=f"{prefix}order"
        )
        self.payment_events = BaseEvent(
            model=PaymentEvent, event_type=event_type, topic_prefix=f"{prefix}payment"
        )
        self.inventory_events = BaseEvent(
            model=InventoryEvent, event_type=event_type, topic_prefix=f"{prefix}inventory"
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

    def __init__(
        self, stock: dict[str, int], prices: dict[str, float], event_type: str = "memory",
        prefix: str = "",
    ) -> None:
        self.stock, self.prices = stock, prices
        self.events = BaseEvent(
            model=InventoryEvent, event_type=event_type, topic_prefix=f"{prefix}inventory"
        )
        self.reserved: dict[str, InventoryEvent] = {}
        self._released = trio.Event()

    async def start(self) -> None:
        async def reserve(request: InventoryEvent) -> None:
            self.stock[request.product_id] -= request.quantity
            request.total = request.quantity * self.prices[request.product_id]
            self.reserved[request.order_id] = request
            await self.events.push("reserved", request, key=request.order_id)

        async def release(request: InventoryEvent) -> None:
            reservation = self.reserved.pop(request.order_id)
            self.stock[reservation.product_id] += reservation.quantity
            self._released.set()
            self._released = trio.Event()

        await self.events.pull("reserve_requested", callback=reserve)
        await self.events.pull("release_requested", callback=release)

    async def wait_released(self, order_id: str) -> None:
        """Wait until the reservation of *order_id* was released (a broker delivers the
        compensation after the push that caused it returned)."""
        while order_id in self.reserved:
            await self._released.wait()


class PaymentService:
    """Charges up to a limit; above it the payment fails."""

    def __init__(self, limit: float, event_type: str = "memory", prefix: str = "") -> None:
        self.limit = limit
        self.events = BaseEvent(
            model=PaymentEvent, event_type=event_type, topic_prefix=f"{prefix}payment"
        )

    async def start(self) -> None:
        async def charge(request: PaymentEvent) -> None:
            if request.amount > self.limit:
                request.reason = "limit exceeded"
                await self.events.push("failed", request, key=request.order_id)
            else:
                await self.events.push("processed", request, key=request.order_id)

        await self.events.pull("payment_requested", callback=charge)


class SagaReport:
    """Records how each order ended. Its own consumer group (``report``): the saga's
    handlers read these topics in the default group, and members of one group share
    the messages; on a broker they arrive after the pushes returned, hence ``wait``."""

    def __init__(self, event_type: str, prefix: str) -> None:
        # Readers pick the model they decode into: confirmations are OrderConfirmations.
        self.confirmations = BaseEvent(
            model=OrderConfirmation, event_type=event_type, topic_prefix=f"{prefix}order"
        )
        self.failures = BaseEvent(
            model=PaymentEvent, event_type=event_type, topic_prefix=f"{prefix}payment"
        )
        self.outcome: dict[str, str] = {}
        self._changed = trio.Event()

    async def start(self) -> None:
        async def confirmed(confirmation: OrderConfirmation) -> None:
            self._record(confirmation.order_id, "confirmed")

        async def failed(payment: PaymentEvent) -> None:
            self._record(payment.order_id, f"compensated ({payment.reason})")

        await self.confirmations.pull("confirmed", callback=confirmed, group="report")
        await self.failures.pull("failed", callback=failed, group="report")

    def _record(self, order_id: str, outcome: str) -> None:
        self.outcome[order_id] = outcome
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, orders: int) -> None:
        while len(self.outcome) < orders:
            await self._changed.wait()


async def main(
    event_type: str = "memory", prefix: str = ""
) -> tuple[dict[str, str], dict[str, int]]:
    saga = OrderSaga(event_type, prefix)
    inventory = InventoryService({"book": 10}, {"book": 20.0}, event_type, prefix)
    payments = PaymentService(100.0, event_type, prefix)
    await saga.start_saga()
    await inventory.start()
    await payments.start()
    report = SagaReport(event_type, prefix)
    await report.start()

    await saga.order_events.push("created", OrderEvent("o1", "book", 2), key="o1")
    await saga.order_events.push("created", OrderEvent("o2", "book", 6), key="o2")

    await inventory.wait_released("o2")
    await report.wait(2)
    outcome = report.outcome
    print(f"outcomes: {outcome}; stock: {inventory.stock}")
    for events in (saga.order_events, saga.payment_events, saga.inventory_events,
                   inventory.events, payments.events, report.confirmations,
                   report.failures):
        await events.disconnect()
    return outcome, inventory.stock


if __name__ == "__main__":
    trio.run(main)
