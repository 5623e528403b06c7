"""A server DOWN behind a live PID: `status` says so and why, `up` restarts it.

The Pub/Sub emulator once ran out of heap and stopped answering while its process lived
on; `status` said DOWN and `up` waited on it. Here a real server (the harness's Redis:
it restarts in a second and keeps its data) is stopped with SIGSTOP: its socket still
accepts connections, it answers nothing, its PID is alive, as then.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal

import pytest

pytestmark = pytest.mark.brokers


def test_status_and_up_see_a_stopped_server_and_up_restarts_it(brokers) -> None:
    brokers.require("redis")
    harness = brokers.harness
    redis = harness.BROKERS["redis"]
    pid = redis.pid()
    if pid is None:
        pytest.skip("this redis was not started by the harness: it is not ours to stop")
    os.kill(pid, signal.SIGSTOP)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert harness.status(["redis"]) == 1
        line = next(x for x in out.getvalue().splitlines() if x.startswith("# redis"))
        assert "DOWN" in line and f"pid {pid} running" in line
        assert f"hung (pid {pid} is stopped (state T))" in line and "brokers-up" in line

        assert harness.up(["redis"]) == 0
        assert redis.probe() is None
        assert redis.pid() not in (None, pid)
        assert not harness.alive(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

