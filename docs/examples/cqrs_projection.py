"""CQRS: commands publish events; a projection builds the read model from them.

Seed pattern "CQRS". The read database is a dict; the projection subscribes with a
consumer group from the beginning, so a projection started late (or restarted) still
sees every event once and resumes from its committed offset.
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
    def __init__(self) -> None:
        self.events = BaseEvent(model=User, event_type="memory", topic_prefix="user")

    async def handle_create_user(self, command: CreateUserCommand) -> str:
        user = User(id=command.user_id, name=command.name, email=command.email)
        await self.events.push("created", user, key=user.id)
        return user.id


class UserProjectionBuilder:
    def __init__(self, read_db: dict[str, dict[str, object]]) -> None:
        self.events = BaseEvent(model=User, event_type="memory", topic_prefix="user")
        self.db = read_db

    async def start_projection(self) -> None:
        async def handle_user_created(user: User) -> None:
            self.db[user.id] = {
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "created_at": trio.current_time(),
            }

        await self.events.pull(
            "created", callback=handle_user_created, group="user-projection", from_beginning=True
        )


async def main() -> dict[str, dict[str, object]]:
    commands = UserCommandHandler()
    read_db: dict[str, dict[str, object]] = {}
    # One command before the projection exists: from_beginning catches it up.
    await commands.handle_create_user(CreateUserCommand("1", "Ann", "ann@example.com"))
    await UserProjectionBuilder(read_db).start_projection()
    await commands.handle_create_user(CreateUserCommand("2", "Ben", "ben@example.com"))
    print(f"read model: {sorted(read_db)}")
    return read_db


if __name__ == "__main__":
    trio.run(main)
