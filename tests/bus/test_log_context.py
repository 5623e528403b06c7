"""Failures and lifecycle changes log who and what: subscriber, topic, message id, bridge.

Checked with ``structlog.testing.capture_logs`` on a handler that fails (retried, then
dead-lettered), a bridge whose broker is down (export retried), a record that does not
decode (dead-lettered on import), an ingest that fails (restarted) and an actor that
crashes outside its handler (restarted, naming the message it held).
"""

from __future__ import annotations

from typing import Any

import msgspec
import trio
from structlog.testing import capture_logs

from bus import Envelope, RetryPolicy, Supervision, open_bus
from bus.abc import Bridge, Port
from bus.testing import LoopbackBridge, LoopbackBroker, LoopbackRecord

WITHIN = 5.0


async def until(check: Any, what: str) -> None:
    """Wait until *check()* holds (a state other tasks reach: a log line, a counter), at
    most ``WITHIN`` seconds, failing with *what* did not happen."""
    with trio.move_on_after(WITHIN):
        while not check():  # noqa: ASYNC110 - state of other tasks: poll it
            await trio.sleep(0.001)
        return
    raise AssertionError(f"{what} did not happen within {WITHIN} s")

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001)


class Order(msgspec.Struct):
    n: int


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_a_failing_handler_logs_subscriber_topic_id_and_key() -> None:
    def boom(env: Envelope[Order]) -> None:
        raise ValueError("no stock")

    with capture_logs() as logs:
        async with open_bus(retry=FAST) as bus:
            bus.topic("order.created", Order)
            bus.subscribe("order.*", boom, name="stock")
            sent = await bus.publish("order.created", Order(1), key="c1")
    (retry,) = events(logs, "handler.retry")
    (dead,) = events(logs, "message.dead_lettered")
    for event in (retry, dead):
        assert event["subscriber"] == "stock"
        assert (event["topic"], event["id"], event["key"]) == ("order.created", sent.id, "c1")
        assert "no stock" in event["error"]
        assert "bridge" not in event  # not a bridge's
    (start,) = [e for e in events(logs, "actor.start") if e["subscriber"] == "stock"]
    (stop,) = [e for e in events(logs, "actor.stop") if e["subscriber"] == "stock"]
    assert start["pattern"] == "order.*"
    assert (stop["delivered"], stop["dead_lettered"]) == (0, 1)


async def test_a_bridge_that_cannot_export_logs_bridge_topic_and_id() -> None:
    broker = LoopbackBroker()
    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.topic("order.created", Order)
            await bus.attach(
                LoopbackBridge(broker, "lb"), export=["order.*"],
                retry=RetryPolicy(attempts=None, base_delay=0.001, max_delay=0.001),
            )
            broker.down = True  # every call fails from now on
            sent = await bus.publish("order.created", Order(1))
            await until(lambda: events(logs, "batch.retry"), "the export's retry")
            broker.down = False  # it comes back: the message goes out
    retry = events(logs, "batch.retry")[0]
    assert retry["bridge"] == "lb"
    assert retry["subscriber"] == "lb:export"
    assert (retry["topic"], retry["id"]) == ("order.created", sent.id)
    assert "down" in retry["error"]
    assert [r.id for r in broker.records("order.created")] == [sent.id]
    assert events(logs, "bridge.closed")[0]["bridge"] == "lb"


async def test_an_undecodable_import_and_a_failing_ingest_log_the_bridge() -> None:
    broker = LoopbackBroker()
    broker.append(LoopbackRecord("order.created", b"not json", "r-1", "k", {}, 0.0))

    class Flaky(Bridge):
        name = "flaky"
        runs = 0

        async def export(self, batch: Any, port: Port) -> None:
            return None

        async def ingest(self, port: Port, task_status: Any) -> None:
            task_status.started()
            self.runs += 1
            if self.runs == 1:
                raise ConnectionError("broker went away")
            await trio.sleep_forever()

    with capture_logs() as logs:
        async with open_bus() as bus:
            bus.topic("order.created", Order)
            await bus.attach(LoopbackBridge(broker, "lb"), import_=["order.*"])
            flaky = Flaky()
            await bus.attach(
                flaky, import_=["x.*"], retry=RetryPolicy(base_delay=0.001, max_delay=0.001)
            )
            await until(
                lambda: bus.retained(bus.dead_letter_topic) and flaky.runs >= 2,
                "a dead letter and an ingest restart",
            )
    (bad,) = events(logs, "message.undeliverable")
    assert (bad["bridge"], bad["topic"], bad["id"], bad["key"]) == (
        "lb", "order.created", "r-1", "k"
    )
    assert bad["dead_letter_topic"] == "bus.dead_letter"
    (restart,) = events(logs, "bridge.ingest_restart")
    assert restart["bridge"] == "flaky" and "went away" in restart["error"]


async def test_a_crash_outside_the_handler_names_the_message_it_held() -> None:
    """A dead letter refused (the dead-letter subscriber's mailbox is full under
    ``overflow="error"``) crashes the actor outside its handler: the supervisor restarts
    it, and the log line names the message the crash put back."""
    failed: set[int] = set()
    gate, busy = trio.Event(), trio.Event()

    def boom(env: Envelope[Order]) -> None:
        if env.payload.n not in failed:  # each message fails once
            failed.add(env.payload.n)
            raise ValueError("no stock")

    async def dead_letters(env: Envelope[Any]) -> None:
        busy.set()
        await gate.wait()

    with capture_logs() as logs:
        async with open_bus(retry=RetryPolicy(attempts=1)) as bus:
            bus.topic("order.created", Order)
            dl = bus.subscribe(bus.dead_letter_topic, dead_letters, capacity=1, overflow="error")
            bus.subscribe(
                "order.*", boom, name="fragile",
                supervision=Supervision(max_restarts=3, base_delay=0.001, max_delay=0.001),
            )
            await bus.publish("order.created", Order(1))
            with trio.fail_after(WITHIN):
                await busy.wait()  # the dead-letter subscriber holds the first one
            await bus.publish("order.created", Order(2))
            await until(lambda: dl.stats().mailbox_depth >= 1, "its mailbox full")
            third = await bus.publish("order.created", Order(3))
            await until(lambda: events(logs, "actor.restart"), "the actor's restart")
            gate.set()
    (restart,) = events(logs, "actor.restart")
    assert restart["subscriber"] == "fragile"
    assert (restart["topic"], restart["id"]) == ("order.created", third.id)
    assert "MailboxFullError" in restart["error"]
