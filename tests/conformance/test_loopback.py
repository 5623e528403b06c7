"""The conformance suite against the loopback broker (in-process, no server)."""

from __future__ import annotations

import time

import pytest

from bus.testing import (
    CASES,
    LOOPBACK_FEATURES,
    BridgeKit,
    LoopbackBridge,
    LoopbackBroker,
    LoopbackRecord,
    check_broker_to_broker,
    run_case,
)


def loopback_kit(broker: LoopbackBroker, name: str = "loopback") -> BridgeKit:
    down_broker = LoopbackBroker()
    down_broker.down = True

    async def prepare(topics: list[str]) -> None:
        for topic in topics:
            broker.create(topic)

    async def write_raw(topic: str, data: bytes) -> None:
        broker.append(LoopbackRecord(topic, data, f"raw-{time.time_ns()}", None, {}, 0.0))

    return BridgeKit(
        name=name,
        features=LOOPBACK_FEATURES,
        make=lambda bridge, group: LoopbackBridge(broker, bridge, group=group),
        prepare=prepare,
        write_raw=write_raw,
        unreachable=lambda: LoopbackBridge(down_broker, "unreachable"),
    )


@pytest.mark.parametrize("case", list(CASES))
async def test_loopback(case: str) -> None:
    reason = await run_case(loopback_kit(LoopbackBroker()), case)
    if reason is not None:
        pytest.skip(reason)


async def test_loopback_to_loopback_through_one_bus() -> None:
    await check_broker_to_broker(
        loopback_kit(LoopbackBroker(), "a"), loopback_kit(LoopbackBroker(), "b")
    )
