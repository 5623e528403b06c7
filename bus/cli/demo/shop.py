"""The demo shop: orders, inventory and payments as actors on one in-memory bus.

``simulate()`` is the whole demo as a coroutine: it opens a bus, subscribes the actors,
plays the storefront (one ``order.placed`` every few milliseconds), drains, and returns
a ``Summary``. It reports what happens through an ``emit`` callback, one ``TraceLine``
per notable event (both in ``report``), and never prints; ``_command`` renders them.
It uses only the public API of ``bus`` (and of ``bridges`` for ``--bridge``).

The saga, per order (every message keyed by the order id)::

    order.placed -> orders -(request inventory.quote, reply Quote)-> inventory.reserve
      -> inventory -> stock.reserved -> payments (group of two gateways)
           -> payment.captured -> orders -> order.confirmed
           -> payment.declined -> orders -> inventory.release   (the compensation)
                -> inventory -> stock.released -> orders -> order.cancelled

One order is poison (a negative quantity): inventory rejects ``inventory.reserve`` on
every attempt, the bus dead-letters it, and orders, which watches the dead-letter
topic, cancels it. Every random choice is drawn from the seed up front or from a
per-order generator, so the outcome does not depend on how trio schedules the tasks.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple, Protocol

import trio

from bus import Actor, Bus, Envelope, RetryPolicy, Topic, open_bus
from bus.abc import Bridge

from .messages import (
    CATALOGUE,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    Quote,
    QuoteRequest,
    ReleaseStock,
    ReserveStock,
    StockReleased,
    StockReserved,
)
from .report import DEAD_LETTER_TOPIC, ActorLine, BridgeLine, DeadLetter, Emit, Summary, Trace

__all__ = [
    "SHOP_REQUESTS", "SHOP_SENDS", "SHOP_TOPICS", "open_shop", "plan_orders", "simulate",
]

# The headers the bus puts on a dead letter (docs/design.md, "dead letters").
H_ERROR = "x-bus-error"
H_ORIGINAL_TOPIC = "x-bus-original-topic"
H_ATTEMPTS = "x-bus-attempts"

SHOP_TOPICS = (
    "order.placed", "inventory.quote", "inventory.reserve", "inventory.release",
    "stock.reserved", "stock.released", "payment.captured", "payment.declined",
    "order.confirmed", "order.cancelled",
)
"""Every topic the shop declares; ``--bridge`` mirrors these and the dead-letter topic."""

SHOP_SENDS: dict[str, tuple[str, ...]] = {
    "storefront": ("order.placed",),
    "orders": ("inventory.reserve", "inventory.release", "order.confirmed",
               "order.cancelled"),
    "inventory": ("stock.reserved", "stock.released"),
    "payments": ("payment.captured", "payment.declined"),
}
"""Who publishes what (a bus cannot know): the ``send`` operations of ``bus asyncapi
demo``."""
SHOP_REQUESTS: dict[str, dict[str, type]] = {"orders": {"inventory.quote": Quote}}
"""Who asks what with ``bus.request``, and the reply's type (``bus asyncapi demo``)."""


def named(prefix: str, topic: str) -> str:
    """*topic* under *prefix* (``--prefix P``: ``P.order.placed``); as it is without one."""
    return f"{prefix}.{topic}" if prefix else topic


CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "dennis")
DECLINE_REASONS = ("card declined", "insufficient funds", "fraud check failed")
FLAKY_RATE = 0.1  # share of charges whose first attempt hits a gateway timeout
# No jitter: retry delays (and so the trace) stay the same from run to run.
RETRY = RetryPolicy(attempts=3, base_delay=0.01, jitter=0.0)


class Plan(NamedTuple):
    orders: list[OrderPlaced]
    gaps: list[float]
    """Seconds the storefront waits before placing each order."""


