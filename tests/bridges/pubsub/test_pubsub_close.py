"""Closing a Pub/Sub consumer, with a fake client (no broker): what bounds it, and that
a pull still on the wire is waited for and what it returns is handed back, not lost."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from bridges.pubsub import PubSubBridge
from bus import Envelope, open_bus


class FakeCalls:
    """The bridge's client calls (``PubSubCalls``); its first Pull blocks until the test
    releases it, then returns one message, as a service would mid-close."""

    def __init__(self) -> None:
        self.pull_waits: list[float] = []
        self.in_pull = threading.Event()
        self.release = threading.Event()
        self.pulling = 0
        self.acked: list[str] = []
        self.deadlines: list[tuple[list[str], int]] = []
        self.closed_while_pulling: bool | None = None

    def start(self) -> None:
        pass

    def probe(self, timeout: float) -> None:
        pass

    def create_topic(self, tid: str, labels: Any = None) -> None:
        pass

    def list_topics(self) -> list[str]:
        return ["orders"]

    def create_subscription(self, sid: str, tid: str, deadline: int, ordering: bool) -> None:
        pass

    def pull(self, sid: str, max_messages: int, wait: float) -> list[Any]:
        self.pull_waits.append(wait)
        if self.in_pull.is_set():
            return []
        self.pulling += 1
        try:
            self.in_pull.set()
            assert self.release.wait(30)
            return [SimpleNamespace(ack_id="ack-1")]
        finally:
            self.pulling -= 1

    def acknowledge(self, sid: str, ack_ids: list[str]) -> None:
        self.acked += ack_ids

    def modify_ack_deadline(self, sid: str, ack_ids: list[str], seconds: int) -> None:
        self.deadlines.append((list(ack_ids), seconds))

    def close(self) -> None:
        self.closed_while_pulling = self.pulling > 0


async def test_close_waits_for_the_pull_and_hands_its_messages_back() -> None:
    fake = FakeCalls()
    bridge = PubSubBridge("p", name="c", emulator_host="127.0.0.1:9")
    bridge._client = fake  # type: ignore[assignment]
    got: list[Envelope[Any]] = []
    async with open_bus() as bus:
        bus.subscribe("orders", got.append)
        att = await bus.attach(bridge, import_=["orders"])
        await trio.to_thread.run_sync(fake.in_pull.wait)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(att.detach)
            await trio.testing.wait_all_tasks_blocked()  # detach waits for the pull
            assert fake.closed_while_pulling is None
            fake.release.set()
    # A close lasts at most one pull: the bridge asks for 2 s, which the emulator holds
    # 1 s when nothing comes (it answers a second before the deadline) and Google Cloud
    # at most 2 s. It was 5 s (a 4 s hold on the emulator, every close and SIGTERM).
    assert fake.pull_waits and set(fake.pull_waits) == {2.0}
    # the pull was not cut under the emulator (it mishandles cancelled calls), and what
    # it returned went back to the service at once (deadline 0), not acked, not handled
    assert fake.closed_while_pulling is False
    assert fake.deadlines == [(["ack-1"], 0)]
    assert fake.acked == [] and got == []
