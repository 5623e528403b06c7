"""The conformance suite against the real brokers the harness runs on loopback.

One test body, parametrized over the kits (``kits.py``) and the suite's cases: every
case runs once per broker (the slow ones — kill -9, restart, backlog — included); client
variants (Kafka's two runtimes alone, its confluent-kafka client) run the fast cases
only (confluent-kafka: and kill -9 and the broker restart, what its done-tracked commits
and its close are for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from bus.testing import CASES, BridgeKit, check_broker_to_broker, run_case
from tests.conformance import kits

pytestmark = pytest.mark.brokers

FAST_CASES = tuple(c for c in CASES if c not in ("at_least_once_kill9", "broker_restart"))


@dataclass(frozen=True)
class Target:
    """A kit to run the suite with: the broker it needs, its cases and their bound."""

    broker: str
    kit: Callable[[Any], BridgeKit]
    """``kit(brokers)``: the kit, restarting its broker through the harness."""
    cases: tuple[str, ...] = tuple(CASES)
    seconds: float = 400


def _restart(brokers: Any, name: str) -> Callable[[], None]:
    return lambda: brokers.restart(name)


TARGETS = {
    "rabbitmq": Target("rabbitmq", lambda b: kits.rabbitmq_kit(_restart(b, "rabbitmq"))),
    "kafka": Target("kafka", lambda b: kits.kafka_kit(_restart(b, "kafka"))),
    # The default runs egress on a thread loop and ingress on trio-asyncio; each runtime
    # alone must pass too.
    **{
        f"kafka[{runtime}]": Target(
            "kafka",
            lambda b, runtime=runtime: kits.kafka_kit(_restart(b, "kafka"), runtime=runtime),
            FAST_CASES, 200,
        )
        for runtime in ("thread", "trio-asyncio")
    },
    "kafka[confluent]": Target(
        "kafka", lambda b: kits.kafka_confluent_kit(_restart(b, "kafka")),
        (*FAST_CASES, "at_least_once_kill9", "broker_restart"), 200,
    ),
    "kinesis": Target("kinesis", lambda b: kits.kinesis_kit(_restart(b, "kinesis"))),
    "pubsub": Target("pubsub", lambda b: kits.pubsub_kit(), seconds=300),
    "redis": Target("redis", lambda b: kits.redis_kit(_restart(b, "redis"))),
}


@pytest.mark.parametrize(
    ("target", "case"),
    [
        pytest.param(name, case, id=f"{name}-{case}", marks=pytest.mark.timeout(t.seconds))
        for name, t in TARGETS.items()
        for case in t.cases
    ],
)
async def test_conformance(brokers: Any, target: str, case: str) -> None:
    chosen = TARGETS[target]
    brokers.require(chosen.broker)
    kit = chosen.kit(brokers)
    before = await trio.to_thread.run_sync(kits.pubsub_resources) if target == "pubsub" else None
    try:
        reason = await run_case(kit, case)
    finally:
        with trio.CancelScope(shield=True):
            await _clean_up(kit, before)
    if reason is not None:
        pytest.skip(reason)


async def _clean_up(kit: BridgeKit, pubsub_before: set[str] | None) -> None:
    """What a case left on a broker that would slow down the next ones."""
    if isinstance(kit, kits.KinesisKit):
        with trio.move_on_after(30):
            await kit.cleanup()
    if pubsub_before is not None:
        await trio.to_thread.run_sync(kits.pubsub_cleanup, pubsub_before)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["kinesis->rabbitmq", "rabbitmq->kinesis"])
async def test_broker_to_broker_kinesis_rabbitmq(brokers: Any, direction: str) -> None:
    brokers.require("kinesis")
    brokers.require("rabbitmq")
    kinesis = kits.kinesis_kit(_restart(brokers, "kinesis"))
    rabbitmq = kits.rabbitmq_kit(_restart(brokers, "rabbitmq"))
    source, sink = (kinesis, rabbitmq) if direction == "kinesis->rabbitmq" else (rabbitmq, kinesis)
    try:
        await check_broker_to_broker(source, sink)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await kinesis.cleanup()