def plan_orders(count: int, seed: int) -> Plan:
    """The storefront's orders for *seed*; exactly one has a negative quantity (poison)."""
    rng = random.Random(seed)
    poison = rng.randrange(count)
    orders, gaps = [], []
    for i in range(count):
        quantity = rng.randint(1, 5)
        orders.append(
            OrderPlaced(
                order_id=f"o-{i + 1:04d}",
                customer=rng.choice(CUSTOMERS),
                sku=rng.choice(sorted(CATALOGUE)),
                quantity=-quantity if i == poison else quantity,
            )
        )
        gaps.append(rng.uniform(0.001, 0.004))
    return Plan(orders, gaps)


class PaymentFate(NamedTuple):
    latency: float
    flaky: bool
    declined: bool
    reason: str


def payment_fate(seed: int, order_id: str, failure_rate: float) -> PaymentFate:
    """What the card network does with this order: fixed by seed and order id alone."""
    rng = random.Random(f"{seed}/{order_id}")
    return PaymentFate(
        latency=rng.uniform(0.002, 0.008),
        flaky=rng.random() < FLAKY_RATE,
        declined=rng.random() < failure_rate,
        reason=rng.choice(DECLINE_REASONS),
    )


class GatewayTimeout(Exception):
    """The simulated card gateway did not answer in time (retried by the bus)."""


class _Describes(Protocol):
    def describe(self) -> str: ...


class Shop:
    """What the actors share: the bus, the declared topics, and the trace."""

    def __init__(self, bus: Bus, trace: Trace, prefix: str = "") -> None:
        self.bus = bus
        self.trace = trace
        self.placed = bus.topic(named(prefix, "order.placed"), OrderPlaced)
        self.quote = bus.topic(named(prefix, "inventory.quote"), QuoteRequest)
        self.reserve = bus.topic(named(prefix, "inventory.reserve"), ReserveStock)
        self.release = bus.topic(named(prefix, "inventory.release"), ReleaseStock)
        self.reserved = bus.topic(named(prefix, "stock.reserved"), StockReserved)
        self.released = bus.topic(named(prefix, "stock.released"), StockReleased)
        self.captured = bus.topic(named(prefix, "payment.captured"), PaymentCaptured)
        self.declined = bus.topic(named(prefix, "payment.declined"), PaymentDeclined)
        self.confirmed = bus.topic(named(prefix, "order.confirmed"), OrderConfirmed)
        self.cancelled = bus.topic(named(prefix, "order.cancelled"), OrderCancelled)

    async def publish(
        self, topic: Topic[Any], payload: _Describes, key: str, tone: str = ""
    ) -> None:
        self.trace(topic.name, key, payload.describe(), tone)
        env = await topic.publish(payload, key=key)
        self.trace.keys[env.id] = key

    async def ask_quote(self, order: OrderPlaced) -> Quote:
        """Request/reply: inventory answers on the bus's reply topic."""
        request = QuoteRequest(order.sku, order.quantity)
        reply = await self.bus.request(
            self.quote.name, request, key=order.order_id, timeout=1.0, reply_type=Quote
        )
        quote = reply.payload
        self.trace(self.quote.name, order.order_id, f"{request.describe()} {quote.describe()}")
        return quote


class Inventory(Actor):
    """Owns the stock: quotes prices (request/reply), holds and releases stock."""

    def __init__(self, shop: Shop, stock: dict[str, int]) -> None:
        self.shop = shop
        self.stock = stock
        self.held: dict[str, tuple[str, int]] = {}
        self.released = 0

    async def handle(self, env: Envelope[Any]) -> None:
        shop = self.shop
        match env.payload:
            case QuoteRequest(sku=sku):
                await shop.bus.reply(env, Quote(sku, CATALOGUE[sku], self.stock[sku]))
            case ReserveStock() as want:
                if want.quantity <= 0:  # poison: fails the same way on every attempt
                    raise ValueError(f"quantity must be positive, got {want.quantity}")
                self.stock[want.sku] -= want.quantity
                self.held[want.order_id] = (want.sku, want.quantity)
                left = self.stock[want.sku]
                await shop.publish(
                    shop.reserved,
                    StockReserved(want.order_id, want.sku, want.quantity, want.amount_cents, left),
                    key=want.order_id,
                )
            case ReleaseStock(order_id=order_id):
                sku, quantity = self.held.pop(order_id)
                self.stock[sku] += quantity
                self.released += 1
                released = StockReleased(order_id, sku, quantity, self.stock[sku])
                await shop.publish(shop.released, released, key=order_id)


