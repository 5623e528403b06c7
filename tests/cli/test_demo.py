"""``bus demo``: the shop's saga invariants under MockClock, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import structlog
import trio.testing

from bus.cli.demo.report import DeadLetter, Summary, TraceLine
from bus.cli.demo.shop import plan_orders, simulate

ROOT = Path(__file__).resolve().parents[2]


Run = tuple[Summary, list[TraceLine]]
COMPENSATION = ["payment.declined", "inventory.release", "stock.released", "order.cancelled"]


async def shop(orders: int = 30, rate: float = 0.3, seed: int = 3) -> Run:
    lines: list[TraceLine] = []
    summary = await simulate(orders, rate, seed, lines.append)
    return summary, lines


def poison_of(orders: int, seed: int) -> tuple[str, int]:
    [bad] = [o for o in plan_orders(orders, seed).orders if o.quantity <= 0]
    return bad.order_id, bad.quantity


async def test_every_order_ends_confirmed_or_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    summary, _ = await shop()
    ids = [o.order_id for o in plan_orders(30, 3).orders]
    assert sorted(summary.outcomes) == ids
    assert summary.confirmed + summary.cancelled == 30
    # seed 3 exercises both endings: 21 confirmed, 8 declined by payment, 1 dead letter
    assert (summary.confirmed, summary.declined, summary.dead_lettered) == (21, 8, 1)
    assert summary.declined + summary.dead_lettered == summary.cancelled


async def test_cancelled_orders_had_their_stock_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    summary, lines = await shop()
    plan = {o.order_id: o for o in plan_orders(30, 3).orders}
    confirmed = [plan[k] for k, outcome in summary.outcomes.items() if outcome == "confirmed"]
    expected = dict(summary.stock_before)
    for order in confirmed:
        expected[order.sku] -= order.quantity
    assert summary.stock_after == expected
    assert summary.held == {o.order_id: o.quantity for o in confirmed}
    assert summary.released == summary.declined
    released = {line.key for line in lines if line.topic == "stock.released"}
    declined = {k for k, v in summary.outcomes.items() if v.startswith("payment declined")}
    assert released == declined
    for key in declined:  # compensation order: declined -> release -> released -> cancelled
        steps = [line.topic for line in lines if line.key == key][-4:]
        assert steps == COMPENSATION


async def test_poison_message_ends_in_the_dead_letter_topic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    summary, lines = await shop()
    key, quantity = poison_of(30, 3)
    error = f"quantity must be positive, got {quantity}"
    assert summary.dead_letters == [DeadLetter(key, "inventory.reserve", error, 3)]
    assert summary.outcomes[key] == f"rejected as poison ({error})"
    assert summary.dead_lettered == 1
    retries = [line for line in lines if line.key == key and line.tone == "warn"]
    assert [line.topic for line in retries] == ["inventory.reserve", "inventory.reserve"]
    assert any(line.topic == "bus.dead_letter" and line.key == key for line in lines)


async def test_summary_counts_match_the_bus_stats(autojump_clock: trio.testing.MockClock) -> None:
    summary, lines = await shop()
    p = summary.published
    assert p["order.placed"] == p["inventory.quote"] == 30
    assert not [name for name in p if name.startswith("bus.reply")]  # private, not listed
    assert p["inventory.reserve"] == 30
    assert p["stock.reserved"] == 29  # all but the poison
    assert p["order.confirmed"] == p["payment.captured"] == summary.confirmed
    assert p["order.cancelled"] == summary.cancelled
    assert p["payment.declined"] == p["inventory.release"] == p["stock.released"]
    assert p["payment.declined"] == summary.declined
    assert p["bus.dead_letter"] == 1
    inventory = summary.actors["inventory"]
    assert (inventory.failed, inventory.retried, inventory.dead_lettered) == (3, 2, 1)
    assert summary.retries == sum(a.retried for a in summary.actors.values())
    payments = [a for a in summary.actors.values() if a.group == "payments"]
    assert len(payments) == 2
    assert sum(a.delivered for a in payments) == 29
    # the trace has one line per publish of the saga's topics
    traced = Counter(line.topic for line in lines if line.tone != "warn")
    for topic in ("order.placed", "order.confirmed", "order.cancelled", "stock.reserved"):
        assert traced[topic] == p[topic]


async def test_deterministic_for_a_seed(autojump_clock: trio.testing.MockClock) -> None:
    first, first_lines = await shop(seed=11)
    again, again_lines = await shop(seed=11)
    other, _ = await shop(seed=12)
    assert msgspec.structs.replace(first, elapsed=0.0) == msgspec.structs.replace(
        again, elapsed=0.0
    )
    assert sorted((x.topic, x.key, x.text) for x in first_lines) == sorted(
        (x.topic, x.key, x.text) for x in again_lines
    )
    assert other.outcomes != first.outcomes


@pytest.mark.parametrize(("rate", "confirmed"), [(0.0, 19), (1.0, 0)])
async def test_failure_rate_bounds(
    autojump_clock: trio.testing.MockClock, rate: float, confirmed: int
) -> None:
    summary, _ = await shop(orders=20, rate=rate, seed=5)
    assert summary.confirmed == confirmed  # 19: every order but the poison
    assert summary.confirmed + summary.cancelled == 20


@pytest.fixture
def keep_structlog() -> Iterator[None]:
    """Whatever these tests do to structlog's global state is undone afterwards."""
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.mark.usefixtures("keep_structlog")
async def test_structlog_config_is_restored(autojump_clock: trio.testing.MockClock) -> None:
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    before = structlog.get_config()
    await shop(orders=3)
    assert structlog.get_config() == before


