"""The consuming child process of the conformance suite's kill -9 case.

``python -m bus.testing._check_child MODULE:FUNCTION TOPIC GROUP OUTFILE`` imports *TOPIC* through
the bridge ``FUNCTION(name, group)`` makes, and appends each handled order number to
*OUTFILE* with an unbuffered write after its handler finished, so what the file holds was
handled even if the process is killed the next instant. SIGTERM leaves cleanly.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import trio

from .._bus import open_bus
from .._envelope import Envelope
from ._check_bridge import Order


async def _main(spec: str, topic: str, group: str, out: str) -> None:
    module, _, function = spec.partition(":")
    make = getattr(importlib.import_module(module), function)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_bus(name="child", drain_timeout=20) as bus:
            bus.topic(topic, Order)

            async def handle(env: Envelope[Order]) -> None:
                await trio.sleep(0.001)
                os.write(fd, f"{env.payload.n}\n".encode())

            bus.subscribe(topic, handle, concurrency=4)
            await bus.attach(make("child", group), import_=[topic])
            async for _ in signals:
                break
    os.close(fd)


if __name__ == "__main__":
    trio.run(_main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