class Payments(Actor):
    """One card gateway; two of them compete for ``stock.reserved`` as a group."""

    def __init__(self, shop: Shop, seed: int, failure_rate: float) -> None:
        self.shop = shop
        self.seed = seed
        self.failure_rate = failure_rate

    async def handle(self, env: Envelope[Any]) -> None:
        held: StockReserved = env.payload
        fate = payment_fate(self.seed, held.order_id, self.failure_rate)
        await trio.sleep(fate.latency)  # the gateway's round trip
        if fate.flaky and env.attempt == 1:
            raise GatewayTimeout("card gateway timed out")
        shop, key = self.shop, held.order_id
        if fate.declined:
            declined = PaymentDeclined(key, held.amount_cents, fate.reason)
            await shop.publish(shop.declined, declined, key=key, tone="warn")
        else:
            await shop.publish(shop.captured, PaymentCaptured(key, held.amount_cents), key=key)


class Orders(Actor):
    """Runs each order's saga: price it, reserve, then confirm or compensate and cancel."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.outcomes: dict[str, str] = {}
        self.revenue_cents = 0
        self._why: dict[str, str] = {}  # order id -> why its stock is being released

    async def handle(self, env: Envelope[Any]) -> None:
        shop = self.shop
        if env.topic == shop.bus.dead_letter_topic:
            await self._dead_lettered(env)
            return
        match env.payload:
            case OrderPlaced() as order:
                quote = await shop.ask_quote(order)
                amount = quote.unit_cents * order.quantity
                reserve = ReserveStock(order.order_id, order.sku, order.quantity, amount)
                await shop.publish(shop.reserve, reserve, key=order.order_id)
            case PaymentCaptured(order_id=key, amount_cents=amount):
                self.outcomes[key] = "confirmed"
                self.revenue_cents += amount
                await shop.publish(shop.confirmed, OrderConfirmed(key, amount), key=key, tone="ok")
            case PaymentDeclined(order_id=key, reason=reason):
                self._why[key] = f"payment declined: {reason}"
                await shop.publish(shop.release, ReleaseStock(key, reason), key=key)
            case StockReleased(order_id=key):
                await self._cancel(key, self._why.pop(key))

    async def _dead_lettered(self, env: Envelope[Any]) -> None:
        if env.key is None or env.headers.get(H_ORIGINAL_TOPIC) != self.shop.reserve.name:
            return  # not one of our orders' messages
        await self._cancel(env.key, f"rejected as poison ({env.headers.get(H_ERROR)})")

    async def _cancel(self, key: str, reason: str) -> None:
        self.outcomes[key] = reason
        cancelled = OrderCancelled(key, reason)
        await self.shop.publish(self.shop.cancelled, cancelled, key=key, tone="fail")


async def _mirror(bus: Bus, bridge: Bridge, prefix: str) -> None:
    """Export every shop topic to *bridge*'s broker, made so it keeps them (``bus tail
    URL TOPIC --from-beginning`` shows them afterwards)."""
    from bridges import create_kept_topic

    mirrored = [*(named(prefix, t) for t in SHOP_TOPICS), bus.dead_letter_topic]
    await bus.attach(bridge, export=mirrored)
    async with trio.open_nursery() as nursery:
        for name in mirrored:
            nursery.start_soon(create_kept_topic, bridge, name)


def _bridge_line(bridge: Bridge, url: str, stats: Any, published: dict[str, int]) -> BridgeLine:
    export = stats.actors[f"{bridge.name}:export"]
    return BridgeLine(
        url=url, name=bridge.name, exported=published, confirmed=export.delivered,
        refused=export.dead_lettered, retried=export.retried,
    )


def open_shop(
    bus: Bus, trace: Trace, seed: int, failure_rate: float, stock: dict[str, int],
    prefix: str = "",
) -> tuple[Shop, Inventory, Orders]:
    """Declare the shop's topics on *bus* (under *prefix*, if any) and subscribe its
    actors (what ``bus asyncapi demo`` describes without running the shop)."""
    shop = Shop(bus, trace, prefix)
    inventory = Inventory(shop, dict(stock))
    order_desk = Orders(shop)
    # Per-key ordering: with key = order id, each order's messages stay in order
    # while up to four orders are worked on at once.
    p = prefix
    bus.subscribe(named(p, "inventory.*"), inventory, name="inventory", concurrency=4)
    bus.subscribe(named(p, "order.placed"), order_desk, name="orders", concurrency=4)
    bus.subscribe(named(p, "payment.*"), order_desk, name="orders.payments", concurrency=2)
    bus.subscribe(named(p, "stock.released"), order_desk, name="orders.stock")
    bus.subscribe(bus.dead_letter_topic, order_desk, name="orders.dead-letters")
    for gateway in ("payments-1", "payments-2"):  # competing consumers
        payments = Payments(shop, seed, failure_rate)
        bus.subscribe(named(p, "stock.reserved"), payments, name=gateway, group="payments",
                      concurrency=2)
    return shop, inventory, order_desk


async def simulate(
    orders: int, failure_rate: float, seed: int, emit: Emit,
    bridge: Bridge | None = None, bridge_url: str = "", prefix: str = "",
) -> Summary:
    """Run the shop for *orders* orders and return its :class:`Summary`; with *bridge*,
    every shop topic is also mirrored to that broker (``bridge_url`` names it). A
    *prefix* puts every topic of the shop, its dead-letter topic included, under
    ``f"{prefix}."`` (several demos can then share a broker)."""
    plan = plan_orders(orders, seed)
    stock_before = {sku: 5 * orders for sku in sorted(CATALOGUE)}  # never runs out
    trace = Trace(emit)
    with trace.bus_logs():
        async with open_bus(
            name="shop", retry=RETRY, dead_letter_topic=named(prefix, DEAD_LETTER_TOPIC)
        ) as bus:
            shop, inventory, order_desk = open_shop(
                bus, trace, seed, failure_rate, stock_before, prefix
            )
            if bridge is not None:
                await _mirror(bus, bridge, prefix)
                trace.started = trio.current_time()
            for gap, order in zip(plan.gaps, plan.orders, strict=True):
                await trio.sleep(gap)
                await shop.publish(shop.placed, order, key=order.order_id)
            await bus.drain()
            stats = bus.stats()
            dead = [
                DeadLetter(
                    key=env.key or "-",
                    original_topic=env.headers.get(H_ORIGINAL_TOPIC, "?"),
                    error=env.headers.get(H_ERROR, "?"),
                    attempts=int(env.headers.get(H_ATTEMPTS, "0")),
                )
                for env in bus.retained(bus.dead_letter_topic)
            ]
            elapsed = trio.current_time() - trace.started
            published = {name: t.published for name, t in sorted(stats.topics.items())}
            mirror = None
            if bridge is not None:
                mirror = _bridge_line(bridge, bridge_url, stats, published)
    outcomes = dict(sorted(order_desk.outcomes.items()))
    confirmed = sum(1 for o in outcomes.values() if o == "confirmed")
    poisoned = sum(1 for o in outcomes.values() if o.startswith("rejected as poison"))
    return Summary(
        seed=seed,
        orders=orders,
        failure_rate=failure_rate,
        outcomes=outcomes,
        confirmed=confirmed,
        cancelled=len(outcomes) - confirmed,
        declined=len(outcomes) - confirmed - poisoned,
        dead_lettered=poisoned,
        revenue_cents=order_desk.revenue_cents,
        stock_before=stock_before,
        stock_after=dict(inventory.stock),
        held={key: quantity for key, (_, quantity) in sorted(inventory.held.items())},
        released=inventory.released,
        retries=sum(a.retried for a in stats.actors.values()),
        dead_letters=dead,
        published=published,
        actors={
            name: ActorLine(a.pattern, a.group, a.delivered, a.failed, a.retried, a.dead_lettered)
            for name, a in stats.actors.items()
            if bridge is None or name != f"{bridge.name}:export"
        },
        elapsed=elapsed,
        bridge=mirror,
    )
