"""``bus tail`` of a RabbitMQ queue by name and ``bus dead-letters list|count|replay``,
against the real brokers (issue 19 item 3).

The dead letters are made by the real bus: a handler that always fails, whose dead letters
a bridge exports to the broker (``bus.dead_letter`` or a topic of the test's own).
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import pytest
import trio

from bus import NotDeliveredError, RetryPolicy, open_bus
from tests.cli.test_cli_backends import Cli, _env, _url

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(240)]


async def _make_dead_letters(
    url: str, original: str, count: int, *, dead_letter_topic: str = "bus.dead_letter",
    keep_queue: str | None = None,
) -> None:
    """Publish *count* messages on *original* to a handler that raises, once each: their
    dead letters are exported to the broker (RabbitMQ: into *keep_queue*, bound first)."""
    from bridges import from_url

    retry = RetryPolicy(attempts=2, base_delay=0.01)
    async with open_bus(name="dl-maker", strict=False, retry=retry,
                        dead_letter_topic=dead_letter_topic) as bus:
        bridge = from_url(url, name="dl-maker")
        await bus.attach(bridge, export=[dead_letter_topic])
        if keep_queue is not None:
            await bridge.create_topic(dead_letter_topic, queue=keep_queue)

        async def out_of_stock(env: Any) -> None:
            raise ValueError(f"out of stock for order {env.payload['n']}")

        bus.subscribe(original, out_of_stock, name="inventory")
        for n in range(count):
            with pytest.raises(NotDeliveredError):  # returns once the dead letter is exported
                await bus.publish(original, {"n": n}, key=f"k{n}", confirm=True)


def _dead_letters(url: str, original: str, count: int, **options: Any) -> None:
    trio.run(functools.partial(_make_dead_letters, url, original, count, **options))


async def _remove_exchange(url: str, exchange: str) -> None:
    """Delete the test's exchange and the queues named after it."""
    from bridges import from_url

    bridge = from_url(url, name="dl-cleanup")
    await bridge.open()
    try:
        for queue in (f"{exchange}.bus.dead_letter", f"{exchange}.bus-cli.orders.created"):
            await bridge.delete_queue(queue)
        await bridge.delete_exchange()
    finally:
        await bridge.aclose()


@pytest.fixture
def rabbit(brokers: Any) -> Any:
    """A CLI, an exchange of the test's own on the harness's RabbitMQ, and its URL;
    the exchange and its queues are deleted afterwards."""
    brokers.require("rabbitmq")
    exchange = f"dl-{uuid.uuid4().hex[:10]}"
    url = f"{_url(brokers, 'rabbitmq')}?exchange={exchange}"
    yield Cli(_env(brokers)), exchange, url
    trio.run(_remove_exchange, url, exchange)


def test_tail_reads_a_rabbitmq_queue_by_name_and_peeks_unless_told_to_consume(
    brokers, rabbit
) -> None:
    cli, exchange, url = rabbit
    queue = f"{exchange}.bus.dead_letter"
    _dead_letters(url, "orders.created", 3, keep_queue=queue)
    plain = _url(brokers, "rabbitmq")
    by_queue = f"{plain}?queue={queue}"

    peek = cli.run("tail", by_queue, "--count", "3", "--json")
    assert (peek.returncode, peek.stderr) == (0, "")  # read as messages, not as "skipped"
    rows = [json.loads(line) for line in peek.stdout.splitlines()]
    assert [r["payload"] for r in rows] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {r["topic"] for r in rows} == {"bus.dead_letter"}
    assert rows[0]["headers"]["x-bus-original-topic"] == "orders.created"
    assert rows[0]["headers"]["x-bus-error"] == "out of stock for order 0"
    # a peek: all three are still there
    assert cli.ok("dead-letters", "count", url) == (
        f"3 dead letter(s) ready in queue {queue}\n"
    )
    # --consume takes what it shows off the queue
    out = cli.ok("tail", by_queue, "--count", "2", "--consume")
    assert out.count("orders.created") == 2
    assert cli.ok("dead-letters", "count", url).startswith("1 dead letter(s)")

    missing = cli.run("tail", f"{plain}?queue={exchange}.no-such-queue", "--count", "1")
    assert missing.returncode == 2, missing
    assert f"RabbitMQ has no queue '{exchange}.no-such-queue'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert cli.run("dead-letters", "count", f"{plain}?queue={exchange}.no-such-queue",
                   ).returncode == 2  # and it was not declared by the tail


