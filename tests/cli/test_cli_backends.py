"""``bus tail``, ``bus publish`` and ``bus topics`` against each real broker, as a user
runs them: subprocesses, one unique topic per test run.

Per backend: create a topic, publish N JSON lines, get them back in order with
``tail --from-beginning --count N``; a live tail gets what is published after it started
and not what came before; the topic is listed and deleted; a broker that does not
answer is one line and exit 1.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
N = 25
BACKENDS = ["kafka", "rabbitmq", "kinesis", "pubsub", "redis"]


def _env(brokers) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for broker in brokers.harness.BROKERS.values():
        defaults.update(broker.env())
    return {**defaults, **os.environ, "PYTHONPATH": str(ROOT)}


def _url(brokers, backend: str) -> str:
    if backend == "kafka":
        return f"kafka://{brokers.env('KAFKA_SERVER')}"
    if backend == "rabbitmq":
        return brokers.env("RABBITMQ_URL")
    if backend == "kinesis":
        return f"kinesis://{brokers.env('AWS_REGION')}?endpoint={brokers.env('KINESIS_ENDPOINT_URL')}"
    if backend == "redis":
        return str(brokers.env("REDIS_URL"))
    return f"pubsub://{brokers.env('PUBSUB_PROJECT_ID')}?emulator={brokers.env('PUBSUB_EMULATOR_HOST')}"


UNREACHABLE = {
    "kafka": "kafka://127.0.0.1:1",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:1/",
    "kinesis": "kinesis://us-east-1?endpoint=http://127.0.0.1:1",
    "pubsub": "pubsub://trio-bus-test?emulator=127.0.0.1:1",
    "redis": "redis://127.0.0.1:1/0",
}


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bus", *args]

    def run(
        self, *args: str, stdin: str = "", timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), input=stdin, capture_output=True, text=True, cwd=ROOT,
            env=self.env, timeout=timeout, check=False,
        )

    def ok(self, *args: str, stdin: str = "") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


def _lines(start: int, count: int) -> str:
    return "".join(json.dumps({"n": i, "text": f"message {i}"}) + "\n"
                   for i in range(start, start + count))


@pytest.fixture
def topic() -> str:
    return f"cli.{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_publish_then_tail_from_beginning_gets_them_back(brokers, backend: str, topic: str) -> None:
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    assert cli.ok("topics", url, "create", topic) == f"created {topic}\n"
    try:
        assert cli.ok("publish", url, topic, "--key", "k-1", stdin=_lines(1, N)) == (
            f"{N} published to {topic}\n"
        )
        out = cli.ok("tail", url, topic, "--from-beginning", "--count", str(N), "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["payload"]["n"] for r in rows] == list(range(1, N + 1))  # one key: in order
        assert {(r["topic"], r["key"]) for r in rows} == {(topic, "k-1")}
        if backend == "rabbitmq":  # AMQP 0-9-1 has no listing: said in one line, exit 2
            done = cli.run("topics", url, "list")
            assert done.returncode == 2 and "cannot list topics" in done.stderr
        else:
            assert topic in cli.ok("topics", url, "list").split()
    finally:
        assert cli.ok("topics", url, "delete", topic) == f"deleted {topic}\n"
    if backend == "rabbitmq":  # the queue that kept the messages is gone: nothing routes
        done = cli.run("publish", url, topic, stdin='{"late": 1}\n')
        assert done.returncode == 1 and "unroutable" in done.stderr
    else:
        assert topic not in cli.ok("topics", url, "list").split()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_line_that_is_not_json_stops_publish_after_the_lines_before_it(
    brokers, backend: str, topic: str
) -> None:
    """The rule (docs/cli.md): the lines before a bad one are published and confirmed,
    nothing after it is sent, and the error line says so. On the broker: lines 1 and 2,
    then the next publish's line, and not line 4."""
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    cli.ok("topics", url, "create", topic)
    try:
        stdin = _lines(1, 2) + "{not json\n" + _lines(4, 1)
        done = cli.run("publish", url, topic, "--key", "k", stdin=stdin)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            "bus: error: stdin line 3 is not JSON (JSON is malformed: object keys must be "
            "strings (byte 1)): '{not json'; the 2 lines before it were published "
            "(confirmed); nothing after it was sent"
        ]
        assert done.stdout == f"2 published to {topic}\n"
        cli.ok("publish", url, topic, "--key", "k", stdin=_lines(5, 1))
        out = cli.ok("tail", url, topic, "--from-beginning", "--count", "3", "--json")
        assert [json.loads(line)["payload"]["n"] for line in out.splitlines()] == [1, 2, 5]
    finally:
        cli.ok("topics", url, "delete", topic)


