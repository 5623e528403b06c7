"""Metrics wrapper: count publishes, consumptions, errors and publish latency.

Seed pattern "Monitoreo y Métricas", as an :class:`~bus.AdapterWrapper` so it works
under any ``BaseEvent`` (``adapter=``) and for callbacks as well as iterators. Latency is
wall-clock time (``time.perf_counter``): trio's clock does not move while a publish
completes without waiting, so measured on it every latency would read 0.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio

from bus.events import AdapterWrapper, BaseEvent, EventFactory, EventMessage, MessageCallback


class MetricsEventAdapter(AdapterWrapper):
    """Wrapper para recopilar métricas de eventos."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = {"published": 0, "consumed": 0, "errors": 0}
        self.latency_sum = 0.0
        self.latency_count = 0

    async def publish(self, message: EventMessage) -> None:
        start = time.perf_counter()
        try:
            await super().publish(message)
            self.metrics["published"] += 1
        except Exception:
            self.metrics["errors"] += 1
            raise
        finally:
            self.latency_sum += time.perf_counter() - start
            self.latency_count += 1

    async def subscribe(self, topic: str, callback: MessageCallback, **kwargs: Any) -> None:
        async def counting(message: EventMessage) -> None:
            self.metrics["consumed"] += 1
            await callback(message)

        await super().subscribe(topic, counting, **kwargs)

    async def _count(self, messages: AsyncIterator[EventMessage]) -> AsyncIterator[EventMessage]:
        async for message in messages:
            self.metrics["consumed"] += 1
            yield message

    def consume(self, topic: str, **kwargs: Any) -> AsyncIterator[EventMessage]:
        return self._count(super().consume(topic, **kwargs))

    def get_metrics(self) -> dict[str, float]:
        average = self.latency_sum / self.latency_count if self.latency_count else 0.0
        return {
            "published_total": self.metrics["published"],
            "consumed_total": self.metrics["consumed"],
            "errors_total": self.metrics["errors"],
            "average_latency_seconds": average,
        }


class Click(msgspec.Struct):
    page: str


async def main(event_type: str = "memory", prefix: str = "") -> dict[str, float]:
    base_adapter = EventFactory.create_adapter(event_type)
    metrics_adapter = MetricsEventAdapter(base_adapter)
    clicks = BaseEvent(model=Click, topic_prefix=f"{prefix}click", adapter=metrics_adapter)
    dashboard: list[str] = []
    shown = trio.Event()

    def show(click: Click) -> None:
        dashboard.append(click.page)
        if len(dashboard) == 3:
            shown.set()

    # Its own group: on a broker the default group is shared, so the callback and the
    # pull below would compete for the clicks instead of each getting all of them.
    await clicks.pull("recorded", callback=show, group="dashboard")
    for page in ("home", "pricing", "docs"):
        await clicks.push("recorded", Click(page))
    async for _ in clicks.pull("recorded"):
        pass
    await shown.wait()  # on memory at once; a broker delivers the callback's in its time
    try:
        await metrics_adapter.publish(EventMessage(topic="bad topic", data={}))
    except ValueError:
        pass  # counted as an error
    result = metrics_adapter.get_metrics()
    print(result)
    await clicks.disconnect()
    return result


if __name__ == "__main__":
    trio.run(main)
