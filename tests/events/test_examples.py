"""Runs every seed-pattern example under docs/examples/ and checks what it produced."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    """Import docs/examples/<name>.py by path, under a name no test package uses."""
    module_name = f"trio_bus_docs_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


async def run(name: str) -> Any:
    return await load(name).main()


def test_every_example_is_tested() -> None:
    tested = {
        "event_sourcing",
        "cqrs_projection",
        "saga",
        "outbox",
        "dead_letter",
        "circuit_breaker",
        "metrics",
        "idempotency",
        "versioned_events",
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


async def test_event_sourcing() -> None:
    user = await run("event_sourcing")
    assert (user.id, user.name, user.email) == ("u1", "Alice", "alice@newest.example")


async def test_cqrs_projection() -> None:
    read_db = await run("cqrs_projection")
    assert sorted(read_db) == ["1", "2"]
    assert read_db["1"]["email"] == "ann@example.com"
    assert read_db["2"]["name"] == "Ben"


async def test_saga_confirms_and_compensates() -> None:
    outcome, stock = await run("saga")
    assert outcome == {"o1": "confirmed", "o2": "compensated (limit exceeded)"}
    assert stock == {"book": 8}  # o2's five books were released


async def test_outbox_retries_until_published() -> None:
    pending, published = await run("outbox")
    assert pending == [1, 0]
    assert sorted(published) == ["1", "2"]


async def test_dead_letter() -> None:
    processed, dead = await run("dead_letter")
    assert processed == ["p1", "p3"]
    assert len(dead) == 1
    assert dead[0]["original_topic"] == "payment.requested"
    assert dead[0]["original_data"] == {"id": "p2", "amount": -5.0}
    assert dead[0]["retry_count"] == 3
    assert "invalid amount" in dead[0]["error"]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_circuit_breaker(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    log = await run("circuit_breaker")
    assert log == [
        "1:ok",
        "2:error",
        "3:error",
        "4:fast-fail",
        "5:fast-fail",
        "6:error",
        "7:fast-fail",
        "8:ok",
        "9:ok",
        "calls-while-open:3",
    ]
    assert trio.current_time() - start == pytest.approx(2.0)  # two reset timeouts


async def test_metrics() -> None:
    metrics = await run("metrics")
    assert metrics["published_total"] == 3
    assert metrics["consumed_total"] == 6  # three by callback, three by iterator
    assert metrics["errors_total"] == 1
    assert 0 < metrics["average_latency_seconds"] < 1.0  # measured, and plausible


async def test_idempotency() -> None:
    balances, duplicates = await run("idempotency")
    assert balances == {"acc-1": 70}
    assert duplicates == 4  # one producer retry + three sent again


async def test_versioned_events() -> None:
    received = await run("versioned_events")
    assert [(v, u.id, u.version, u.phone) for v, u in received] == [
        ("1.0", "1", "1.0", None),
        ("2.0", "2", "2.0", "+34 600"),
    ]
