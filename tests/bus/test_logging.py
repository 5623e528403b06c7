"""The library is silent unless the application configures logging (issue 6, item 11).

Each case runs a fresh interpreter: whether structlog was configured is process-wide
state, and ``import bus`` itself must not print.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
import trio
from structlog.testing import capture_logs

import bus as bus_pkg

_APP = textwrap.dedent(
    """
    import logging, sys
    import structlog, trio

    MODE = sys.argv[1]
    if MODE == "stdlib":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s|%(message)s")
    elif MODE == "structlog":
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s|%(message)s")
        structlog.configure(
            processors=[structlog.stdlib.add_log_level, structlog.processors.KeyValueRenderer()],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )

    import bus

    async def main() -> None:
        async with bus.open_bus() as b:
            b.topic("t", int)
            def fail(env):
                raise ValueError("boom")
            b.subscribe("t", fail, name="failing", retry=bus.RetryPolicy(attempts=1))
            b.subscribe("t", lambda env: None, name="tiny", capacity=1, overflow="drop_newest")
            for i in range(3):
                await b.publish("t", i)   # drops (warning) and dead letters (error)

    trio.run(main)
    """
)


def _run_app(mode: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", _APP, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )


def test_import_and_open_bus_print_nothing_by_default() -> None:
    done = _run_app("none")
    assert done.stdout == ""
    assert done.stderr == ""  # warnings and errors too: no last-resort handler output


def test_an_app_that_configures_stdlib_logging_sees_bus_events() -> None:
    lines = _run_app("stdlib").stdout.splitlines()
    assert any(line.startswith("bus|bus.open ") for line in lines), lines
    assert any(line.startswith("bus|actor.start ") and "'failing'" in line for line in lines)
    assert any(line.startswith("bus|message.dropped ") for line in lines), lines
    assert any(line.startswith("bus|message.dead_lettered ") for line in lines), lines


def test_an_app_that_configures_structlog_for_stdlib_sees_bus_events() -> None:
    lines = _run_app("structlog").stdout.splitlines()
    assert any(
        line.startswith("bus|") and "event='bus.open'" in line and "level='debug'" in line
        for line in lines
    ), lines
    assert any("event='message.dead_lettered'" in line for line in lines), lines


async def test_capture_logs_still_sees_bus_events() -> None:
    with capture_logs() as logs, trio.fail_after(5):
        async with bus_pkg.open_bus(name="captured") as b:
            b.topic("t", int)
            b.subscribe("t", lambda env: None, name="h")
    assert {"event": "bus.open", "bus": "captured", "log_level": "debug"} in logs
    assert [e["subscriber"] for e in logs if e["event"] == "actor.start"] == ["h"]


async def test_caplog_sees_bus_events_when_structlog_is_not_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    was_configured, saved = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    try:
        caplog.set_level(logging.DEBUG, logger="bus")
        with trio.fail_after(5):
            async with bus_pkg.open_bus(name="logged") as b:
                b.topic("t", int)
                b.subscribe("t", lambda env: None, name="h")
    finally:
        if was_configured:
            structlog.configure(**saved)
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("bus", "DEBUG", "bus.open bus='logged'") in messages
    assert any(m.startswith("actor.start ") and "subscriber='h'" in m for _, _, m in messages)


def test_library_modules_log_only_through_bus_log() -> None:
    """A module that takes a structlog logger directly would print by default again."""
    root = Path(bus_pkg.__file__).resolve().parent.parent
    offenders = [
        str(path.relative_to(root))
        for package in ("bus", "bridges")
        for path in sorted((root / package).rglob("*.py"))
        if "structlog.get_logger(" in path.read_text(encoding="utf-8")
        and path.name != "_log.py"
    ]
    assert offenders == []
