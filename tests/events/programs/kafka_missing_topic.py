"""A seed-facade program that configures no logging and pushes to a Kafka topic that
does not exist yet: aiokafka warns about it (the broker creates it on the producer's
metadata request and answers "leader not available" first).
``python kafka_missing_topic.py SERVER PREFIX`` prints ``client warned`` once aiokafka
logged a warning (seen by a logger filter, which is not a handler and so changes
nothing of where records go), then ends."""

from __future__ import annotations

import logging
import sys
import threading

import msgspec
import trio

from bus.events import BaseEvent

warned = threading.Event()


class Spy(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            warned.set()
        return True


class User(msgspec.Struct):
    id: str


async def main(server: str, prefix: str) -> None:
    logging.getLogger("aiokafka.cluster").addFilter(Spy())
    events = BaseEvent(model=User, event_type="kafka", topic_prefix=prefix,
                       bootstrap_servers=server)
    async with trio.open_nursery() as nursery:

        async def push() -> None:
            await events.push("missing", User(id="1"))

        nursery.start_soon(push)
        with trio.fail_after(60):
            await trio.to_thread.run_sync(warned.wait)
        print("client warned", flush=True)
        nursery.cancel_scope.cancel()
    await events.disconnect()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:3])
