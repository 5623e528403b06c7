"""Event sourcing: a user aggregate whose state is rebuilt from its events.

Seed pattern "Event Sourcing", with the seed's calls: the rebuild's second loop has no
``break`` and ends because ``pull`` stops once the stored events are read, on memory and
on every broker (``follow=True`` would wait for new ones instead).
"""

from __future__ import annotations

import msgspec
import trio

from bus.events import BaseEvent


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class UserEvent(BaseEvent[User]):
    def __init__(self, event_type: str | None = None, prefix: str = "") -> None:
        super().__init__(model=User, event_type=event_type, topic_prefix=f"{prefix}user")


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
        # Cargar estado actual desde eventos
        current_user = await self.rebuild_from_events()

        # Aplicar cambio
        current_user.email = new_email

        await self.events.push("email_updated", current_user, key=self.user_id)
        self.version += 1

        return current_user

    async def rebuild_from_events(self) -> User:
        """Reconstruir estado desde eventos"""
        user = None

        async for event_data in self.events.pull("created"):
            if event_data.id == self.user_id:
                user = event_data
                break
        if user is None:
            raise LookupError(f"no user {self.user_id!r}")

        # Aplicar eventos posteriores
        async for event_data in self.events.pull("email_updated"):
            if event_data.id == self.user_id:
                user.email = event_data.email

        return user


async def main(event_type: str = "memory", prefix: str = "") -> User:
    events = UserEvent(event_type=event_type, prefix=prefix)
    alice = UserAggregate("u1", events)
    bob = UserAggregate("u2", events)
    await alice.create_user("Alice", "alice@old.example")
    await bob.create_user("Bob", "bob@example.com")
    await alice.update_email("alice@new.example")
    await alice.update_email("alice@newest.example")
    # A fresh aggregate knows nothing in memory: everything comes from the log.
    rebuilt = await UserAggregate("u1", events).rebuild_from_events()
    print(f"rebuilt from events: {rebuilt}")
    await events.disconnect()
    return rebuilt


if __name__ == "__main__":
    trio.run(main)
