"""The RabbitMQ bridge's sans-IO parts: ack frames from done tags, the wire mapping,
URL masking. No broker needed (the broker tests are in test_rabbitmq.py)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from bridges.rabbitmq._ingress import AckTracker
from bridges.rabbitmq._wire import decode, encode, mask_url
from bus import Envelope


def _acked(frames: list[tuple[int, bool]], outstanding: set[int]) -> set[int]:
    """What the broker acknowledges for *frames*, failing where RabbitMQ would close the
    channel (a tag that is not outstanding)."""
    acked: set[int] = set()
    for tag, multiple in frames:
        assert tag in outstanding, f"ack of unknown or acked tag {tag}: PRECONDITION_FAILED"
        covered = {t for t in outstanding if t <= tag} if multiple else {tag}
        outstanding -= covered
        acked |= covered
    return acked


def test_in_order_completions_become_one_multiple_ack() -> None:
    tracker = AckTracker()
    for tag in range(1, 11):
        tracker.delivered(tag)
    for tag in range(1, 8):
        tracker.done(tag)
    assert tracker.take() == [(7, True)]
    assert tracker.unacked == 3
    assert tracker.take() == []


def test_a_gap_is_never_acknowledged() -> None:
    tracker = AckTracker()
    for tag in range(1, 7):
        tracker.delivered(tag)
    for tag in (1, 2, 4, 6):
        tracker.done(tag)
    assert tracker.take() == [(2, True), (4, False), (6, False)]
    tracker.done(3)
    # 4 was acknowledged on its own: the multiple ack must not end on it, and must not
    # cover 5, which is not done.
    assert tracker.take() == [(3, True)]
    tracker.done(5)
    assert tracker.take() == [(5, True)]
    assert tracker.unacked == 0


def test_random_completion_orders_ack_each_done_tag_exactly_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        tracker = AckTracker()
        n = rng.randint(1, 60)
        outstanding = set(range(1, n + 1))
        for tag in outstanding:
            tracker.delivered(tag)
        order = list(outstanding)
        rng.shuffle(order)
        never = set(rng.sample(order, rng.randint(0, min(3, n))))  # handlers still running
        done: set[int] = set()
        for tag in order:
            if tag in never:
                continue
            tracker.done(tag)
            done.add(tag)
            if rng.random() < 0.3:
                done_before = set(done)
                acked = _acked(tracker.take(), outstanding)
                assert acked <= done_before
        _acked(tracker.take(), outstanding)
        assert outstanding == never


def test_envelope_to_amqp_and_back() -> None:
    env = Envelope(
        id="0x1", topic="order.created", payload=None, key="c1",
        headers={"traceparent": "00-abc", "x": "1"}, time=1_700_000_000.25, attempt=2,
        source="shop",
    )
    out = encode(env, b'{"id":"o1"}')
    assert out.routing_key == "order.created"
    assert out.content_type == "application/json"
    assert out.message_id == "0x1"
    assert out.headers["ce-id"] == "0x1"
    assert out.headers["ce-type"] == "order.created"
    assert out.headers["ce-specversion"] == "1.0"
    assert out.headers["ce-partitionkey"] == "c1"
    assert out.headers["traceparent"] == "00-abc"
    back = decode(out.routing_key, out.headers, out.message_id, None)
    assert back.topic == "order.created"
    assert (back.id, back.key, back.source, back.attempt) == ("0x1", "c1", "shop", 2)
    assert back.time == pytest.approx(1_700_000_000.25)
    assert back.headers == {"traceparent": "00-abc", "x": "1"}


def test_foreign_message_without_cloudevents_headers() -> None:
    stamp = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    got = decode("payment.done", {"n": 5, "b": b"raw", "s": "x"}, "m-7", stamp, "billing")
    assert got.topic == "payment.done"
    assert got.id == "m-7"
    assert got.key is None
    assert got.headers == {"n": "5", "b": "raw", "s": "x"}
    assert got.time == stamp.timestamp()
    assert got.source == "billing"
    bare = decode("payment.done", None, None, None)
    assert bare.id.startswith("amqp-") and bare.time == 0.0 and bare.source is None
    assert decode("t", None, None, None).id != bare.id


def test_mask_url_hides_the_password_only() -> None:
    assert mask_url("amqp://guest:s3cret@127.0.0.1:5672/vh") == "amqp://guest:***@127.0.0.1:5672/vh"
    assert mask_url("amqp://127.0.0.1/") == "amqp://127.0.0.1/"
    assert "s3cret" not in mask_url("amqp://u:s3cret@[::1]:5672/")
    assert "s3cret" not in mask_url("amqp://u:s3cret@host:notaport/")


def test_client_errors_become_bus_errors_without_the_password() -> None:
    import aiormq.exceptions

    from bridges.rabbitmq._errors import is_client_error, translate
    from bus import BackendError, BackendUnavailableError

    refused = aiormq.exceptions.AMQPConnectionError(111, "Connect call failed")
    err = translate(refused, "mq", ("s3cret",))
    assert type(err) is BackendUnavailableError and "'mq'" in str(err)
    closed = aiormq.exceptions.ChannelInvalidStateError("<Channel> closed")
    assert type(translate(closed, "mq")) is BackendUnavailableError
    login = aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED for s3cret")
    err = translate(login, "mq", ("s3cret",))
    assert type(err) is BackendError and "login refused" in str(err)
    assert "s3cret" not in str(err) and "***" in str(err)
    from pamqp import commands

    nack = aiormq.exceptions.DeliveryError(None, commands.Basic.Nack(delivery_tag=1))
    assert type(translate(nack, "mq")) is BackendError
    assert is_client_error(refused) and is_client_error(nack) and is_client_error(OSError())
    assert not is_client_error(KeyError("a bug stays a bug"))
