"""CQRS: commands publish events; a projection builds the read model from them.

Seed pattern "CQRS". The read database is a dict; the projection subscribes from the
beginning (on a broker in the backend's default consumer group, which resumes from its
committed position), so a projection started late still sees every event once. The read
model is eventually consistent: on a broker the projection runs after the command's
push returned, and ``wait_for`` waits for it.
"""

from __future__ import annotations

import msgspec
import trio

from bus.events import BaseEvent


class User(msgspec.Struct):
    id: str
    name: str
    email: str


class CreateUserCommand(msgspec.Struct):
    user_id: str
    name: str
    email: str


class UserCommandHandler:
    def __init__(self, event_type: str = "memory", prefix: str = "") -> None:
        self.events = BaseEvent(model=User, event_type=event_type, topic_prefix=f"{prefix}user")

    async def handle_create_user(self, command: CreateUserCommand) -> str:
        user = User(id=command.user_id, name=command.name, email=command.email)
        await self.events.push("created", user, key=user.id)
        return user.id


class UserProjectionBuilder:
    def __init__(
        self, read_db: dict[str, dict[str, object]], event_type: str = "memory", prefix: str = ""
    ) -> None:
        self.events = BaseEvent(model=User, event_type=event_type, topic_prefix=f"{prefix}user")
        self.db = read_db
        self._changed = trio.Event()

    async def start_projection(self) -> None:
        async def handle_user_created(user: User) -> None:
            self.db[user.id] = {
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "created_at": trio.current_time(),
            }
            self._changed.set()
            self._changed = trio.Event()

        # The backend's default consumer group: on every broker it keeps the topic's
        # messages since the first push (a RabbitMQ queue or a Pub/Sub subscription made
        # only now would start empty), so from_beginning catches the projection up.
        await self.events.pull("created", callback=handle_user_created, from_beginning=True)


    async def wait_for(self, user_id: str) -> None:
        """The read model is eventually consistent: wait until it shows *user_id* (on
        memory a push returns once the projection ran; a broker delivers later)."""
        while user_id not in self.db:
            await self._changed.wait()


async def main(event_type: str = "memory", prefix: str = "") -> dict[str, dict[str, object]]:
    commands = UserCommandHandler(event_type, prefix)
    read_db: dict[str, dict[str, object]] = {}
    # One command before the projection exists: from_beginning catches it up.
    await commands.handle_create_user(CreateUserCommand("1", "Ann", "ann@example.com"))
    projection = UserProjectionBuilder(read_db, event_type, prefix)
    await projection.start_projection()
    await commands.handle_create_user(CreateUserCommand("2", "Ben", "ben@example.com"))
    for user_id in ("1", "2"):
        await projection.wait_for(user_id)
    print(f"read model: {sorted(read_db)}")
    for events in (commands.events, projection.events):
        await events.disconnect()
    return read_db


if __name__ == "__main__":
    trio.run(main)
