"""Outbox: save the entity and its event in one transaction, publish them later.

Seed pattern "Outbox". The database is an in-memory stand-in with all-or-nothing
transactions; ``process_outbox`` publishes pending events and marks them published
only after the publish returned, so a broker failure leaves them pending for the next
run (at-least-once; consumers deduplicate by the event id carried in the headers).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from bus import BackendError
from bus.events import AdapterWrapper, BaseEvent, EventAdapter, EventFactory, EventMessage


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class Database:
    """Tables of dict rows; a transaction applies all of its writes or none."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {"users": [], "outbox": []}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
        working = copy.deepcopy(self.tables)
        yield working
        await trio.lowlevel.checkpoint()
        self.tables = working  # commit only if the block did not raise


class FlakyAdapter(AdapterWrapper):
    """Fails the first ``failures`` publishes, like a broker that is briefly down."""

    def __init__(self, adapter: EventAdapter, failures: int) -> None:
        super().__init__(adapter)
        self.failures = failures

    async def publish(self, message: EventMessage) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BackendError("broker unavailable")
        await super().publish(message)


class OutboxEventPublisher:
    def __init__(self, db: Database, events: BaseEvent[User]) -> None:
        self.db = db
        self.events = events

    async def publish_user_created(self, user: User) -> None:
        async with self.db.transaction() as tables:
            tables["users"].append(msgspec.to_builtins(user))
            tables["outbox"].append(
                {
                    "id": str(uuid.uuid4()),
                    "aggregate_id": user.id,
                    "event_type": "created",
                    "event_data": msgspec.json.encode(user).decode(),
                    "published": False,
                }
            )

    async def process_outbox(self) -> int:
        """Publish pending events; return how many are still pending."""
        for event in self.db.tables["outbox"]:
            if event["published"]:
                continue
            try:
                user = msgspec.json.decode(event["event_data"], type=User)
                await self.events.push(
                    event["event_type"],
                    user,
                    key=event["aggregate_id"],
                    headers={"event-id": event["id"]},
                )
            except BackendError as exc:
                print(f"error publishing event {event['id']}: {exc}; will retry")
                continue
            event["published"] = True
        return sum(not e["published"] for e in self.db.tables["outbox"])


async def main(event_type: str = "memory", prefix: str = "") -> tuple[list[int], list[str]]:
    db = Database()
    flaky = FlakyAdapter(EventFactory.create_adapter(event_type), failures=1)
    events = BaseEvent(model=User, topic_prefix=f"{prefix}user", adapter=flaky)
    publisher = OutboxEventPublisher(db, events)
    await publisher.publish_user_created(User("1", "Ann", "ann@example.com"))
    await publisher.publish_user_created(User("2", "Ben", "ben@example.com"))
    pending = [await publisher.process_outbox(), await publisher.process_outbox()]
    published = [u.id async for u in events.pull("created")]
    print(f"pending after each run: {pending}; published: {published}")
    await events.disconnect()
    return pending, published


if __name__ == "__main__":
    trio.run(main)
