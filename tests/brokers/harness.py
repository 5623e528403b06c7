#!/usr/bin/env python3
"""Real brokers on 127.0.0.1 for trio-bus tests: install on first use, start, wait, stop.

Stdlib only, so it runs before the project's venv exists.

    python3 tests/brokers/harness.py up [NAME ...]    # install if missing, start all, wait
    python3 tests/brokers/harness.py down [NAME ...]  # stop by PID, wipe data, check none left
    python3 tests/brokers/harness.py status           # health as '# ...' lines + export lines
    python3 tests/brokers/harness.py env              # export lines only
    python3 tests/brokers/harness.py restart NAME     # stop, start, wait (data kept)
    python3 tests/brokers/harness.py logs NAME        # tail of the server's log

From Python (e.g. a reconnection test): ``harness.restart("kafka")``.

NAME is one of kafka, rabbitmq, kinesis, pubsub, redis. Runtime state lives in
$TRIO_BUS_BROKERS_DIR (default /tmp/trio-bus-brokers/<name>/{pid,log,data}); downloads
(Kafka jars, the kinesis-local npm package) in $TRIO_BUS_CACHE (default ~/.cache/trio-bus).
$TRIO_BUS_PORT_OFFSET (default 0) shifts every port the servers listen on (Kafka 9092 and
its controller 9093, RabbitMQ 5672 with its own epmd and distribution ports, Kinesis 4568,
Pub/Sub 8085, Redis 6379), so a second set of brokers with its own TRIO_BUS_BROKERS_DIR can
run beside the first (e.g. two checkouts testing at once); `env` prints the shifted
addresses. Use offsets that keep the sets apart (100, 200, ...).

Every process started here carries TRIO_BUS_BROKER=<name> in its environment: that is how
a PID read back from a file is checked before it is signalled, and how `down` proves
nothing was left behind.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
PORT_OFFSET = int(os.environ.get("TRIO_BUS_PORT_OFFSET") or 0)
STATE = Path(os.environ.get("TRIO_BUS_BROKERS_DIR", "/tmp/trio-bus-brokers"))
CACHE = Path(
    os.environ.get("TRIO_BUS_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trio-bus"
)

KAFKA_VERSION = "4.1.1"  # org.apache.kafka:kafka_2.13 on Maven Central
LOG4J_VERSION = "2.24.3"  # the log4j-core that kafka-server 4.1.1 itself depends on
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
KINESIS_LOCAL_VERSION = "0.6.2"  # npm kinesis-local = kinesis-mock compiled to JS
GCP_PROJECT_ID = "trio-bus-test"
AWS_REGION = "us-east-1"

MARK = "TRIO_BUS_BROKER"
ALL = ("kafka", "rabbitmq", "kinesis", "pubsub", "redis")

_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(f"[brokers] {msg}", file=sys.stderr, flush=True)


class HarnessError(Exception):
    """A broker could not be installed, started, made ready or stopped."""


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces: split after the closing parenthesis
    return raw[raw.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def age(pid: int) -> float | None:
    """Seconds since process `pid` started, from /proc (None if it is gone)."""
    stat = _proc_stat(pid)
    if stat is None:
        return None
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK")


def stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP, or a debugger): alive, and answering nothing."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] in ("T", "t")


def _marked(pid: int) -> str | None:
    """The broker name this harness (same state dir) gave process `pid`, if any."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    if not any(b"=" in item for item in env):
        # redis-server rewrites its process title over its environment block: there the
        # working directory it was started in (the broker's own folder) identifies it.
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None
        if cwd.is_relative_to(STATE) and cwd != STATE:
            return cwd.relative_to(STATE).parts[0]
        return None
    if f"TRIO_BUS_BROKERS_DIR={STATE}".encode() not in env:
        return None
    for item in env:
        if item.startswith(MARK.encode() + b"="):
            return item.split(b"=", 1)[1].decode()
    return None


def marked_pids(name: str | None = None) -> dict[int, str]:
    """Live processes started by this harness: {pid: broker name}."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        owner = _marked(pid)
        if owner and (name is None or owner == name) and alive(pid):
            found[pid] = owner
    return found


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(current RSS, peak RSS) summed over pids, in KiB, from /proc/<pid>/status."""
    rss = peak = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
    return rss, peak


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# The server is started by a short-lived intermediate Python process (a double fork), so it
# is never a child of the caller: no zombie and no Popen left behind in a long-lived pytest
# process that restarts brokers, and a new session so the group can be signalled together.
_SPAWN = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,\n"
    "                     stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid)\n"
)


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        timeout=timeout,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- installs

