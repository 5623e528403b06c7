"""subscribe(batch=N): an application's handler gets lists, and answers per envelope."""

from __future__ import annotations

from typing import Any

from bus import Envelope, RetryPolicy, open_bus
from bus.abc import Rejected


async def test_a_batch_handler_gets_lists_and_answers_for_each_envelope(
    autojump_clock: Any,
) -> None:
    calls: list[list[int]] = []

    def handle(envs: list[Envelope[int]]) -> list[BaseException | None]:
        calls.append([e.payload for e in envs])
        results: list[BaseException | None] = []
        for env in envs:
            if env.payload == 2:
                results.append(Rejected("two is refused"))  # dead-lettered at once
            elif env.payload == 3 and env.attempt < 3:
                results.append(ValueError("three fails twice"))  # tried again alone
            else:
                results.append(None)
        return results

    async with open_bus() as bus:
        bus.topic("n", int)
        sub = bus.subscribe("n", handle, batch=8, retry=RetryPolicy(attempts=5))
        await bus.publish_batch("n", [1, 2, 3, 4])
        await bus.drain()
        stats = bus.stats().actors[sub.name]
        dead = [(e.payload["payload"] if isinstance(e.payload, dict) else e.payload,
                 e.headers["x-bus-error"]) for e in bus.retained("bus.dead_letter")]
    assert calls == [[1, 2, 3, 4], [3], [3]]
    assert len(dead) == 1 and dead[0][1] == "two is refused"
    assert (stats.delivered, stats.dead_lettered) == (3, 1)
