"""A seed-facade program that breaks out of a Kafka pull and ends at once, with no
``disconnect()`` and no ``async with``: ``python kafka_break_and_exit.py SERVER PREFIX
NAME GROUP`` prints the id of the message in hand and exits. Its consumer has a 60 s
session, so a member it left behind would stay in the group for a minute."""

from __future__ import annotations

import sys

import msgspec
import trio

from bus.events import BaseEvent


class Step(msgspec.Struct):
    id: str


async def main(server: str, prefix: str, name: str, group: str) -> None:
    events = BaseEvent(model=Step, event_type="kafka", topic_prefix=prefix,
                       bootstrap_servers=server,
                       consumer_options={"session_timeout_ms": 60_000})
    async for step in events.pull(name, group=group):
        print(step.id, flush=True)
        break


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:5])