_apt_lock = threading.Lock()


def dpkg_installed(package: str) -> bool:
    out = run(["dpkg-query", "-W", "-f=${Status}", package])
    return out.returncode == 0 and out.stdout.strip() == "install ok installed"


def apt_ensure(packages: list[str]) -> None:
    """Install Debian packages that are missing (one apt run for all of them)."""
    with _apt_lock:
        missing = [p for p in packages if not dpkg_installed(p)]
        if not missing:
            return
        if os.geteuid() != 0:
            raise HarnessError(
                f"missing Debian packages {missing}; run as root or: "
                f"sudo apt-get install -y {' '.join(missing)}"
            )
        say(f"apt-get install {' '.join(missing)} (first use)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            out = run(argv, env=env, timeout=1200)
            if out.returncode != 0:
                raise HarnessError(f"{' '.join(argv)} failed:\n{out.stdout[-3000:]}")
        still = [p for p in missing if not dpkg_installed(p)]
        if still:
            raise HarnessError(f"apt-get did not install {still}")


def package_file(package: str, suffix: str) -> Path:
    out = run(["dpkg", "-L", package])
    for line in out.stdout.splitlines():
        if line.endswith(suffix) and os.access(line, os.X_OK):
            return Path(line)
    raise HarnessError(f"no {suffix} in Debian package {package}")


# --------------------------------------------------------------------------- brokers


class Broker:
    name = ""
    port = 0
    ready_timeout = 60.0
    stop_timeout = 30.0
    """Seconds a graceful stop may take before SIGKILL."""
    apt_packages: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.dir = STATE / self.name
        self.pidfile = self.dir / "pid"
        self.logfile = self.dir / "log"
        self.data = self.dir / "data"

    # what clients read
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    # one-time, cached
    def install(self) -> None:
        pass

    # per start: config files, formatting; returns argv and extra environment
    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    # health: None when the server answers its own API, else why not
    def probe(self) -> str | None:
        raise NotImplementedError

    # ---- shared machinery

    def base_env(self) -> dict[str, str]:
        return dict(os.environ, **{MARK: self.name, "TRIO_BUS_BROKERS_DIR": str(STATE)})

    def pid(self) -> int | None:
        """PID from the pid file, only if that process is alive and was started here."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid and alive(pid) and _marked(pid) == self.name:
            return pid
        # pid file lost (e.g. an interrupted start): the oldest process carrying our mark
        mine = sorted(marked_pids(self.name))
        return mine[0] if mine else None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        argv, extra = self.command()
        self._log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with self.logfile.open("a") as log:
            log.write(
                f"\n==== trio-bus harness: starting {self.name} at {time.ctime()}\n"
                f"==== {shlex.join(argv)}\n"
            )
        out = run(
            [sys.executable, "-c", _SPAWN, str(self.logfile), *argv],
            env={**self.base_env(), **extra},
            cwd=self.dir,
            timeout=60,
        )
        if out.returncode != 0:
            raise HarnessError(f"could not launch {argv[0]}: {out.stdout}")
        self.pidfile.write_text(out.stdout.strip() + "\n")

    def is_ready(self) -> bool:
        return self.probe() is None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            pid = self.pid()
            if pid is None:
                raise HarnessError(f"{self.name} exited during start-up")
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name} not ready after {self.ready_timeout:.0f} s ({self.probe()})"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Graceful stop by PID (SIGTERM to the group we started), then sweep leftovers."""
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)  # the session we started: the server + children
                os.killpg(pid, signal.SIGCONT)  # a stopped server acts on SIGTERM only then
            except (ProcessLookupError, PermissionError):
                signal_pid(pid, signal.SIGTERM)
                signal_pid(pid, signal.SIGCONT)
            if wait_gone([pid], self.stop_timeout):
                waited = f"{self.stop_timeout:.0f} s"
                say(f"{self.name}: pid {pid} ignored SIGTERM for {waited}, SIGKILL")
                signal_pid(pid, signal.SIGKILL)
                wait_gone([pid], 10)
        self.sweep()
        self.pidfile.unlink(missing_ok=True)

    def sweep(self) -> None:
        """Any process still carrying this broker's mark: SIGTERM, then SIGKILL."""
        left = list(marked_pids(self.name))
        if not left:
            return
        for pid in left:
            signal_pid(pid, signal.SIGTERM)
        left = wait_gone(left, 10)
        for pid in left:
            signal_pid(pid, signal.SIGKILL)
        left = wait_gone(left, 5)
        if left:
            raise HarnessError(f"{self.name}: processes survive SIGKILL: {left}")

    def memory(self) -> tuple[int, int]:
        return memory_kib(list(marked_pids(self.name)))

    HUNG_GRACE = 5.0
    """Seconds a server that was up must keep failing its probe before it is called hung
    (a long GC pause is not a hang)."""

    def hung(self) -> str | None:
        """Why this server is DOWN behind a live PID (stopped, or up long enough and not
        answering for HUNG_GRACE seconds); None when it answers, has no PID, or is still
        starting (younger than its ready_timeout)."""
        pid = self.pid()
        if pid is None:
            return None
        if stopped(pid):
            return f"pid {pid} is stopped (state T)"
        started = age(pid)
        if started is not None and started < self.ready_timeout:
            return None
        deadline = time.monotonic() + self.HUNG_GRACE
        while (why := self.probe()) is not None:
            if time.monotonic() > deadline:
                return f"pid {pid} alive for {started or 0:.0f} s but {why}"
            time.sleep(0.25)
        return None


