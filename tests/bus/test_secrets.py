"""Secrets stay out of reprs, error messages and logs (bus._secrets and its users)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
import structlog.testing

from bus import BackendError, ConfigurationError
from bus._secrets import file_secrets, mask_setting, mask_url, redact
from bus.events import Settings

PW = "s3cr3t-Pw"


def test_mask_url_hides_userinfo_and_query_passwords_only() -> None:
    assert mask_url(f"amqp://user:{PW}@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert mask_url(f"redis://:{PW}@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url(f"redis://h/0?password={PW}&db=1") == "redis://h/0?password=***&db=1"
    assert mask_url("amqp://127.0.0.1/") == "amqp://127.0.0.1/"
    assert mask_url("redis://u@h/0") == "redis://u@h/0"
    assert PW not in mask_url(f"amqp://u:{PW}@[::1]:5672/")
    assert mask_url(f"amqp://u:{PW}@host:notaport/") == "amqp://***"


def test_redact_blots_out_secrets_in_their_quoted_spellings_and_url_passwords() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\n"
    text = f"bad {PW} in {key!r} and {json.dumps(key)}; line MIIEvQIBADANBgkqhkiG9w0B"
    shown = redact(text, PW, key, None, "")
    assert PW not in shown and "MIIEvQIBADANBgkqhkiG9w0B" not in shown
    assert redact(f"Error connecting to amqp://u:{PW}@h:1/") == "Error connecting to amqp://u:***@h:1/"
    assert redact("nothing secret here", None) == "nothing secret here"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("amqp://u:p@ss@host/", "amqp://u:***@host/"),  # '@' in the password, unencoded
        ("cannot reach amqp://me@example.com:p@ss@h:5672/vh (refused)",
         "cannot reach amqp://me@example.com:***@h:5672/vh (refused)"),  # and in the user
        ("Error 111 connecting to redis://h:6379/0?db=1&password=p@ss. Refused.",
         "Error 111 connecting to redis://h:6379/0?db=1&password=*** Refused."),  # '.' too
        ("'redis://h/0?password=p@ss' and amqp://u:p@ss@host:1",
         "'redis://h/0?password=***' and amqp://u:***@host:1"),
    ],
)
def test_redact_blots_out_url_passwords_holding_an_at_sign(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_leaves_urls_and_addresses_without_a_password_alone() -> None:
    text = "amqp://host:5672/vh, ssh://git@example.com:22/x and mail a@b.example"
    assert redact(text) == text


ODD = 'p\u00e4"ss-word'  # a quote and a non-ASCII letter


@pytest.mark.parametrize(
    "spelling",
    [
        ODD,
        json.dumps(ODD),  # p\u00e4\"ss-word
        json.dumps(ODD, ensure_ascii=False),  # a JSON renderer that keeps UTF-8
        repr(ODD),
        ascii(ODD),
        repr(ODD.encode()),  # the bytes a client sent
        urllib.parse.quote(ODD),  # inside a URL
        json.dumps({"error": f"auth failed: {json.dumps(ODD)}"}),  # a JSON log of that
        json.dumps(repr(ODD)),
    ],
)
def test_redact_finds_a_secret_in_every_quoted_spelling(spelling: str) -> None:
    shown = redact(f"refused: {spelling} (try again)", ODD)
    assert "ss-word" not in shown and "***" in shown, shown
    assert shown.startswith("refused: ") and shown.endswith(" (try again)")


def test_file_secrets_reads_the_secret_fields_of_a_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "kid-123456",
        "private_key": "-----BEGIN PRIVATE KEY-----\nABCDEFGHIJ\n-----END PRIVATE KEY-----\n",
        "client_email": "a@p.iam.gserviceaccount.com",
    }))
    found = file_secrets(str(path))
    assert "kid-123456" in found and any("ABCDEFGHIJ" in s for s in found)
    assert "p" not in found and "service_account" not in found
    other = tmp_path / "token.txt"
    other.write_text("raw-token-value\n")
    assert file_secrets(other) == ("raw-token-value",)
    assert file_secrets(tmp_path / "missing.json") == ()
    assert file_secrets(None) == ()


def test_settings_repr_masks_url_passwords_and_secret_keys() -> None:
    settings = Settings(environ={
        "RABBITMQ_URL": f"amqp://user:{PW}@127.0.0.1:5672/vhost",
        "REDIS_URL": f"redis://:{PW}@127.0.0.1:6379/0",
        "AWS_SECRET_ACCESS_KEY": PW,
        "GCP_CREDENTIALS_PATH": "/etc/sa.json",
    })
    shown = repr(settings)
    assert PW not in shown
    assert "'amqp://user:***@127.0.0.1:5672/vhost'" in shown
    assert "'redis://:***@127.0.0.1:6379/0'" in shown
    assert "'aws_secret_access_key': '***'" in shown
    assert "'/etc/sa.json'" in shown  # a path is not secret, what the file holds is
    # the values themselves are untouched: only their display is masked
    assert settings.rabbitmq_url == f"amqp://user:{PW}@127.0.0.1:5672/vhost"
    assert mask_setting("kafka_server", "127.0.0.1:9092") == "127.0.0.1:9092"


async def test_redis_adapter_repr_error_and_log_hide_the_password() -> None:
    from bridges.redis import RedisStreamsAdapter

    adapter = RedisStreamsAdapter(f"redis://:{PW}@127.0.0.1:1/0", connect_timeout=2)
    assert PW not in repr(adapter) and "redis://:***@127.0.0.1:1/0" in repr(adapter)
    with structlog.testing.capture_logs() as logs, pytest.raises(BackendError) as info:
        await adapter.connect()
    assert "redis://:***@127.0.0.1:1/0" in str(info.value)
    assert PW not in str(info.value)
    [event] = [e for e in logs if e["event"] == "redis_streams.connect_failed"]
    assert event["url"] == "redis://:***@127.0.0.1:1/0"
    assert PW not in repr(logs)
    with pytest.raises(ConfigurationError) as bad:
        RedisStreamsAdapter(f"http://u:{PW}@host/")
    assert PW not in str(bad.value) and "redis://" in str(bad.value)


async def test_rabbitmq_bridge_repr_and_unreachable_error_hide_the_password() -> None:
    pytest.importorskip("aio_pika")
    from bridges.rabbitmq import RabbitMQBridge
    from bus import open_bus

    bridge = RabbitMQBridge(f"amqp://guest:{PW}@127.0.0.1:1/", name="mq")
    assert PW not in repr(bridge) and "guest:***@" in repr(bridge)
    async with open_bus() as bus:
        with pytest.raises(BackendError) as info:
            await bus.attach(bridge, export=["t.#"], connect_timeout=5)
    assert PW not in str(info.value) and "amqp://guest:***@127.0.0.1:1/" in str(info.value)


def test_kafka_and_kinesis_errors_hide_their_secrets() -> None:
    from bridges.kafka._errors import translate as kafka_translate
    from bridges.kinesis._errors import translate as kinesis_translate

    err = kafka_translate(RuntimeError(f"SASL auth with {PW} failed"), "connecting", (PW,))
    assert PW not in str(err) and "***" in str(err)
    err = kafka_translate(OSError(f"cannot reach sasl://u:{PW}@h:9092"), "connecting")
    assert PW not in str(err)
    err = kinesis_translate(RuntimeError(f"signature for {PW} refused"), "k", (PW,))
    assert PW not in str(err) and "***" in str(err)


def test_kinesis_repr_masks_an_endpoint_password() -> None:
    pytest.importorskip("aioboto3")
    from bridges.kinesis import KinesisBridge

    bridge = KinesisBridge(
        region="us-east-1", endpoint_url=f"http://u:{PW}@127.0.0.1:4568",
        access_key_id="id", secret_access_key=PW,
    )
    assert PW not in repr(bridge) and "u:***@127.0.0.1:4568" in repr(bridge)


def test_pubsub_credentials_file_contents_stay_out_of_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("google.oauth2.service_account")
    from google.oauth2 import service_account

    from bridges.pubsub._client import Endpoint

    key = "-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END PRIVATE KEY-----\n"
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": key}))

    def quoting_loader(filename: str, **_: object) -> object:
        # a client library that quotes what it could not parse
        raise ValueError(f"cannot parse private_key {key!r} in {filename}")

    monkeypatch.setattr(
        service_account.Credentials, "from_service_account_file", quoting_loader
    )
    with pytest.raises(ConfigurationError) as info:
        Endpoint("p", credentials_path=str(path)).credentials()
    assert "QUJDREVGR0hJSktMTU5PUA" not in str(info.value)
    assert str(path) in str(info.value) and "GCP_CREDENTIALS_PATH" in str(info.value)
    assert info.value.__cause__ is None  # the cause quoted the key: not kept
