"""The Redis bridge's ingress bookkeeping with a fake client and port (no Redis): an
entry in flight is never delivered twice by one process, an entry deleted while pending
is acknowledged without delivery, acks that failed are kept for the next flush; and the
constructor's checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from bridges.redis import RedisBridge, _client
from bridges.redis._bridge_ingress import Ingress
from bus import BackendUnavailableError, ConfigurationError


class FakePort:
    """What ingress calls on a port; deliveries are kept, done by the test."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, bytes, Callable[[Any], None]]] = []
        self.redelivered = 0

    def count_redelivered(self) -> None:
        self.redelivered += 1

    def deliver_nowait(self, topic: str, data: bytes, *, on_done: Any, **_: Any) -> None:
        self.delivered.append((topic, data, on_done))


class FakeRedis:
    """``Ingress``'s ``call``: records XACKs; fails the next ones when told to."""

    def __init__(self) -> None:
        self.acks: list[dict[str, list[bytes]]] = []
        self.down = False

    async def call(self, fn: Any, *args: Any) -> Any:
        await trio.lowlevel.checkpoint()
        assert fn is _client.ack_streams, fn
        if self.down:
            raise BackendUnavailableError("Redis at redis://x is unreachable (fake)")
        group, acks = args
        assert group == "g"
        self.acks.append({stream: list(ids) for stream, ids in acks.items()})


def _ingress(redis: FakeRedis) -> Ingress:
    return Ingress(redis.call, group="g", consumer="c", earliest=False, batch=10, block=0.1,
                   claim_idle=1.0, discover_interval=1.0)


ENTRY = {b"data": b'{"n": 1}'}


async def test_an_entry_in_flight_is_delivered_once() -> None:
    redis, port = FakeRedis(), FakePort()
    ingress = _ingress(redis)
    await ingress._deliver(port, "s", b"1-0", ENTRY)  # type: ignore[arg-type]
    # read again (own pending after an ingress restart, or claimed) while still in work
    await ingress._deliver(port, "s", b"1-0", ENTRY, redelivered=True)  # type: ignore[arg-type]
    assert len(port.delivered) == 1 and port.redelivered == 0
    port.delivered[0][2](None)  # done
    assert ingress.done == {"s": [b"1-0"]} and not ingress.in_flight
    # once done and acknowledged, a redelivery (the ack was lost) is delivered again
    await ingress._deliver(port, "s", b"1-0", ENTRY, redelivered=True)  # type: ignore[arg-type]
    assert len(port.delivered) == 2 and port.redelivered == 1


async def test_an_entry_deleted_while_pending_is_acknowledged_not_delivered() -> None:
    redis, port = FakeRedis(), FakePort()
    ingress = _ingress(redis)
    await ingress._deliver(port, "s", b"2-0", {})  # type: ignore[arg-type]
    assert port.delivered == []
    await ingress.flush()
    assert redis.acks == [{"s": [b"2-0"]}]


async def test_acks_that_failed_are_sent_with_the_next_flush() -> None:
    redis, port = FakeRedis(), FakePort()
    ingress = _ingress(redis)
    for n in (1, 2):
        await ingress._deliver(port, "s", f"{n}-0".encode(), ENTRY)  # type: ignore[arg-type]
    port.delivered[0][2](None)
    redis.down = True
    with pytest.raises(BackendUnavailableError):
        await ingress.flush()
    port.delivered[1][2](None)
    redis.down = False
    await ingress.flush()
    assert redis.acks == [{"s": [b"1-0", b"2-0"]}]
    assert ingress.acked == 2 and ingress.done == {}


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url must be redis://"),
        ({"initial_position": "newest"}, "initial_position must be 'latest' or 'earliest'"),
        ({"batch": 0}, "batch must be a positive int"),
        ({"maxlen": True}, "maxlen must be a positive int or None"),
        ({"claim_idle": 0}, "claim_idle must be > 0 seconds"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        RedisBridge(**options)
