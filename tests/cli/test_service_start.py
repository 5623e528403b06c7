"""`bus bridge` when one broker cannot be reached at start: one line on stderr, nothing
from the other bridges' clients (no broker needed: the brokers here are a closed port and
a port that accepts connections and never answers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose TCP handshake the kernel completes (backlog) and where nothing ever
    answers: an AMQP client connected there waits for the broker's first frame."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_one_broker_down_at_start_is_one_line_and_the_others_close_quietly(
    tmp_path: Path, silent_port: int
) -> None:
    """Kafka refuses at once while the RabbitMQ bridge is half-way through its AMQP
    handshake: the service cancels that open; aio-pika's connection must be closed with
    every asyncio task it started, or asyncio prints "Task was destroyed but it is
    pending!" and "coroutine 'Connection.connect' was never awaited" after our line."""
    config = tmp_path / "bridge.toml"
    config.write_text(f"""
[service]
name = "start-test"
log_level = "warning"
metrics = false
connect_timeout = 30.0

[brokers.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:1"
group_id = "start-test"

[brokers.rabbitmq]
type = "rabbitmq"
url = "amqp://guest@127.0.0.1:{silent_port}/"
password_env = "START_TEST_PASSWORD"

[[topics]]
pattern = "orders.*"
import_from = "kafka"
export_to = "rabbitmq"
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "START_TEST_PASSWORD": "guest",
           "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-m", "bus", "bridge", str(config)], capture_output=True,
        text=True, cwd=ROOT, env=env, timeout=60, check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bus bridge: error: kafka: ") and "127.0.0.1:1" in lines[0]
