"""bridges/_common.py: the one missing-library message, the client-call helper and the
ack batcher every broker package uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from bridges._common import AckBatcher, call, missing, not_open, require
from bus import BackendError, ConfigurationError, MissingDependencyError


def test_require_imports_or_names_the_extra() -> None:
    assert require("json", "x", "the JSON bridge").dumps({}) == "{}"
    with pytest.raises(MissingDependencyError) as caught:
        require("trio_bus_no_such_client", "nowhere", "the Nowhere bridge", "no-such")
    assert str(caught.value) == (
        "the Nowhere bridge needs no-such: pip install 'trio-bus[nowhere]'"
    )
    assert isinstance(caught.value.__cause__, ImportError)
    assert str(missing("redis", "redis", "R")) == "R needs redis: pip install 'trio-bus[redis]'"


class ClientError(Exception):
    """Stands for a client library's exception type."""


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _call(run: Any, fn: Callable[..., Any], *args: Any) -> Any:
    return call(
        run, fn, *args, is_client_error=lambda exc: isinstance(exc, ClientError),
        translate=lambda exc: BackendError(f"translated: {exc}"),
        closed=lambda: not_open("b"),
    )


async def test_call_translates_client_errors_only() -> None:
    assert await _call(_run, lambda a, b: a + b, 1, 2) == 3

    def fails(exc: Exception) -> None:
        raise exc

    with pytest.raises(BackendError, match="translated: boom") as caught:
        await _call(_run, fails, ClientError("boom"))
    assert isinstance(caught.value.__cause__, ClientError)
    with pytest.raises(KeyError):  # not the client's: a bug, unchanged
        await _call(_run, fails, KeyError("k"))


async def test_call_on_a_closed_bridge_says_so_unless_cancelled() -> None:
    with pytest.raises(ConfigurationError, match="bridge 'b' is not open: attach it"):
        await _call(None, print)
    with trio.CancelScope() as scope:
        scope.cancel()
        await _call(None, print)  # Cancelled first, not the closed bridge's error
        raise AssertionError("not cancelled")
    assert scope.cancelled_caught


async def test_the_ack_batcher_flushes_once_for_what_was_done_meanwhile() -> None:
    flushes: list[int] = []
    done: list[str] = []
    started = trio.Event()
    release = trio.Event()

    async def flush() -> None:
        flushes.append(len(done))
        done.clear()
        started.set()
        await release.wait()

    batcher = AckBatcher(flush)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        assert flushes == []  # nothing wanted: no flush
        done.append("a")
        batcher.wanted()
        await started.wait()
        for tag in "bcd":  # done while the first flush is on the wire
            done.append(tag)
            batcher.wanted()
        started = trio.Event()
        release.set()
        await started.wait()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert flushes == [1, 3]
