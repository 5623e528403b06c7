"""The conformance suite against the loopback broker with faults on (bus/_faults.py).

The kit says ``duplicates=True`` (the broker delivers some messages twice while every
consumer lives): the cases count distinct messages and check per-key order on each
message's first handling, and the echo guard, which counts exact deliveries, is skipped.
``restart_broker`` drops every connection (the in-process broker keeps its log), so the
broker-restart case runs too. Skipped as for the plain loopback: kill -9 of a child
process (the broker lives in this process). ``reject`` stays off: a record refused for
good is dead-lettered by the exporter, which the cases rightly count as lost.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from bus.testing import (
    CASES,
    LOOPBACK_FEATURES,
    BridgeKit,
    Faults,
    LoopbackBridge,
    LoopbackBroker,
    LoopbackRecord,
    run_case,
)

FAULTS = Faults(
    seed=21, duplicate=0.05, redeliver=0.03, reorder=True, drop=0.005, rebalance=0.005,
    slow_commit=0.05, refuse=0.01,
)


def faulty_kit(broker: LoopbackBroker) -> BridgeKit:
    down_broker = LoopbackBroker()
    down_broker.down = True

    async def prepare(topics: list[str]) -> None:
        for topic in topics:
            broker.create(topic)

    async def write_raw(topic: str, data: bytes) -> None:
        broker.append(LoopbackRecord(topic, data, f"raw-{time.time_ns()}", None, {}, 0.0))

    async def restart_broker() -> None:
        broker.drop_connections()

    return BridgeKit(
        name="loopback-faults",
        features=dataclasses.replace(LOOPBACK_FEATURES, restartable=True),
        make=lambda bridge, group: LoopbackBridge(broker, bridge, group=group),
        prepare=prepare,
        write_raw=write_raw,
        restart_broker=restart_broker,
        unreachable=lambda: LoopbackBridge(down_broker, "unreachable"),
        duplicates=True,
    )


SKIPPED = {"at_least_once_kill9", "echo_guard"}


@pytest.mark.parametrize("case", list(CASES))
async def test_loopback_with_faults(case: str, autojump_clock: Any) -> None:
    broker = LoopbackBroker(faults=FAULTS)
    reason = await run_case(faulty_kit(broker), case)
    assert (reason is not None) == (case in SKIPPED), reason
    if reason is not None:
        pytest.skip(reason)
    print(f"{case}: faults injected {dict(broker.injected)}")
