"""The ``bus`` command as a user runs it: a subprocess, on memory:// (no broker needed).

Broker URLs are covered against the real servers in tests/cli/test_cli_backends.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINES = '{"n": 1}\n\n[1, "two"]\n"three"\n{"n": 4, "nested": {"x": null}}\n'


def bus(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bus", *args], input=stdin, capture_output=True, text=True,
        cwd=ROOT, env=env, timeout=timeout, check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bus") and ": error: " in lines[0]
    return lines[0]


def test_publish_reads_json_lines_and_prints_the_confirmed_count() -> None:
    done = bus("publish", "memory://", "cli.test", "--key", "k", stdin=LINES)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4 published to cli.test\n"  # the blank line is not a message
    assert done.stderr == ""


def test_tail_memory_prints_what_comes_through_the_bridge_decoded() -> None:
    done = bus("tail", "memory://", "cli.test", "--json", stdin=LINES)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["payload"] for r in rows] == [
        {"n": 1}, [1, "two"], "three", {"n": 4, "nested": {"x": None}}
    ]
    assert {r["topic"] for r in rows} == {"cli.test"}
    assert [r["id"] for r in rows] == ["stdin-1", "stdin-3", "stdin-4", "stdin-5"]
    assert all(r["headers"] == {} and r["key"] is None for r in rows)


def test_tail_count_stops_after_n_and_renders_one_line_each() -> None:
    done = bus("tail", "memory://", "cli.test", "--count", "2", stdin=LINES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        'cli.test  key=-  {"n": 1}',
        'cli.test  key=-  [1, "two"]',
    ]
    assert done.stderr == ""  # the messages left unhandled are not reported as a problem


def test_a_line_that_is_not_json_is_a_usage_error() -> None:
    done = bus("publish", "memory://", "cli.test", stdin='{"ok": 1}\n{oops\n{"ok": 3}\n')
    line = one_error_line(done, 2)
    assert "stdin line 2 is not JSON" in line and "'{oops'" in line
    assert line.endswith("the 1 line before it was published (confirmed); nothing after it "
                          "was sent")
    assert done.stdout == "1 published to cli.test\n"
    done = bus("publish", "memory://", "cli.test", stdin='{oops\n{"ok": 2}\n')
    assert one_error_line(done, 2).endswith("'{oops'; nothing was published")
    assert done.stdout == "0 published to cli.test\n"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["tail", "nats://127.0.0.1", "t"], "bad broker URL 'nats://127.0.0.1': unknown scheme"),
        (["publish", "memory://", "orders.*"], "publish needs a topic, not a pattern"),
        (["topics", "memory://", "create"], "topics create needs a NAME"),
        (["tail", "memory://", "t", "--count", "0"], "--count: must be at least 1"),
        (["tail", "memory://"], "tail needs a TOPIC (or an amqp:// URL naming a queue"),
        (["tail", "memory://", "t", "--consume"], "--consume goes with an amqp:// URL naming"),
        (["dead-letters", "count", "memory://"], "bus dead-letters reads Kafka and RabbitMQ"),
        (["dead-letters", "list", "memory://", "--dry-run"], "--dry-run goes with replay"),
        (["--log-level", "loud", "topics", "memory://"], "invalid choice: 'loud'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], problem: str) -> None:
    assert problem in one_error_line(bus(*args), 2)


def test_an_unreachable_broker_is_one_line_and_exit_1() -> None:
    # port 1 on loopback: nothing listens, the connection is refused at once
    done = bus("publish", "kafka://127.0.0.1:1", "t", "--timeout", "5", stdin='{"a": 1}\n')
    line = one_error_line(done, 1)
    assert "127.0.0.1:1" in line


def test_topics_on_memory_create_and_list_within_one_process() -> None:
    done = bus("topics", "memory://", "create", "cli.made")
    assert (done.returncode, done.stdout) == (0, "created cli.made\n"), done.stderr
    # memory:// is this process's broker: the next command starts with none
    done = bus("topics", "memory://", "list")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr


def test_log_level_info_writes_json_lines_on_stderr_when_not_a_terminal() -> None:
    done = bus("--log-level", "debug", "publish", "memory://", "cli.test", stdin='{"a": 1}\n')
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert "bus.open" in names and "bridge.attached" in names and "bus.close" in names
    attached = events[names.index("bridge.attached")]
    assert attached["bridge"] == "bus-cli" and attached["export"] == ["cli.test"]
    assert {e["level"] for e in events} == {"debug"}
    # the default level (warning) leaves a clean run silent
    assert bus("publish", "memory://", "cli.test", stdin='{"a": 1}\n').stderr == ""


def test_demo_bridge_memory_mirrors_the_shop_and_says_so() -> None:
    done = bus("demo", "--quiet", "--orders", "6", "--bridge", "memory://")
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("mirrored", 1)[1]
    first = summary.splitlines()[0]
    assert first.startswith("  to memory:// (bridge 'demo'): ")
    handed = int(first.split(": ", 1)[1].split()[0])
    assert f"{handed} confirmed by the broker, 0 refused" in first
    exported = {
        line.split()[0]: int(line.split()[1])
        for line in summary.splitlines()[2:] if line.strip()
    }
    assert exported["order.placed"] == 6 and sum(exported.values()) == handed
    assert "bus.dead_letter" in exported and len(exported) == 11


def run_with_terminal_stderr(*args: str, stdin: str) -> tuple[int, str, str]:
    """Run ``bus`` with stderr on a pseudo-terminal (as in a shell); stdout a pipe."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=follower, cwd=ROOT, env=env,
    )
    os.close(follower)
    out, _ = proc.communicate(stdin.encode(), timeout=60)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.returncode, out.decode(), b"".join(chunks).decode()


