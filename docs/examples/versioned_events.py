"""Versioned events: v1 and v2 producers on one topic, a consumer that upcasts v1.

Seed pattern "Versionado de Eventos", with the seed's call: the v1 ``UserEvent`` pushes
a ``UserEventV2`` (``push`` takes any model that encodes to a JSON object) and marks it
with an ``event_version`` header. The consumer reads the topic as the newest model:
fields added in v2 have defaults, so v1 data decodes into ``UserEventV2`` as is; the
header tells which version each event was written with.
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
    def __init__(self, event_type: str = "memory", prefix: str = "") -> None:
        super().__init__(model=User, event_type=event_type, topic_prefix=f"{prefix}user")


class UserEventV2(msgspec.Struct):
    """Versión 2 del evento de usuario."""

    id: str
    name: str
    email: str
    phone: str | None = None  # nuevo campo
    version: str = "2.0"


async def main(event_type: str = "memory", prefix: str = "") -> list[tuple[str, UserEventV2]]:
    user_events = UserEvent(event_type, prefix)
    await user_events.push("created", User("1", "Old", "old@example.com"))
    # Publicar con versión
    user_v2 = UserEventV2("2", "New", "new@example.com", phone="+34 600")
    await user_events.push("created", user_v2, headers={"event_version": "2.0"})

    v2 = BaseEvent(model=UserEventV2, event_type=event_type, topic_prefix=f"{prefix}user")

    received: list[tuple[str, UserEventV2]] = []
    stream = v2.pull("created")
    async for user in stream:
        assert stream.message is not None
        written_as = stream.message.headers.get("event_version", "1.0")
        if written_as == "1.0":
            user = msgspec.structs.replace(user, version="1.0")  # upcast, remember origin
        received.append((written_as, user))
    print(received)
    for events in (user_events, v2):
        await events.disconnect()
    return received


if __name__ == "__main__":
    trio.run(main)