def test_list_count_and_replay_on_rabbitmq(brokers, rabbit) -> None:
    cli, exchange, url = rabbit
    queue = f"{exchange}.bus.dead_letter"
    _dead_letters(url, "orders.created", 4, keep_queue=queue)
    assert cli.ok("dead-letters", "count", url) == f"4 dead letter(s) ready in queue {queue}\n"

    listed = [json.loads(line) for line in
              cli.ok("dead-letters", "list", url, "--json").splitlines()]
    assert [d["payload"] for d in listed] == [{"n": n} for n in range(4)]
    first = listed[0]
    assert (first["original_topic"], first["key"], first["attempts"]) == (
        "orders.created", "k0", "2")
    assert first["error_type"] == "builtins.ValueError"
    assert first["error"] == "out of stock for order 0"
    assert cli.ok("dead-letters", "count", url).startswith("4 ")  # list took nothing

    dry = cli.ok("dead-letters", "replay", url, "--dry-run", "--limit", "2")
    assert dry.count("would replay") == 2
    assert cli.ok("dead-letters", "count", url).startswith("4 ")

    # the original topic gets a queue; replay moves two dead letters into it
    cli.ok("topics", url, "create", "orders.created")
    replayed = cli.run("dead-letters", "replay", url, "--limit", "2")
    assert replayed.returncode == 0, replayed
    assert replayed.stdout.count("replayed ") == 2 and "2 replayed" in replayed.stderr
    assert cli.ok("dead-letters", "count", url).startswith("2 ")
    # a filter that matches none replays none and leaves every one in place
    assert cli.ok("dead-letters", "replay", url, "--original-topic", "orders.other") == ""
    assert cli.ok("dead-letters", "count", url).startswith("2 ")
    kept = f"{_url(brokers, 'rabbitmq')}?queue={exchange}.bus-cli.orders.created"
    copies = [json.loads(line) for line in
              cli.ok("tail", kept, "--count", "2", "--json").splitlines()]
    assert [c["payload"] for c in copies] == [{"n": 0}, {"n": 1}]
    assert [c["key"] for c in copies] == ["k0", "k1"]
    for copy, dead in zip(copies, listed, strict=False):
        assert copy["headers"]["x-bus-replayed"] == dead["id"]
        assert copy["headers"]["x-bus-replays"] == "1"
        assert not any(h.startswith(("x-bus-error", "x-bus-attempts", "x-bus-original"))
                       for h in copy["headers"])


def test_a_replay_the_broker_refuses_leaves_the_dead_letter_in_place(brokers, rabbit) -> None:
    cli, exchange, url = rabbit
    queue = f"{exchange}.bus.dead_letter"
    _dead_letters(url, "orders.unbound", 2, keep_queue=queue)
    # nothing is bound to orders.unbound on this exchange: RabbitMQ returns the copy
    refused = cli.run("dead-letters", "replay", url)
    assert refused.returncode == 1, refused
    assert "refused a replayed copy" in refused.stderr and "unroutable" in refused.stderr
    assert "stays where it was (0 replayed before it)" in refused.stderr
    assert cli.ok("dead-letters", "count", url).startswith("2 ")


@pytest.fixture
def kafka_topics(brokers):
    brokers.require("kafka")
    cli, url = Cli(_env(brokers)), _url(brokers, "kafka")
    suffix = uuid.uuid4().hex[:10]
    names = (f"dl.{suffix}", f"orders.{suffix}")
    for name in names:
        cli.ok("topics", url, "create", name)
    yield cli, url, *names
    for name in names:
        cli.run("topics", url, "delete", name)


def test_list_count_and_replay_on_kafka(kafka_topics) -> None:
    cli, url, dead, original = kafka_topics
    _dead_letters(url, original, 3, dead_letter_topic=dead)
    group = f"replay-{uuid.uuid4().hex[:8]}"
    count = ("dead-letters", "count", url, dead, "--group", group)
    assert cli.ok(*count) == (
        f"3 dead letter(s) on {dead} not yet replayed by group {group} (3 kept in the log)\n"
    )
    listed = [json.loads(line) for line in
              cli.ok("dead-letters", "list", url, dead, "--json").splitlines()]
    assert sorted(d["payload"]["n"] for d in listed) == [0, 1, 2]
    assert {d["original_topic"] for d in listed} == {original}
    assert {d["error"] for d in listed} == {f"out of stock for order {n}" for n in range(3)}

    replayed = cli.run("dead-letters", "replay", url, dead, "--group", group)
    assert replayed.returncode == 0, replayed
    assert replayed.stdout.count(f"to {original}") == 3
    assert cli.ok(*count).startswith(f"0 dead letter(s) on {dead}")  # committed after confirm
    copies = [json.loads(line) for line in cli.ok(  # the originals were local: only copies
        "tail", url, original, "--from-beginning", "--count", "3", "--json",
    ).splitlines()]
    assert sorted(c["payload"]["n"] for c in copies) == [0, 1, 2]
    assert {c["headers"]["x-bus-replayed"] for c in copies} == {d["id"] for d in listed}


@pytest.mark.parametrize("backend", ["kafka", "kinesis", "pubsub"])
def test_tail_reads_a_dead_letter_topic_like_any_topic(brokers, backend: str) -> None:
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    dead = f"dl.{uuid.uuid4().hex[:10]}"
    cli.ok("topics", url, "create", dead)  # Pub/Sub: with the bus-cli subscription
    try:
        _dead_letters(url, "orders.created", 2, dead_letter_topic=dead)
        rows = [json.loads(line) for line in cli.ok(
            "tail", url, dead, "--from-beginning", "--count", "2", "--json").splitlines()]
    finally:
        cli.run("topics", url, "delete", dead)
    assert sorted(r["payload"]["n"] for r in rows) == [0, 1]
    assert {r["topic"] for r in rows} == {dead}
    assert {r["headers"]["x-bus-original-topic"] for r in rows} == {"orders.created"}
    assert {r["headers"]["x-bus-error-type"] for r in rows} == {"builtins.ValueError"}
    assert {r["headers"]["x-bus-attempts"] for r in rows} == {"2"}


def test_kinesis_and_pubsub_are_refused_with_the_way_to_read_them(brokers) -> None:
    cli = Cli(_env(brokers))
    for backend in ("kinesis", "pubsub"):
        done = cli.run("dead-letters", "count", _url(brokers, backend))
        assert done.returncode == 2, done
        assert "bus tail" in done.stderr and "--from-beginning" in done.stderr
