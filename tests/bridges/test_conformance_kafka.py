"""The conformance suite (bus._check_bridge) against the real Kafka on loopback."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from bridges.kafka._kit import kafka_kit
from bus._check_bridge import CASES, run_case

pytestmark = pytest.mark.brokers

SERVER = os.environ.get("KAFKA_SERVER", "127.0.0.1:9092")


def _harness() -> Any:
    name = "trio_bus_brokers_harness"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "brokers" / "harness.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


async def _restart() -> None:
    await trio.to_thread.run_sync(_harness().restart, "kafka")


@pytest.mark.parametrize("case", list(CASES))
async def test_kafka(case: str) -> None:
    why = _harness().BROKERS["kafka"].probe()
    if why is not None:
        pytest.fail(f"kafka is not answering ({why}); start it with `make brokers-up`")
    with trio.fail_after(400):
        reason = await run_case(kafka_kit(SERVER, restart_broker=_restart), case)
    if reason is not None:
        pytest.skip(reason)