@pytest.mark.usefixtures("keep_structlog")
async def test_an_unconfigured_structlog_stays_unconfigured(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The demo must not leave structlog configured: the bus would stop being silent."""
    structlog.reset_defaults()
    await shop(orders=3)
    assert not structlog.is_configured()


def bus_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [sys.executable, "-m", "bus", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False,
    )


def test_cli_demo_prints_trace_and_summary() -> None:
    done = bus_cli("demo", "--orders", "5", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "order.placed" in out and "o-0005" in out
    assert "summary  seed 1, 5 orders" in out
    assert "dead letters  1" in out
    assert "\x1b[" not in out  # not a terminal: no colour


def test_cli_demo_quiet_prints_the_summary_only() -> None:
    done = bus_cli("demo", "--orders", "5", "--seed", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("summary")
    assert "order.placed" in done.stdout  # in the topics table, not as trace lines
    assert "o-0001  " not in done.stdout.split("summary")[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders: must be between 1"),
        (["--orders", "many"], "--orders: expected a whole number"),
        (["--failure-rate", "1.5"], "--failure-rate: must be a probability"),
        (["--seed"], "--seed: expected one argument"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--bridge", "kafka://localhost:nine"], "port 'nine' is not a number"),
        (["--bridge", "ftp://localhost"], "unknown scheme 'ftp'"),
    ],
)
def test_cli_demo_bad_arguments_end_with_one_line(args: list[str], message: str) -> None:
    done = bus_cli("demo", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr


async def test_prefix_puts_every_shop_topic_under_it_mirrored_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from bridges import from_url

    lines: list[TraceLine] = []
    bridge = from_url("memory://", name="demo")
    summary = await simulate(10, 0.3, 3, lines.append, bridge, "memory://", "run7")
    assert summary.confirmed + summary.cancelled == 10  # the saga works as without
    assert summary.dead_lettered == 1
    assert summary.published and all(t.startswith("run7.") for t in summary.published)
    assert summary.published["run7.order.placed"] == 10
    assert summary.published["run7.bus.dead_letter"] == 1
    assert summary.bridge is not None
    assert summary.bridge.exported["run7.order.placed"] == 10
    assert summary.bridge.refused == 0
    assert {line.topic for line in lines if line.topic.startswith(("run7.order", "order"))} == {
        "run7.order.placed", "run7.order.confirmed", "run7.order.cancelled"
    }  # the trace names the prefixed topics


def test_cli_demo_bad_prefix_ends_with_one_line() -> None:
    done = bus_cli("demo", "--prefix", "a..b")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "--prefix" in done.stderr
