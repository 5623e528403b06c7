"""The demo shop's messages: one msgspec Struct per topic, and the catalogue.

Every payload knows how to say itself in one short line (``describe``) for the live
trace. Money is in integer cents so totals are exact and repeatable. This module has
no behaviour beyond that: the actors that exchange these live in ``shop``.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CATALOGUE",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "PaymentCaptured",
    "PaymentDeclined",
    "Quote",
    "QuoteRequest",
    "ReleaseStock",
    "ReserveStock",
    "StockReleased",
    "StockReserved",
    "money",
]

CATALOGUE: dict[str, int] = {"widget": 1250, "gadget": 3000, "gizmo": 725, "sprocket": 480}
"""Unit price in cents of every SKU the shop sells."""


def money(cents: int) -> str:
    return f"{cents / 100:.2f}"


class OrderPlaced(msgspec.Struct, frozen=True):
    """``order.placed``: the storefront hands a customer's order to the orders actor."""

    order_id: str
    customer: str
    sku: str
    quantity: int

    def describe(self) -> str:
        return f"{self.customer} orders {self.quantity} x {self.sku}"


class QuoteRequest(msgspec.Struct, frozen=True):
    """``inventory.quote`` (request/reply): orders asks inventory for a price."""

    sku: str
    quantity: int

    def describe(self) -> str:
        return f"price of {self.quantity} x {self.sku}?"


class Quote(msgspec.Struct, frozen=True):
    """The reply to a :class:`QuoteRequest`."""

    sku: str
    unit_cents: int
    in_stock: int

    def describe(self) -> str:
        return f"↩ {money(self.unit_cents)} each, {self.in_stock} in stock"


class ReserveStock(msgspec.Struct, frozen=True):
    """``inventory.reserve``: orders asks inventory to hold stock for an order."""

    order_id: str
    sku: str
    quantity: int
    amount_cents: int

    def describe(self) -> str:
        return f"hold {self.quantity} x {self.sku} (order total {money(self.amount_cents)})"


class StockReserved(msgspec.Struct, frozen=True):
    """``stock.reserved``: the stock is held; payments may charge the customer."""

    order_id: str
    sku: str
    quantity: int
    amount_cents: int
    left: int

    def describe(self) -> str:
        return f"{self.quantity} x {self.sku} held, {self.left} left"


class PaymentCaptured(msgspec.Struct, frozen=True):
    """``payment.captured``: the customer was charged."""

    order_id: str
    amount_cents: int

    def describe(self) -> str:
        return f"{money(self.amount_cents)} charged"


class PaymentDeclined(msgspec.Struct, frozen=True):
    """``payment.declined``: the charge failed; the saga must compensate."""

    order_id: str
    amount_cents: int
    reason: str

    def describe(self) -> str:
        return f"{money(self.amount_cents)} declined: {self.reason}"


class ReleaseStock(msgspec.Struct, frozen=True):
    """``inventory.release``: the compensation, give the held stock back."""

    order_id: str
    reason: str

    def describe(self) -> str:
        return f"compensate: release the held stock ({self.reason})"


class StockReleased(msgspec.Struct, frozen=True):
    """``stock.released``: the held stock is back on the shelf."""

    order_id: str
    sku: str
    quantity: int
    left: int

    def describe(self) -> str:
        return f"{self.quantity} x {self.sku} back on the shelf, {self.left} left"


class OrderConfirmed(msgspec.Struct, frozen=True):
    """``order.confirmed``: the saga's happy ending."""

    order_id: str
    amount_cents: int

    def describe(self) -> str:
        return f"✔ confirmed, {money(self.amount_cents)}"


class OrderCancelled(msgspec.Struct, frozen=True):
    """``order.cancelled``: the saga's other ending, after any compensation."""

    order_id: str
    reason: str

    def describe(self) -> str:
        return f"✘ cancelled: {self.reason}"
