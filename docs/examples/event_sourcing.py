"""Event sourcing: a user aggregate whose state is rebuilt from its events.

Seed pattern "Event Sourcing", on the memory backend. The rebuild reads each topic
with ``follow=False`` so the loop ends at the end of the log instead of waiting for
live events (the seed's loop without ``break`` would wait forever here).
"""

from __future__ import annotations

import msgspec
import trio

from bus import BaseEvent


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class UserEvent(BaseEvent[User]):
    def __init__(self, event_type: str | None = None) -> None:
        super().__init__(model=User, event_type=event_type, topic_prefix="user")


class UserAggregate:
    """Agregado de usuario con Event Sourcing."""

    def __init__(self, user_id: str, events: UserEvent) -> None:
        self.user_id = user_id
        self.events = events
        self.version = 0

    async def create_user(self, name: str, email: str) -> User:
        user = User(id=self.user_id, name=name, email=email)
        await self.events.push("created", user, key=self.user_id)
        self.version += 1
        return user

    async def update_email(self, new_email: str) -> User:
        current = await self.rebuild_from_events()
        updated = msgspec.structs.replace(current, email=new_email)
        await self.events.push("email_updated", updated, key=self.user_id)
        self.version += 1
        return updated

    async def rebuild_from_events(self) -> User:
        user: User | None = None
        async for created in self.events.pull("created", follow=False):
            if created.id == self.user_id:
                user = created
                break
        if user is None:
            raise LookupError(f"no user {self.user_id!r}")
        async for changed in self.events.pull("email_updated", follow=False):
            if changed.id == self.user_id:
                user = msgspec.structs.replace(user, email=changed.email)
        return user


async def main() -> User:
    events = UserEvent(event_type="memory")
    alice = UserAggregate("u1", events)
    bob = UserAggregate("u2", events)
    await alice.create_user("Alice", "alice@old.example")
    await bob.create_user("Bob", "bob@example.com")
    await alice.update_email("alice@new.example")
    await alice.update_email("alice@newest.example")
    # A fresh aggregate knows nothing in memory: everything comes from the log.
    rebuilt = await UserAggregate("u1", events).rebuild_from_events()
    print(f"rebuilt from events: {rebuilt}")
    return rebuilt


if __name__ == "__main__":
    trio.run(main)