def test_on_a_terminal_logs_are_for_people_and_publish_shows_progress() -> None:
    code, out, err = run_with_terminal_stderr(
        "publish", "memory://", "cli.test", "--log-level", "debug", stdin=LINES
    )
    assert code == 0 and out == "4 published to cli.test\n"
    assert "{" not in err.split("confirmed")[0]  # console lines, not JSON objects
    assert "bus.open" in err and "bridge.attached" in err and "bridge=bus-cli" in err
    assert "\rconfirmed 4" in err  # the progress line's last state


def test_ctrl_c_ends_a_tail_quietly_with_130() -> None:
    import select
    import signal

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "--log-level", "info", "tail", "memory://", "cli.test"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env=env,
    )
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    proc.stdin.write('{"n": 1}\n')  # stdin stays open: the tail waits for more
    proc.stdin.flush()
    assert select.select([proc.stderr], [], [], 30)[0], "the tail logged nothing within 30 s"
    started = proc.stderr.readline()
    assert json.loads(started)["event"] == "tail.started"
    assert select.select([proc.stdout], [], [], 30)[0], "the tail printed nothing within 30 s"
    first = proc.stdout.readline()  # the message went through: now interrupt the tail
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert first + out == 'cli.test  key=-  {"n": 1}\n'
    assert "Traceback" not in err and "error" not in err, err


def test_main_in_process_puts_the_logging_configuration_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    import structlog

    from bus.cli import main

    structlog.reset_defaults()
    handlers = list(logging.getLogger().handlers)
    assert main(["--log-level", "debug", "topics", "memory://", "create", "cli.x"]) == 0
    assert capsys.readouterr().out == "created cli.x\n"
    assert not structlog.is_configured()  # the library is silent again
    assert logging.getLogger().handlers == handlers


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    done = bus("--version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"bus (trio-bus) {version('trio-bus')}\n", ""
    )


def test_sigterm_ends_a_publish_saying_how_far_it_got() -> None:
    import pty
    import re
    import select
    import signal

    # stderr on a terminal, as a user's: the progress ("confirmed N") is shown there
    terminal, stderr = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "publish", "memory://", "cli.pub"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT, env=env,
    )
    os.close(stderr)
    assert proc.stdin is not None
    proc.stdin.write(b'{"n": 1}\n{"n": 2}\n{"n": 3}\n')  # stdin stays open: more may come
    proc.stdin.flush()
    shown = b""
    while b"confirmed" not in shown:  # the first confirmation is shown at once
        assert select.select([terminal], [], [], 30)[0], "no progress within 30 s"
        shown += os.read(terminal, 4096)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    while select.select([terminal], [], [], 0)[0]:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert proc.returncode == 128 + signal.SIGTERM, shown
    last = [line for line in shown.decode().replace("\r", "\n").splitlines() if line][-1]
    said = re.fullmatch(
        r"bus: SIGTERM: stopped reading after (\d) message\(s\): (\d) published "
        r"\(confirmed\); nothing after them was read", last,
    )
    assert said is not None, shown
    assert said[1] == said[2] and out.decode() == f"{said[1]} published to cli.pub\n"