# ---- Kafka


def kafka_cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never
    starting with '-' (StorageTool reads ``-t -abc…`` as a missing argument: 1 format in
    64 failed that way; Kafka's own random ids skip those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

class Kafka(Broker):
    name = "kafka"
    port = 9092 + PORT_OFFSET
    controller_port = 9093 + PORT_OFFSET
    ready_timeout = 120.0

    @property
    def home(self) -> Path:
        return CACHE / f"kafka_2.13-{KAFKA_VERSION}"

    def env(self) -> dict[str, str]:
        return {"KAFKA_SERVER": f"{HOST}:{self.port}"}

    def install(self) -> None:
        stamp = self.home / ".complete"
        if stamp.exists():
            return
        say(f"kafka: downloading kafka_2.13 {KAFKA_VERSION} jars from Maven Central (first use)")
        if shutil.which("mvn") is None:
            raise HarnessError("mvn not found (apt-get install maven)")
        libs = self.home / "libs"
        shutil.rmtree(libs, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        deps = [
            ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
        ]
        pom = self.home / "pom.xml"
        pom.write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
            "  <modelVersion>4.0.0</modelVersion>\n"
            "  <groupId>trio-bus</groupId><artifactId>kafka-runtime</artifactId>"
            "<version>0</version>\n  <dependencies>\n"
            + "".join(
                f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
                f"<version>{v}</version></dependency>\n"
                for g, a, v in deps
            )
            + "  </dependencies>\n</project>\n"
        )
        out = run(
            [
                "mvn",
                "-B",
                "-q",
                f"-Dmaven.repo.local={CACHE / 'm2'}",
                "-f",
                str(pom),
                f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            timeout=1200,
        )
        if out.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            raise HarnessError(f"mvn copy-dependencies failed:\n{out.stdout[-3000:]}")
        stamp.write_text(KAFKA_VERSION + "\n")

    def java(self) -> list[str]:
        return [
            "java",
            "-Xms512m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.home / 'libs'}/*",
        ]

    def command(self) -> tuple[list[str], dict[str, str]]:
        props = self.dir / "server.properties"
        props.write_text(
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.voters=1@{HOST}:{self.controller_port}\n"
            f"listeners=PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://{HOST}:{self.port}\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={self.data}\n"
            "num.partitions=1\n"
            "offsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=1\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "transaction.state.log.num.partitions=1\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\n"
        )
        (self.dir / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.console.type = Console\n"
            "appender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )
        if not (self.data / "meta.properties").exists():
            cluster_id = kafka_cluster_id()
            out = run(
                [
                    *self.java(),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                env=self.base_env(),
                timeout=120,
            )
            if out.returncode != 0:
                raise HarnessError(f"kafka storage format failed:\n{out.stdout[-3000:]}")
        return [*self.java(), "kafka.Kafka", str(props)], {}

    def is_ready(self) -> bool:
        try:
            with self.logfile.open("rb") as log:
                log.seek(getattr(self, "_log_offset", 0))
                started = b"Kafka Server started" in log.read()
        except OSError:
            started = False
        return started and self.probe() is None

    def probe(self) -> str | None:
        # ApiVersions v0: the request every Kafka client sends first.
        client = b"trio-bus-harness"
        body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(struct.pack(">i", len(body)) + body)
                head = _recv_exact(s, 10)
        except OSError as exc:
            return f"no ApiVersions answer: {exc}"
        _size, correlation, error = struct.unpack(">iih", head)
        if correlation != 7 or error != 0:
            return f"ApiVersions error code {error}"
        return None


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


# ---- RabbitMQ


class RabbitMQ(Broker):
    name = "rabbitmq"
    port = 5672 + PORT_OFFSET
    ready_timeout = 90.0
    apt_packages = ("rabbitmq-server",)
    # a shifted set runs its own node, epmd and distribution port beside the default one
    node = f"rabbit{PORT_OFFSET or ''}@localhost"
    epmd_port = 4369 + PORT_OFFSET
    dist_port = 25672 + PORT_OFFSET

    def env(self) -> dict[str, str]:
        return {"RABBITMQ_URL": f"amqp://guest:guest@{HOST}:{self.port}/"}

    def rmq_env(self) -> dict[str, str]:
        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            **self.base_env(),
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_MNESIA_BASE": str(self.data / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.data / "logs"),
            "RABBITMQ_LOGS": str(self.logfile),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Erlang distribution (used by rabbitmqctl) on loopback only
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def tool(self, name: str) -> str:
        return str(package_file("rabbitmq-server", "bin/rabbitmq-server").parent / name)

    def command(self) -> tuple[list[str], dict[str, str]]:  # pragma: no cover - unused
        raise NotImplementedError

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbit.pid").unlink(missing_ok=True)
        with self.logfile.open("a") as log:
            log.write(f"\n==== trio-bus harness: starting rabbitmq at {time.ctime()}\n")
        out = run(
            [self.tool("rabbitmq-server"), "-detached"],
            env=self.rmq_env(),
            cwd=self.dir,
            timeout=60,
        )
        if out.returncode != 0:
            raise HarnessError(f"rabbitmq-server -detached failed:\n{out.stdout}")

    def wait_ready(self) -> None:
        # rabbitmqctl wait <pidfile>: waits for the pid file, then for the app to be running
        out = run(
            [
                self.tool("rabbitmqctl"),
                "-n",
                self.node,
                "wait",
                "--timeout",
                str(int(self.ready_timeout)),
                str(self.dir / "rabbit.pid"),
            ],
            env=self.rmq_env(),
            timeout=self.ready_timeout + 30,
        )
        if out.returncode != 0:
            raise HarnessError(f"rabbitmqctl wait failed:\n{out.stdout[-2000:]}")
        with contextlib.suppress(OSError):
            self.pidfile.write_text((self.dir / "rabbit.pid").read_text().strip() + "\n")
        deadline = time.monotonic() + 10
        while (why := self.probe()) is not None:
            if time.monotonic() > deadline:
                raise HarnessError(f"rabbitmq app running but AMQP not answering: {why}")
            time.sleep(0.1)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            # `rabbitmqctl stop PIDFILE` waits until the process in PIDFILE exits, and waits
            # for the file itself when it is missing (an interrupted restart loses it; the
            # pid was then found by its mark): write it back first.
            self.pidfile.write_text(f"{pid}\n")
            if stopped(pid):  # a stopped node answers no rabbitmqctl: let it run to stop
                signal_pid(pid, signal.SIGCONT)
            out = run(
                [self.tool("rabbitmqctl"), "-n", self.node, "stop", str(self.pidfile)],
                env=self.rmq_env(),
                timeout=90,
            )
            if out.returncode != 0:
                say(f"rabbitmq: rabbitmqctl stop failed ({out.stdout.strip()[-300:]}), SIGTERM")
                signal_pid(pid, signal.SIGTERM)
            if wait_gone([pid], 30):
                signal_pid(pid, signal.SIGKILL)
                wait_gone([pid], 10)
        # epmd outlives beam: ask it to go once no node is registered (refused otherwise).
        if any(command_line(p).split()[0].endswith("epmd") for p in marked_pids(self.name)):
            epmd = shutil.which("epmd") or "epmd"
            run([epmd, "-kill"], env=self.rmq_env(), timeout=30)
        self.sweep()
        self.pidfile.unlink(missing_ok=True)

    def probe(self) -> str | None:
        # AMQP 0-9-1 protocol header; the server answers with a Connection.Start method frame
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                head = _recv_exact(s, 7)
        except OSError as exc:
            return f"no AMQP answer: {exc}"
        if head[0] != 1:
            return f"unexpected AMQP frame {head!r}"
        return None


# ---- Kinesis (kinesis-mock)


class Kinesis(Broker):
    name = "kinesis"
    port = 4568 + PORT_OFFSET
    tls_port = 4567 + PORT_OFFSET
    ready_timeout = 60.0
    # kinesis-mock saves its data every PERSIST_INTERVAL and when it exits cleanly. On
    # SIGTERM it stops the periodic saves but goes on serving (and acknowledging writes
    # on) open keep-alive connections; it exits only once they are all closed, which
    # polling clients never let happen (measured: still up after 100 s). Waiting longer
    # would not save more, so stop quickly: a restart keeps the streams and every record
    # written up to about a second before the SIGTERM, and loses writes acknowledged after
    # it (an emulator limit; real Kinesis is never restarted by its users).
    stop_timeout = 5.0

    @property
    def prefix(self) -> Path:
        return CACHE / "npm"

    @property
    def package(self) -> Path:
        return self.prefix / "node_modules" / "kinesis-local"

    def env(self) -> dict[str, str]:
        return {
            "KINESIS_ENDPOINT_URL": f"http://{HOST}:{self.port}",
            "AWS_REGION": AWS_REGION,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def install(self) -> None:
        try:
            version = json.loads((self.package / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            version = None
        if version == KINESIS_LOCAL_VERSION:
            return
        say(f"kinesis: npm install kinesis-local@{KINESIS_LOCAL_VERSION} (first use)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        out = run(
            [
                "npm",
                "install",
                "--prefix",
                str(self.prefix),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--loglevel=error",
                f"kinesis-local@{KINESIS_LOCAL_VERSION}",
            ],
            env=dict(os.environ, npm_config_cache=str(CACHE / "npm-cache")),
            timeout=900,
        )
        if out.returncode != 0 or not (self.package / "main.js").exists():
            raise HarnessError(f"npm install kinesis-local failed:\n{out.stdout[-3000:]}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ["node", str(self.package / "main.js")], {
            "KINESIS_MOCK_PLAIN_PORT": str(self.port),
            "KINESIS_MOCK_TLS_PORT": str(self.tls_port),
            "KINESIS_MOCK_CERT_PATH": str(self.package / "server.json"),
            "LOG_LEVEL": "WARN",
            "AWS_REGION": AWS_REGION,
            "CREATE_STREAM_DURATION": "0ms",
            "DELETE_STREAM_DURATION": "0ms",
            "REGISTER_STREAM_CONSUMER_DURATION": "0ms",
            "START_STREAM_ENCRYPTION_DURATION": "0ms",
            "STOP_STREAM_ENCRYPTION_DURATION": "0ms",
            "DEREGISTER_STREAM_CONSUMER_DURATION": "0ms",
            "MERGE_SHARDS_DURATION": "0ms",
            "SPLIT_SHARD_DURATION": "0ms",
            "UPDATE_SHARD_COUNT_DURATION": "0ms",
            # Keep streams and records across `restart` (see stop_timeout above).
            "SHOULD_PERSIST_DATA": "true",
            "LOAD_DATA_IF_EXISTS": "true",
            "PERSIST_PATH": str(self.data),
            "PERSIST_INTERVAL": "5s",
        }

    def start(self) -> None:
        # A SIGKILL (see stop_timeout) can land while kinesis-mock rewrites its data file,
        # leaving it truncated; it then refuses to start (NoSuchElementException). Keep
        # such a file aside and start empty rather than not at all.
        saved = self.data / "kinesis-data.json"
        try:
            json.loads(saved.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            saved.replace(saved.with_suffix(f".corrupt-{int(time.time())}"))
            say("kinesis: its saved data was unreadable (killed while writing it); starting empty")
        super().start()

    def probe(self) -> str | None:
        req = urllib.request.Request(
            f"http://{HOST}:{self.port}/",
            data=b"{}",
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "Kinesis_20131202.ListStreams",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/"
                f"{AWS_REGION}/kinesis/aws4_request, SignedHeaders=host, Signature=0",
                "X-Amz-Date": "20240101T000000Z",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            return f"ListStreams failed: {exc}"
        return None if "StreamNames" in body else f"ListStreams answered {body!r}"


# ---- Pub/Sub (Google's emulator; Go pstest where it is absent)


PSTEST_MAIN = """package main

import (
	"log"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	srv := pstest.NewServerWithAddress(os.Args[1])
	log.Printf("pstest listening on %s", srv.Addr)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	_ = srv.Close()
}
"""


JAVA_OPTS = "-Xmx2g -XX:+ExitOnOutOfMemoryError"
"""The Pub/Sub emulator's JVM. Its heap grows with every message published to a
subscription with message ordering (what the bridge creates) and never shrinks, not even
once the messages were acknowledged and the subscription and topic deleted: measured with
emulator 0.8.20, live heap after a full GC +17 MB per 15k messages acknowledged (+27 MB
per 15.5k left unread), and one thread per ordering key per subscription, never ended;
the same 15k messages without ordering leave nothing. A full `bus bench bridges`
publishes ~550k such messages (~0.8 GB: the old 768 MB heap ran out in round 5), so 2 GB
holds a full bench plus a `make test`; the JVM takes only what it uses. Out of heap, it
exits rather than live on answering nothing (a PID that `status` showed alive while the
server was DOWN): a gone server is seen and `up` starts it again."""


class PubSub(Broker):
    name = "pubsub"
    port = 8085 + PORT_OFFSET
    ready_timeout = 60.0

    def env(self) -> dict[str, str]:
        return {
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{self.port}",
            "PUBSUB_PROJECT_ID": GCP_PROJECT_ID,
            "GCP_PROJECT_ID": GCP_PROJECT_ID,
        }

    def emulator(self) -> str | None:
        if os.environ.get("TRIO_BUS_PUBSUB") == "pstest":
            return None
        found = shutil.which("cloud-pubsub-emulator")
        if found:
            return found
        try:
            return str(
                package_file("google-cloud-cli-pubsub-emulator", "bin/cloud-pubsub-emulator")
            )
        except HarnessError:
            return None

    @property
    def pstest(self) -> Path:
        return CACHE / "pstest" / "pstest"

    def install(self) -> None:
        if self.emulator() or self.pstest.exists():
            return
        say("pubsub: official emulator absent; building Go pstest (first use)")
        if shutil.which("go") is None:
            raise HarnessError("neither cloud-pubsub-emulator nor go is available")
        src = self.pstest.parent
        src.mkdir(parents=True, exist_ok=True)
        (src / "main.go").write_text(PSTEST_MAIN)
        env = dict(
            os.environ,
            GOFLAGS="-mod=mod",
            GOMODCACHE=str(CACHE / "go" / "mod"),
            GOCACHE=str(CACHE / "go" / "build"),
        )
        steps = [
            ["go", "mod", "init", "triobus/pstest"],
            ["go", "get", "cloud.google.com/go/pubsub/v2/pstest"],
            ["go", "build", "-o", str(self.pstest), "."],
        ]
        if (src / "go.mod").exists():
            steps = steps[1:]
        for argv in steps:
            out = run(argv, env=env, cwd=src, timeout=1200)
            if out.returncode != 0:
                raise HarnessError(f"{' '.join(argv)} failed:\n{out.stdout[-3000:]}")
        shutil.rmtree(CACHE / "go" / "build", ignore_errors=True)  # ~0.9 GB, binary is kept

    def command(self) -> tuple[list[str], dict[str, str]]:
        emulator = self.emulator()
        if emulator:
            return [emulator, f"--host={HOST}", f"--port={self.port}"], {"JAVA_OPTS": JAVA_OPTS}
        return [str(self.pstest), f"{HOST}:{self.port}"], {}

    def probe(self) -> str | None:
        if self.emulator():
            # The official emulator also serves the REST API: list the project's topics.
            url = f"http://{HOST}:{self.port}/v1/projects/{GCP_PROJECT_ID}/topics"
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    json.loads(resp.read())
            except (OSError, ValueError) as exc:
                return f"REST topics.list failed: {exc}"
            return None
        # pstest speaks gRPC only (HTTP/2): an h2c connection preface must be answered
        # with a SETTINGS frame; then the emulator's REST gateway (HTTP/1.1) if present.
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                s.sendall(preface + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
                head = _recv_exact(s, 9)
        except OSError as exc:
            return f"no gRPC answer: {exc}"
        if head[3] != 0x04:
            return f"unexpected HTTP/2 frame type {head[3]}"
        return None


# ---- Redis


class Redis(Broker):
    name = "redis"
    port = 6379 + PORT_OFFSET
    ready_timeout = 30.0
    apt_packages = ("redis-server",)

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": f"redis://{HOST}:{self.port}/0"}

    def command(self) -> tuple[list[str], dict[str, str]]:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            server,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            # AOF, fsync per write: confirmed entries survive a restart (the Redis
            # bridge's Features.persistent and the conformance suite's restart case)
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--dir",
            str(self.data),
            "--logfile",
            "",
        ], {}

    def probe(self) -> str | None:
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                answer = s.recv(64)
        except OSError as exc:
            return f"no PING answer: {exc}"
        return None if answer.startswith(b"+PONG") else f"PING answered {answer!r}"


BROKERS: dict[str, Broker] = {
    b.name: b for b in (Kafka(), RabbitMQ(), Kinesis(), PubSub(), Redis())
}


# --------------------------------------------------------------------------- commands


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One harness command at a time per state dir (e.g. two `make brokers-up`)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def select(names: list[str] | None) -> list[Broker]:
    if not names:
        env_names = os.environ.get("BROKERS", "").replace(",", " ").split()
        names = env_names or list(ALL)
    unknown = [n for n in names if n not in BROKERS]
    if unknown:
        raise HarnessError(f"unknown broker(s) {unknown}; known: {', '.join(ALL)}")
    return [BROKERS[n] for n in names]


def _bring_up(broker: Broker, apt: list[str], results: dict[str, str | None]) -> None:
    t0 = time.monotonic()
    try:
        if broker.pid() is not None:
            if broker.probe() is None:
                results[broker.name] = None
                say(f"{broker.name}: already up (pid {broker.pid()}), reused")
                return
            why = broker.hung()
            if why is None:
                say(f"{broker.name}: pid {broker.pid()} alive, not answering yet; waiting")
                broker.wait_ready()
                results[broker.name] = None
                return
            say(f"{broker.name}: DOWN behind a live pid ({why}); restarting it (data kept)")
            broker.stop()
        if port_open(broker.port):
            why = broker.probe()
            if why is None:
                results[broker.name] = None
                say(
                    f"{broker.name}: a server not started by this harness answers on "
                    f"{HOST}:{broker.port}; reused as is (brokers-down leaves it alone)"
                )
                return
            raise HarnessError(
                f"port {HOST}:{broker.port} is taken by something that is not a "
                f"working {broker.name}: {why}"
            )
        if broker.apt_packages:
            apt_ensure(apt)
        broker.install()
        t1 = time.monotonic()
        if broker.logfile.exists():  # one log per `up`; the previous one is kept beside it
            broker.logfile.replace(broker.logfile.with_name("log.prev"))
        results[broker.name] = "started"
        broker.start()
        broker.wait_ready()
        results[broker.name] = None
        say(
            f"{broker.name}: ready on {HOST}:{broker.port} in {time.monotonic() - t1:.1f} s "
            f"(pid {broker.pid()}; {time.monotonic() - t0:.1f} s with install)"
        )
    except Exception as exc:
        started = results.get(broker.name) == "started"
        results[broker.name] = f"{type(exc).__name__}: {exc}" + ("\n" if started else "")


def up(names: list[str] | None = None) -> int:
    brokers = select(names)
    t0 = time.monotonic()
    apt = [p for b in brokers for p in b.apt_packages]
    results: dict[str, str | None] = {}
    with locked():
        threads = [
            threading.Thread(target=_bring_up, args=(b, apt, results), name=b.name) for b in brokers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [b for b in brokers if results.get(b.name, "thread died") is not None]
        for b in failed:
            why = results.get(b.name) or "?"
            say(f"{b.name}: FAILED: {why.rstrip()}")
            if why.endswith("\n"):  # it was started: its own log says why it did not come up
                say(f"---- tail of {b.logfile} ----\n{tail(b.logfile)}\n---- end of {b.name} log")
            with contextlib.suppress(Exception):
                b.stop()
    say(
        f"{len(brokers) - len(failed)}/{len(brokers)} brokers ready in "
        f"{time.monotonic() - t0:.1f} s"
    )
    return 1 if failed else 0


def down(names: list[str] | None = None, *, keep_data: bool = False) -> int:
    brokers = select(names)
    errors: list[str] = []
    with locked():

        def stop_one(b: Broker) -> None:
            try:
                managed = b.pid() is not None or bool(marked_pids(b.name))
                b.stop()
                if not keep_data:
                    shutil.rmtree(b.data, ignore_errors=True)
                if managed:
                    say(f"{b.name}: stopped")
            except Exception as exc:
                errors.append(f"{b.name}: {exc}")

        threads = [threading.Thread(target=stop_one, args=(b,)) for b in brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        left = {p: n for p, n in marked_pids().items() if n in {b.name for b in brokers}}
    for pid, name in left.items():
        errors.append(f"{name}: pid {pid} still running: {command_line(pid)[:200]}")
    for e in errors:
        say(f"ERROR {e}")
    return 1 if errors else 0


def restart(name: str) -> None:
    """Stop one broker, start it again (data kept), wait until ready. For reconnection tests."""
    broker = select([name])[0]
    with locked():
        if broker.pid() is None and port_open(broker.port):
            raise HarnessError(f"{name} on port {broker.port} was not started by this harness")
        t0 = time.monotonic()
        broker.stop()
        broker.install()
        broker.start()
        try:
            broker.wait_ready()
        except HarnessError as exc:
            raise HarnessError(
                f"{exc}\n---- tail of {broker.logfile} ----\n{tail(broker.logfile)}"
            ) from None
        say(f"{name}: restarted in {time.monotonic() - t0:.1f} s (pid {broker.pid()})")


def env_lines(brokers: list[Broker]) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for b in brokers for k, v in b.env().items()]


def status(names: list[str] | None = None) -> int:
    brokers = select(names)
    bad = 0
    for b in brokers:
        pid = b.pid()
        why = b.probe()
        if why is None:
            if pid is not None:
                rss, peak = b.memory()
                who = (
                    f"pid {pid}, rss {rss / 1024:.0f} MB (peak {peak / 1024:.0f} MB), "
                    f"log {b.logfile}"
                )
            else:
                who = "not started by this harness"
            print(f"# {b.name:9s} healthy   {HOST}:{b.port}  {who}")
        else:
            bad += 1
            state = f"pid {pid} running but " if pid else ""
            hung = b.hung() if pid else None
            fix = f" -- hung ({hung}): `make brokers-up` restarts it" if hung else ""
            print(f"# {b.name:9s} DOWN      {HOST}:{b.port}  {state}{why}{fix}")
        for line in env_lines([b]):
            print(line)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("up", "down", "status", "env"):
        p = sub.add_parser(cmd)
        p.add_argument("names", nargs="*", metavar="NAME", help=", ".join(ALL))
    sub.choices["down"].add_argument("--keep-data", action="store_true")
    sub.add_parser("restart").add_argument("name", choices=ALL)
    sub.add_parser("logs").add_argument("name", choices=ALL)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            return up(args.names)
        if args.cmd == "down":
            return down(args.names, keep_data=args.keep_data)
        if args.cmd == "status":
            return status(args.names)
        if args.cmd == "env":
            print("\n".join(env_lines(select(args.names))))
            return 0
        if args.cmd == "restart":
            restart(args.name)
            return 0
        if args.cmd == "logs":
            print(tail(BROKERS[args.name].logfile, 80))
            return 0
    except HarnessError as exc:
        say(f"ERROR {exc}")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
