"""`bus bridge CONFIG.toml`: the file is checked at start, one clear error per problem.

No broker is contacted: every case stops at the configuration (``--check`` for the good
file). Secrets come from the environment and never show in an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bus.cli._service.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "bridge.toml"

GOOD = """
[service]
metrics_port = 0
dead_letter = { broker = "rabbit", topic = "mirror.dead_letter" }

[brokers.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
sasl_plain_password_env = "KAFKA_PW"

[brokers.rabbit]
type = "rabbitmq"
url = "amqp://mirror@127.0.0.1:5672/"
password_env = "RABBIT_PW"

[brokers.rabbit.export]
batch = 64
retry = { base_delay = 0.5, max_delay = 5 }

[[topics]]
pattern = "orders.*"
payload = "json"
import_from = "kafka"
export_to = ["rabbit"]

[[topics]]
name = "payments.settled"
import_from = "rabbit"
export_to = "kafka"
"""
ENV = {"KAFKA_PW": "k-s3cret", "RABBIT_PW": "r-s3cret/@"}


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return str(path)


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), ENV if environ is None else environ)
    message = str(info.value)
    assert "\n" not in message
    for secret in ENV.values():
        assert secret not in message
    return message


def test_a_good_file(tmp_path: Path) -> None:
    config = load(_write(tmp_path, GOOD), ENV)
    assert config.imports("kafka") == ["orders.*"]
    assert config.exports("kafka") == ["payments.settled"]
    assert config.imports("rabbit") == ["payments.settled"]
    assert config.exports("rabbit") == ["orders.*", "mirror.dead_letter"]  # dead letters too
    rabbit, kafka = config.brokers["rabbit"], config.brokers["kafka"]
    assert rabbit.batch == 64 and rabbit.retry.attempts is None and rabbit.retry.max_delay == 5
    assert kafka.options["sasl_plain_password"] == "k-s3cret"
    # the password goes into the URL, percent-encoded
    assert rabbit.options["url"] == "amqp://mirror:r-s3cret%2F%40@127.0.0.1:5672/"
    assert "s3cret" not in repr(config)
    assert config.metrics_host == "127.0.0.1" and config.drain_timeout == 30.0
    assert [r.payload for r in config.routes] == ["json", "raw"]
    bridge = rabbit.make()
    assert bridge.name == "rabbit" and "s3cret" not in repr(bridge)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("bootstrap_servers =", "bootstrap_server ="),
         "[brokers.kafka] unknown key 'bootstrap_server'; did you mean 'bootstrap_servers'?"),
        (('sasl_plain_password_env = "KAFKA_PW"', 'sasl_plain_password = "hunter2"'),
         "[brokers.kafka] sasl_plain_password holds a secret written in the file"),
        (('url = "amqp://mirror@', 'url = "amqp://mirror:hunter2@'),
         "[brokers.rabbit] url has a password written in the file"),
        (('type = "kafka"', 'type = "kafak"'),
         "[brokers.kafka] type = 'kafak': expected one of ['kafka', 'kinesis', 'pubsub', "
         "'rabbitmq', 'redis']"),
        (("batch = 64", "batch = 0"), "[brokers.rabbit].export batch = 0: expected >= 1"),
        (("batch = 64", 'batch = "64"'),
         "[brokers.rabbit].export batch = '64': expected an integer"),
        (("max_delay = 5", "max_delay = 0.1"), "[brokers.rabbit].export.retry: "),
        (('payload = "json"', 'payload = "avro"'), "[[topics]] #1 payload = 'avro': expected"),
        (('export_to = ["rabbit"]', 'export_to = ["rabbitmq"]'),
         "[[topics]] #1 export_to names broker 'rabbitmq', which has no [brokers.rabbitmq]"),
        (('export_to = ["rabbit"]', 'export_to = ["kafka"]'),
         "[[topics]] #1 (orders.*) imports from and exports to 'kafka'"),
        (('export_to = ["rabbit"]', ""), "[[topics]] #1 (orders.*) has no export_to"),
        (('pattern = "orders.*"', 'pattern = "orders.*"\nname = "orders.x"'),
         "[[topics]] #1 needs exactly one of name"),
        (('pattern = "orders.*"', 'pattern = "orders..*"'), "[[topics]] #1: "),
        (("metrics_port = 0", "metrics_port = 70000"), "[service] metrics_port = 70000"),
        (("metrics_port = 0", 'log_level = "loud"'), "[service] log_level = 'loud'"),
        (("metrics_port = 0", "drain_timeout = -1"), "[service] drain_timeout = -1.0"),
        (("metrics_port = 0", "metrics_prot = 1"),
         "[service] unknown key 'metrics_prot'; did you mean 'metrics_port'?"),
        (("export_to =", "export_too ="),
         "[[topics]] #1 unknown key 'export_too'; did you mean 'export_to'?"),
        (('broker = "rabbit", topic', 'broker = "nope", topic'),
         "[service.dead_letter] broker = 'nope'"),
        (('broker = "rabbit", topic', 'broker = "rabbit", group = "dl", topic'),
         "[service.dead_letter] group is for a pubsub broker only"),
        (('broker = "rabbit", topic', 'broker = "kafka", queue = "dl", topic'),
         "[service.dead_letter] queue is for a rabbitmq broker only"),
    ],
)
def test_one_clear_error_per_problem(tmp_path: Path, change: Any, expected: str) -> None:
    old, new = change
    assert old in GOOD
    message = _error(tmp_path, GOOD.replace(old, new, 1))
    assert expected in message, message
    assert message.startswith(str(tmp_path / "bridge.toml") + ": ")


def test_types_of_constructor_options_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace('password_env = "RABBIT_PW"', 'password_env = "RABBIT_PW"\nprefetch = "x"')
    assert "[brokers.rabbit] prefetch = 'x': expected int" in _error(tmp_path, text)
    # a constructor's own check is reported with the table, before any connection
    text = GOOD.replace('password_env = "RABBIT_PW"', 'password_env = "RABBIT_PW"\nprefetch = 0')
    config = load(_write(tmp_path, text), ENV)
    with pytest.raises(ConfigError, match=r"\[brokers.rabbit\]: prefetch must be at least 1"):
        config.brokers["rabbit"].make()


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD, {"RABBIT_PW": "x"})
    assert message.endswith(
        "[brokers.kafka] sasl_plain_password_env = 'KAFKA_PW': environment variable "
        "KAFKA_PW is not set"
    )
    # any option may come from the environment, converted to its type
    text = GOOD.replace("prefetch", "x").replace(
        'password_env = "RABBIT_PW"', 'password_env = "RABBIT_PW"\nprefetch_env = "N"'
    )
    config = load(_write(tmp_path, text), {**ENV, "N": "64"})
    assert config.brokers["rabbit"].options["prefetch"] == 64
    message = _error(tmp_path, text, {**ENV, "N": "k-s3cret"})
    assert "[brokers.rabbit] prefetch_env = the value of $N: expected int" in message
    # secrets nested in a table of client options are refused as well
    text = GOOD.replace(
        'bootstrap_servers = "127.0.0.1:9092"',
        'bootstrap_servers = "127.0.0.1:9092"\nconsumer_options = { sasl_plain_password = "x" }',
    )
    assert "consumer_options.sasl_plain_password holds a secret" in _error(tmp_path, text)


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(str(tmp_path / "missing.toml"), {})
    assert "not valid TOML" in _error(tmp_path, "[service\n")
    assert "no [brokers.NAME] table" in _error(tmp_path, "[service]\n")
    assert "unknown key 'topic'" in _error(tmp_path, GOOD + "\n[[topic]]\n")
    assert "no [[topics]] entry" in _error(tmp_path, GOOD.split("[[topics]]")[0])


def test_parse_without_a_file() -> None:
    import tomllib

    config = parse(tomllib.loads(GOOD), path="<inline>", environ=ENV)
    assert config.path == "<inline>" and len(config.routes) == 2


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "bridge", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_cli_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('sasl_plain_password_env = "KAFKA_PW"',
                                         'sasl_plain_password = "hunter2"'))
    done = _cli(path, env=ENV)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"bus bridge: error: {path}: [brokers.kafka] sasl_plain_password")
    assert "hunter2" not in done.stderr


def test_cli_check_of_the_documented_example() -> None:
    done = _cli("--check", str(EXAMPLE), env={"RABBITMQ_PASSWORD": "guest"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{EXAMPLE}: OK: 2 broker(s), 2 route(s)"


def test_kinesis_and_pubsub_tables(tmp_path: Path) -> None:
    text = """
[brokers.kin]
type = "kinesis"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:4568"
access_key_id = "testing"
secret_access_key_env = "AWS_SECRET"
shard_count = 2
initial_position = "LATEST"

[brokers.ps]
type = "pubsub"
project = "p"
emulator_host = "127.0.0.1:8085"

[[topics]]
pattern = "a.#"
import_from = "kin"
export_to = "ps"
"""
    config = load(_write(tmp_path, text), {"AWS_SECRET": "s3cret"})
    kinesis = config.brokers["kin"].make()
    assert kinesis.name == "kin" and "s3cret" not in repr(kinesis)
    assert config.brokers["ps"].make().name == "ps"
    message = _error(tmp_path, text.replace('"LATEST"', '"EARLIEST"'), {"AWS_SECRET": "x"})
    assert "[brokers.kin] initial_position = 'EARLIEST': expected Literal[" in message


def test_cli_unreachable_brokers_exit_1_one_line_each(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[service]
log_level = "warning"
connect_timeout = 5
metrics_port = 0

[brokers.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:1"

[brokers.rabbit]
type = "rabbitmq"
url = "amqp://mirror@127.0.0.1:1/"
password_env = "RABBIT_PW"

[[topics]]
pattern = "a.*"
import_from = "kafka"
export_to = "rabbit"
""")
    done = _cli(path, env=ENV)
    assert done.returncode == 1, done.stderr
    # the first failure cancels the other attach, unless both failed already
    lines = done.stderr.splitlines()
    assert 1 <= len(lines) <= 2, done.stderr
    for line in lines:
        assert line.startswith((
            "bus bridge: error: RabbitMQ bridge 'rabbit' cannot reach "
            "amqp://mirror:***@127.0.0.1:1/",
            "bus bridge: error: kafka: connecting to 127.0.0.1:1 failed",
        )), line
    assert "s3cret" not in done.stderr
