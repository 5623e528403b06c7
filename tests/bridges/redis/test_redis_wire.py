"""The Redis Streams adapter's sans-IO parts: entry fields, error mapping, options."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions

from bridges.redis import RedisStreamsAdapter
from bridges.redis._errors import is_no_group, translate
from bridges.redis._wire import decode, encode, entry_id
from bus import BackendError, BackendUnavailableError, ConfigurationError, TopicError
from bus.events import EventMessage


def _as_read(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    return {k.encode(): v for k, v in fields.items()}


def test_a_message_round_trips_through_entry_fields() -> None:
    sent = EventMessage(topic="t", data={"n": 1, "s": "é"}, key="k",
                        headers={"data": "not the data", "key": "not the key"}, timestamp=42)
    fields = encode(sent)
    assert set(fields) == {"data", "ts", "key", "h:data", "h:key"}  # headers cannot collide
    assert decode("t", b"1-0", _as_read(fields)) == sent
    keyless = EventMessage(topic="t", data={}, timestamp=7)
    assert "key" not in encode(keyless)
    assert decode("t", "1-0", _as_read(encode(keyless))) == keyless


def test_foreign_entries_are_read_with_the_reason_they_do_not_fit() -> None:
    got = decode("t", b"1700000000000-3", {b"body": b"x", b"h:trace": b"abc"})
    assert got.data == {} and got.timestamp == 1700000000000
    assert got.headers == {"trace": "abc", "x-decode-error": "the stream entry has no 'data' field"}
    got = decode("t", b"5-0", {b"data": b"[1, 2]", b"ts": b"oops"})
    assert got.data == {} and "not a JSON object" in got.headers["x-decode-error"]
    assert got.timestamp == 5


def test_entry_ids_compare_in_stream_order() -> None:
    assert entry_id(b"10-2") > entry_id(b"9-99") > entry_id("9-3")
    assert entry_id("0-0") == (0, 0)


def test_redis_errors_become_bus_errors_without_the_password() -> None:
    url = "redis://:pw-123456@127.0.0.1:6379/0"
    down = translate(redis.exceptions.ConnectionError("reset by peer"), url, ("pw-123456",))
    assert type(down) is BackendUnavailableError and "redis://:***@127.0.0.1:6379/0" in str(down)
    login = translate(redis.exceptions.AuthenticationError("bad pw-123456"), url, ("pw-123456",))
    assert type(login) is BackendError and "login refused" in str(login)
    assert "pw-123456" not in str(login)
    timeout = translate(redis.exceptions.TimeoutError("slow"), url)
    assert type(timeout) is BackendUnavailableError
    wrong = translate(redis.exceptions.ResponseError("WRONGTYPE Operation"), url)
    assert type(wrong) is BackendError and "WRONGTYPE" in str(wrong)
    assert is_no_group(redis.exceptions.ResponseError("NOGROUP No such key"))
    assert is_no_group(redis.exceptions.ResponseError("UNBLOCKED the stream key no longer exists"))
    assert not is_no_group(redis.exceptions.ResponseError("WRONGTYPE"))


def test_bad_options_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        RedisStreamsAdapter()
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert RedisStreamsAdapter().url == "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigurationError, match="maxlen"):
        RedisStreamsAdapter(maxlen=0)
    with pytest.raises(ConfigurationError, match="claim_idle"):
        RedisStreamsAdapter(claim_idle=-1)
    with pytest.raises(ConfigurationError, match="batch"):
        RedisStreamsAdapter(batch=0)


async def test_subscribe_and_consume_refuse_unknown_options() -> None:
    adapter = RedisStreamsAdapter("redis://127.0.0.1:6379/0")

    async def handle(message: EventMessage) -> None:
        pass

    with pytest.raises(ConfigurationError, match="consumer_grup"):
        await adapter.subscribe("t", handle, consumer_grup="g")
    with pytest.raises(ConfigurationError, match="not both"):
        adapter.consume("t", group="g", consumer_group="g")
    with pytest.raises(ConfigurationError, match="without a group"):
        adapter.consume("t", consumer_group="g", last_id="0")
    with pytest.raises(ConfigurationError, match="needs a nursery"):
        await adapter.subscribe("t", handle, consumer_group="g")  # the seed's name: known
    assert adapter.consume("t", consumer_group="g", consumer_name="c").consumer == "c"


def test_a_dead_letter_keeps_the_entry_and_adds_the_reason() -> None:
    from bridges.redis._failures import dead_letter_fields

    fields = {b"data": b'{"n": 1}', b"key": b"k", b"h:trace": b"t",
              b"h:x-bus-attempts": b"9"}  # dead-lettered once before: replaced
    out = dead_letter_fields(fields, error=KeyError("x"), topic="orders", subscriber="cb",
                             attempts=2)
    assert out == {
        b"data": b'{"n": 1}', b"key": b"k", b"h:trace": b"t", b"h:x-bus-attempts": b"2",
        b"h:x-bus-error": b"'x'", b"h:x-bus-error-type": b"builtins.KeyError",
        b"h:x-bus-original-topic": b"orders", b"h:x-bus-failed-subscriber": b"cb",
    }
    assert decode("dead", b"1-0", out).headers["x-bus-original-topic"] == "orders"


async def test_retries_follow_the_policy_then_give_up(autojump_clock: Any) -> None:
    import trio

    from bridges.redis._failures import handle_with_retries
    from bus import RetryPolicy

    calls: list[float] = []

    async def fails_twice() -> None:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise ValueError(f"no {len(calls)}")

    policy = RetryPolicy(attempts=3, base_delay=1.0, factor=2.0, jitter=0.0)
    kw = {"topic": "t", "group": "g", "entry": "1-0"}
    assert await handle_with_retries(fails_twice, policy, **kw) is None
    assert [round(t - calls[0], 6) for t in calls] == [0.0, 1.0, 3.0]  # waits 1 s, then 2 s
    calls.clear()

    async def always() -> None:
        calls.append(trio.current_time())
        raise ValueError("never")

    error, attempts = await handle_with_retries(always, policy, **kw) or (None, 0)
    assert isinstance(error, ValueError) and attempts == 3 == len(calls)
    once = await handle_with_retries(always, RetryPolicy(attempts=1), **kw)
    assert once is not None and once[1] == 1


def test_max_deliveries_and_dead_letter_topic_are_checked() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError, match="max_deliveries must be a positive int"):
            RedisStreamsAdapter("redis://127.0.0.1:1/0", max_deliveries=bad)
    with pytest.raises(TopicError):
        RedisStreamsAdapter("redis://127.0.0.1:1/0", dead_letter_topic="")