def test_a_bad_line_after_refused_ones_reports_both(brokers, topic: str) -> None:
    brokers.require("rabbitmq")
    cli, url = Cli(_env(brokers)), _url(brokers, "rabbitmq")
    # no queue bound to the topic: RabbitMQ returns both messages as unroutable
    done = cli.run("publish", url, topic, stdin=_lines(1, 2) + "{not json\n")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert "'{not json'; of the 2 lines before it, 0 published and 2 refused (the first " in line
    assert "(line 1): " in line and "unroutable" in line
    assert line.endswith("; nothing after it was sent")
    assert done.stdout == f"0 published to {topic}\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_live_tail_gets_what_is_published_after_it_started(
    brokers, backend: str, topic: str
) -> None:
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    cli.ok("topics", url, "create", topic)
    try:
        cli.ok("publish", url, topic, stdin=_lines(0, 1))  # before the tail: not shown
        if backend == "kinesis":
            # LATEST is AT_TIMESTAMP of the tail's start; kinesis-mock was seen to return a
            # record put well under a second before it: keep them a second apart
            time.sleep(1.1)
        tail = subprocess.Popen(
            cli.argv("--log-level", "info", "tail", url, topic, "--count", "3", "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli.env,
        )
        try:
            assert tail.stderr is not None
            deadline = time.monotonic() + 60
            for line in tail.stderr:  # JSON log lines: wait until it consumes
                if json.loads(line)["event"] == "tail.started":
                    break
                assert time.monotonic() < deadline
            cli.ok("publish", url, topic, "--key", "live", stdin=_lines(1, 3))
            out, _ = tail.communicate(timeout=60)
        finally:
            tail.kill()
            tail.wait()
        assert tail.returncode == 0
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["payload"]["n"] for r in rows] == [1, 2, 3]
    finally:
        cli.ok("topics", url, "delete", topic)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unreachable_broker_is_one_line_and_exit_1(brokers, backend: str) -> None:
    cli = Cli(_env(brokers))
    for args in (["topics", UNREACHABLE[backend], "create", "t.x", "--timeout", "5"],
                 ["tail", UNREACHABLE[backend], "t.x", "--timeout", "5"]):
        done = cli.run(*args, timeout=30)
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("bus: error: ") and "127.0.0.1:1" in done.stderr
        assert done.stdout == ""


@pytest.mark.parametrize("backend", ["kafka", "kinesis", "pubsub", "redis"])
def test_a_tail_refuses_a_topic_that_does_not_exist_and_creates_nothing(
    brokers, backend: str, topic: str
) -> None:
    """A typo'd topic is one line and exit 2 at once, with or without --from-beginning,
    not a silent wait; and the broker does not have the topic afterwards (Kafka created
    it on the consumer's first metadata request, Pub/Sub when the tail subscribed)."""
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    for extra in ([], ["--from-beginning"]):
        done = cli.run("tail", url, topic, "--count", "1", *extra, timeout=60)
        assert done.returncode == 2, (extra, done.stderr)
        assert done.stderr.splitlines() == [
            f"bus: error: topic {topic!r} does not exist on {url} (a tail never creates "
            f"one): check the name, or create it first with `bus topics {url} create {topic}`"
        ]
        assert done.stdout == ""
    assert topic not in cli.ok("topics", url, "list").split()


