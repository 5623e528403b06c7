"""The consuming child of the Redis Streams crash test (not a test module).

``python redis_child.py URL TOPIC GROUP OUTFILE`` subscribes to *TOPIC* as member
``doomed`` of *GROUP* and appends each handled ``n`` to *OUTFILE* with an unbuffered
write once its callback finished, so what the file holds was handled even if the
process is killed the next instant. The callback of message ``HANG_AT`` (optional fifth
argument) never returns, so the child is sure to hold entries it read and did not
acknowledge when the test kills it with SIGKILL mid-stream.
"""

from __future__ import annotations

import os
import sys

import trio

from bridges.redis import RedisStreamsAdapter
from bus.events import EventMessage


async def main(url: str, topic: str, group: str, out: str, hang_at: str = "-1") -> None:
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    adapter = RedisStreamsAdapter(url, consumer="doomed", batch=20, claim_idle=600)

    async def handle(message: EventMessage) -> None:
        if message.data["n"] == int(hang_at):
            await trio.sleep_forever()
        await trio.sleep(0.002)
        os.write(fd, f"{message.data['n']}\n".encode())

    async with trio.open_nursery() as nursery:
        await adapter.subscribe(topic, handle, group=group, from_beginning=True, nursery=nursery)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:6])
