"""The conformance suite against the real brokers the harness runs on loopback.

Every case runs once per broker (the slow ones — kill -9, restart, backlog — included);
client variants (Kafka's second runtime, its confluent-kafka client) run the fast cases
only (confluent-kafka: and kill -9 and the broker restart).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from bus.testing import CASES, check_broker_to_broker, run_case

sys.path.insert(0, str(Path(__file__).parent))  # kits.py, importable by the kill -9 child too
kits = importlib.import_module("kits")

pytestmark = pytest.mark.brokers


async def _run(kit: Any, case: str) -> None:
    reason = await run_case(kit, case)
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", list(CASES))
async def test_rabbitmq(brokers: Any, case: str) -> None:
    brokers.require("rabbitmq")
    await _run(kits.rabbitmq_kit(lambda: brokers.restart("rabbitmq")), case)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", list(CASES))
async def test_kafka(brokers: Any, case: str) -> None:
    brokers.require("kafka")
    await _run(kits.kafka_kit(lambda: brokers.restart("kafka")), case)


FAST_CASES = [c for c in CASES if c not in ("at_least_once_kill9", "broker_restart")]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("runtime", ["thread", "trio-asyncio"])
@pytest.mark.parametrize("case", FAST_CASES)
async def test_kafka_one_runtime(brokers: Any, case: str, runtime: str) -> None:
    """The default runs egress on a thread loop and ingress on trio-asyncio; each runtime
    alone must pass too."""
    brokers.require("kafka")
    await _run(kits.kafka_kit(lambda: brokers.restart("kafka"), runtime=runtime), case)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("case", [*FAST_CASES, "at_least_once_kill9", "broker_restart"])
async def test_kafka_confluent(brokers: Any, case: str) -> None:
    """The confluent-kafka client: the fast cases, kill -9 (what its done-tracked commits
    are for) and a broker restart (its close must not leave librdkafka's sockets)."""
    brokers.require("kafka")
    await _run(kits.kafka_confluent_kit(lambda: brokers.restart("kafka")), case)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", list(CASES))
async def test_kinesis(brokers: Any, case: str) -> None:
    brokers.require("kinesis")
    kit = kits.kinesis_kit(lambda: brokers.restart("kinesis"))
    try:
        await _run(kit, case)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await kit.cleanup()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["kinesis->rabbitmq", "rabbitmq->kinesis"])
async def test_broker_to_broker_kinesis_rabbitmq(brokers: Any, direction: str) -> None:
    brokers.require("kinesis")
    brokers.require("rabbitmq")
    kinesis = kits.kinesis_kit(lambda: brokers.restart("kinesis"))
    rabbitmq = kits.rabbitmq_kit(lambda: brokers.restart("rabbitmq"))
    source, sink = (kinesis, rabbitmq) if direction == "kinesis->rabbitmq" else (rabbitmq, kinesis)
    try:
        await check_broker_to_broker(source, sink)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await kinesis.cleanup()
@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", list(CASES))
async def test_pubsub(brokers: Any, case: str) -> None:
    brokers.require("pubsub")
    before = await trio.to_thread.run_sync(kits.pubsub_resources)
    try:
        await _run(kits.pubsub_kit(), case)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(kits.pubsub_cleanup, before)