def test_a_tail_on_a_pattern_that_matches_nothing_says_it_waits(brokers, topic: str) -> None:
    brokers.require("kafka")
    cli, url = Cli(_env(brokers)), _url(brokers, "kafka")
    tail = subprocess.Popen(
        cli.argv("tail", url, f"{topic}.*"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env=cli.env,
    )
    try:
        assert tail.stderr is not None
        ready, _, _ = select.select([tail.stderr], [], [], 60)  # a silent wait fails here
        assert ready, "the tail said nothing within 60 s"
        assert tail.stderr.readline() == (
            f"bus tail: no topic matches '{topic}.*' yet; waiting for one to be created\n"
        )
    finally:
        tail.kill()
        tail.wait()


SHOP_TOPICS = (
    "order.placed", "inventory.quote", "inventory.reserve", "inventory.release",
    "stock.reserved", "stock.released", "payment.captured", "payment.declined",
    "order.confirmed", "order.cancelled", "bus.dead_letter",
)


@pytest.mark.parametrize("backend", ["kafka", "rabbitmq"])
def test_demo_bridge_mirrors_the_shop_to_the_broker(brokers, backend: str) -> None:
    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    if backend == "rabbitmq":  # start from empty kept queues: they outlive a demo run
        cli.ok("topics", url, "delete", *SHOP_TOPICS)
    try:
        out = cli.ok("demo", "--quiet", "--orders", "8", "--seed", "4", "--bridge", url)
        mirrored = out.split("mirrored", 1)[1].splitlines()
        handed = int(mirrored[0].split("): ", 1)[1].split()[0])
        assert f"{handed} messages handed over, {handed} confirmed by the broker, 0 refused" in (
            mirrored[0]
        )
        exported = {line.split()[0]: int(line.split()[1]) for line in mirrored[2:] if line}
        assert exported["order.placed"] == 8 and sum(exported.values()) == handed
        # what went through is on the broker: the eight orders, read back
        rows = cli.ok("tail", url, "order.placed", "--from-beginning", "--count", "8", "--json")
        placed = [json.loads(line) for line in rows.splitlines()]
        assert len(placed) == 8 and all(r["payload"]["order_id"] == r["key"] for r in placed)
        if backend == "rabbitmq":  # the kept queue held exactly this run's orders
            assert sorted(r["key"] for r in placed) == [f"o-{i:04d}" for i in range(1, 9)]
    finally:
        if backend == "rabbitmq":
            deleted = cli.ok("topics", url, "delete", *SHOP_TOPICS)
            assert deleted.splitlines() == [f"deleted {name}" for name in SHOP_TOPICS]


@pytest.mark.parametrize("backend", ["rabbitmq", "pubsub"])
def test_a_terminated_tail_removes_its_private_queue(brokers, backend: str, topic: str) -> None:
    """A tail without --from-beginning reads through a queue (RabbitMQ) or subscription
    (Pub/Sub) of its own; SIGTERM, like Ctrl-C, removes it: then nothing keeps the topic's
    messages (RabbitMQ: unroutable; Pub/Sub: only the subscription `topics create` made is
    left)."""
    import signal

    brokers.require(backend)
    cli, url = Cli(_env(brokers)), _url(brokers, backend)
    if backend == "pubsub":  # a tail never creates a topic
        cli.ok("topics", url, "create", topic)
    tail = subprocess.Popen(
        cli.argv("--log-level", "info", "tail", url, topic), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli.env,
    )
    try:
        assert tail.stderr is not None
        assert json.loads(tail.stderr.readline())["event"] == "tail.started"
        assert cli.ok("publish", url, topic, stdin=_lines(1, 1)) == f"1 published to {topic}\n"
        assert tail.stdout is not None
        first = tail.stdout.readline()  # printed: the message went through
        tail.send_signal(signal.SIGTERM)
        out, err = tail.communicate(timeout=60)
        out = first + out
    finally:
        tail.kill()
        tail.wait()
    assert tail.returncode == 128 + signal.SIGTERM, err
    assert out == f'{topic}  key=-  {{"n": 1, "text": "message 1"}}\n'
    assert "Traceback" not in err
    try:
        done = cli.run("publish", url, topic, stdin=_lines(2, 1))
        if backend == "rabbitmq":
            assert done.returncode == 1 and "unroutable" in done.stderr
        else:
            assert done.returncode == 0
            subs = subprocess.run(
                [sys.executable, "-c", _LIST_SUBSCRIPTIONS, url, topic], capture_output=True,
                text=True, env=cli.env, timeout=60, check=True,
            ).stdout.split()
            assert subs == [f"{topic}~bus-cli"]  # the one `topics create` made, kept
    finally:
        if backend == "pubsub":
            cli.ok("topics", url, "delete", topic)


_LIST_SUBSCRIPTIONS = """
import sys, trio
from bridges import from_url
async def main():
    bridge = from_url(sys.argv[1])
    await bridge.open()
    try:
        print(*await bridge.list_subscriptions(sys.argv[2]))
    finally:
        await bridge.aclose()
trio.run(main)
"""
