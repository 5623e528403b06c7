"""Every way out of ``open_bus``: what is reported, what is unwrapped, what runs.

Issue 6 items 1-5: all-or-nothing publish across targets, undelivered messages reported
on every exit, KeyboardInterrupt/SystemExit unwrapped, ``Actor.on_stop`` on every way
out, and the drain timeout firing when the only message is in a handler's hands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from bus import Actor, Envelope, MailboxFullError, RetryPolicy, open_bus


async def test_publish_is_all_or_nothing_when_a_mailbox_refuses() -> None:
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    async with open_bus() as bus:
        bus.topic("t", int)
        release, in_hand = trio.Event(), trio.Event()

        async def slow(env: Envelope[int]) -> None:
            in_hand.set()
            await release.wait()
            got["b"].append(env.payload)

        bus.subscribe("t", lambda env: got["a"].append(env.payload), name="a")
        bus.subscribe("t", slow, name="b", capacity=1, overflow="error")
        bus.subscribe("t", lambda env: got["c"].append(env.payload), name="c")
        await bus.publish("t", 1)
        with trio.fail_after(5):
            await in_hand.wait()  # b holds 1 in its handler
        await bus.publish("t", 2)  # fills b's mailbox
        with pytest.raises(MailboxFullError, match="no subscriber got the message"):
            await bus.publish("t", 3)
        stats = bus.stats()
        release.set()
    assert got == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    assert stats.actors["b"].rejected == 1
    assert stats.topics["t"].published == 2


async def test_an_outside_cancel_reports_what_was_queued_per_subscriber() -> None:
    with capture_logs() as logs:
        with trio.move_on_after(0.05):
            async with open_bus() as bus:
                bus.topic("t", int)
                gate = trio.Event()

                async def stuck(env: Envelope[int]) -> None:
                    await gate.wait()

                bus.subscribe("t", stuck, name="stuck", capacity=1000)
                bus.subscribe("t", lambda env: None, name="quick")
                for i in range(96):
                    await bus.publish("t", i)
                await trio.sleep_forever()
    # the one in stuck's hands went back to its mailbox when cancelled: 96 in all
    assert dict(bus.undelivered) == {"stuck": 96}
    [report] = [e for e in logs if e["event"] == "bus.undelivered"]
    assert report["messages"] == 96 and report["subscribers"] == {"stuck": 96}


async def test_a_clean_exit_leaves_nothing_undelivered() -> None:
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", lambda env: None)
        await bus.publish("t", 1)
    assert dict(bus.undelivered) == {}


async def test_drain_timeout_fires_when_the_only_message_is_in_hand(autojump_clock: Any) -> None:
    async with open_bus(drain_timeout=1) as bus:
        bus.topic("t", int)

        async def forever(env: Envelope[int]) -> None:
            await trio.sleep_forever()

        bus.subscribe("t", forever, name="forever")
        await bus.publish("t", 1)
        await trio.testing.wait_all_tasks_blocked()  # 1 in forever's hands
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(1)
    assert dict(bus.undelivered) == {"forever": 1}


async def test_drain_timeout_ends_a_handler_that_fails_forever(autojump_clock: Any) -> None:
    async with open_bus(drain_timeout=5) as bus:
        bus.topic("t", int)

        def boom(env: Envelope[int]) -> None:
            raise ValueError("always")

        bus.subscribe("t", boom, name="boom", retry=RetryPolicy(attempts=None, base_delay=0.5))
        await bus.publish("t", 1)
        start = trio.current_time()
    assert trio.current_time() - start == pytest.approx(5)
    assert dict(bus.undelivered) == {"boom": 1}
    assert bus.stats().actors["boom"].dead_lettered == 0


async def test_keyboard_interrupt_from_a_handler_is_not_wrapped_in_groups() -> None:
    def interrupt(env: Envelope[int]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", interrupt)
            await bus.publish("t", 1)
            await trio.sleep(1)


def test_sys_exit_in_a_handler_exits_with_its_code() -> None:
    code = textwrap.dedent(
        """
        import sys, trio
        from bus import open_bus

        async def main():
            async with open_bus() as bus:
                bus.topic("t", int)
                bus.subscribe("t", lambda env: sys.exit(2))
                await bus.publish("t", 1)
                await trio.sleep(5)

        trio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 2, done.stderr.decode()[-2000:]


class Tracked(Actor):
    def __init__(self, *, block: bool = False, crash: bool = False) -> None:
        self.block, self.crash = block, crash
        self.events: list[str] = []
        self.busy = trio.Event()

    async def on_start(self) -> None:
        self.events.append("start")

    async def handle(self, env: Envelope[Any]) -> None:
        if self.crash:
            raise KeyboardInterrupt
        if self.block:
            self.busy.set()
            await trio.sleep_forever()

    async def on_stop(self) -> None:
        await trio.sleep(0.01)  # shielded: it may await even when cancelled
        self.events.append("stop")


async def test_on_stop_runs_on_a_normal_close() -> None:
    actor = Tracked()
    async with open_bus() as bus:
        bus.topic("t", int)
        bus.subscribe("t", actor)
        await bus.publish("t", 1)
    assert actor.events == ["start", "stop"]


async def test_on_stop_runs_when_busy_and_the_bus_is_cancelled() -> None:
    actor = Tracked(block=True)
    with trio.CancelScope() as scope:
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", actor)
            await bus.publish("t", 1)
            with trio.fail_after(5):
                await actor.busy.wait()
            scope.cancel()
            await trio.sleep_forever()
    assert actor.events == ["start", "stop"]


async def test_on_stop_runs_when_the_body_raises_while_the_actor_is_busy() -> None:
    actor = Tracked(block=True)
    with pytest.raises(ZeroDivisionError):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", actor)
            await bus.publish("t", 1)
            with trio.fail_after(5):
                await actor.busy.wait()
            1 / 0  # noqa: B018
    assert actor.events == ["start", "stop"]


async def test_on_stop_runs_when_a_handler_interrupts() -> None:
    actor = Tracked(crash=True)
    with pytest.raises(KeyboardInterrupt):
        async with open_bus() as bus:
            bus.topic("t", int)
            bus.subscribe("t", actor)
            await bus.publish("t", 1)
            await trio.sleep(1)
    assert actor.events == ["start", "stop"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_reports_undelivered_messages() -> None:
    code = textwrap.dedent(
        """
        import os, signal, trio
        from bus import open_bus

        async def main():
            try:
                async with open_bus() as bus:
                    bus.topic("t", int)
                    gate = trio.Event()
                    async def stuck(env):
                        await gate.wait()
                    bus.subscribe("t", stuck, name="stuck")
                    for i in range(7):
                        await bus.publish("t", i)
                    os.kill(os.getpid(), signal.SIGINT)
                    await trio.sleep(5)
            except KeyboardInterrupt:
                print("undelivered", dict(bus.undelivered))

        trio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        # A parent that ignores SIGINT (a background job of a non-interactive shell, as a
        # CI runner may be) passes that on, and Python then raises no KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )
    assert "undelivered {'stuck': 7}" in done.stdout.decode(), done.stderr.decode()[-2000:]
    assert done.returncode == 0
