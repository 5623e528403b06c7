"""The logging policy (docs/design.md, "Logging") seen from an application: a program
that configured no logging prints nothing of the broker clients' own warnings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = [pytest.mark.brokers, pytest.mark.timeout(120)]

PROGRAM = Path(__file__).parent / "programs" / "kafka_missing_topic.py"


async def test_a_facade_program_without_logging_prints_nothing_of_aiokafkas_warnings(
    brokers: Any, unique: str
) -> None:
    brokers.require("kafka")
    prefix = unique.replace("trio-bus-smoke-", "quiet")
    done = await trio.run_process(
        [sys.executable, str(PROGRAM), brokers.env("KAFKA_SERVER"), prefix],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert out == "client warned\n"  # aiokafka did log a warning ("not found in cluster")
    assert err == ""  # ...and it reached nobody: the program configured no logging
