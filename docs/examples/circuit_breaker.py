"""Circuit breaker: stop calling a failing broker, fail fast, try again after a pause.

Seed pattern "Circuit Breaker", as an :class:`~bus.AdapterWrapper`. After
``failure_threshold`` consecutive failures the circuit opens and publishes fail at once
with :class:`CircuitOpenError`; after ``reset_timeout`` seconds of trio's clock one
trial publish is let through (half-open): success closes the circuit, failure opens it
again. The time source is trio's clock, so tests run it under ``MockClock``.
"""

from __future__ import annotations

import msgspec
import trio

from bus import BackendError
from bus.events import AdapterWrapper, BaseEvent, EventAdapter, EventFactory, EventMessage


class CircuitOpenError(BackendError):
    """The circuit is open: the broker is presumed down, nothing was sent."""


class CircuitBreakerEventAdapter(AdapterWrapper):
    """Adaptador con circuit breaker."""

    def __init__(
        self, adapter: EventAdapter, failure_threshold: int = 5, reset_timeout: float = 30.0
    ) -> None:
        super().__init__(adapter)
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.failure_count = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if trio.current_time() - self.opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    async def publish(self, message: EventMessage) -> None:
        if self.state == "open":
            raise CircuitOpenError(f"circuit open, not publishing to {message.topic!r}")
        try:
            await super().publish(message)
        except BackendError:
            self.failure_count += 1
            if self.state == "half-open" or self.failure_count >= self.failure_threshold:
                self.opened_at = trio.current_time()
            raise
        self.failure_count = 0
        self.opened_at = None


class OutageAdapter(AdapterWrapper):
    """An adapter whose broker is down while ``down`` is true."""

    def __init__(self, adapter: EventAdapter) -> None:
        super().__init__(adapter)
        self.down = False
        self.calls = 0

    async def publish(self, message: EventMessage) -> None:
        self.calls += 1
        if self.down:
            raise BackendError("connection refused")
        await super().publish(message)


class Ping(msgspec.Struct):
    n: int


async def main(event_type: str = "memory", prefix: str = "") -> list[str]:
    broker = OutageAdapter(EventFactory.create_adapter(event_type))
    breaker = CircuitBreakerEventAdapter(broker, failure_threshold=2, reset_timeout=1.0)
    events = BaseEvent(model=Ping, topic_prefix=f"{prefix}ping", adapter=breaker)
    log: list[str] = []

    async def attempt(n: int) -> None:
        try:
            await events.push("sent", Ping(n))
            log.append(f"{n}:ok")
        except CircuitOpenError:
            log.append(f"{n}:fast-fail")
        except BackendError:
            log.append(f"{n}:error")

    await attempt(1)
    broker.down = True
    for n in (2, 3, 4, 5):  # two errors open the circuit; then it fails fast
        await attempt(n)
    calls_while_open = broker.calls
    await trio.sleep(1)  # reset timeout: half-open
    await attempt(6)  # the trial fails: open again
    broker.down = False
    await attempt(7)  # still open
    await trio.sleep(1)
    await attempt(8)  # trial succeeds: closed
    await attempt(9)
    log.append(f"calls-while-open:{calls_while_open}")
    print(log)
    await events.disconnect()
    return log


if __name__ == "__main__":
    trio.run(main)
