"""Shared test setup: the public fixtures of ``bus.testing``, and a bound on every test.

Every async test runs inside ``trio.fail_after``: a regression that makes a test wait
forever fails it with ``TooSlowError`` (at once under ``autojump_clock``, whose clock
jumps to the deadline when everything is blocked) instead of hanging CI. The bound is
``@pytest.mark.timeout(N)`` when given, else ``ASYNC_TEST_SECONDS``; tests on the mock
clock measure it in virtual seconds, where backoffs of minutes are normal and a hang is
still instant, so they get ``VIRTUAL_TEST_SECONDS``. pytest-timeout (the
``timeout`` ini option) stays as a last resort for a hang outside trio's reach.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

pytest_plugins = ["bus.testing"]

ASYNC_TEST_SECONDS = 60.0
VIRTUAL_TEST_SECONDS = 1e6


def _bounded(test: Callable[..., Awaitable[Any]], seconds: float) -> Callable[..., Any]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        with trio.fail_after(seconds):
            return await test(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(test):
            marker = item.get_closest_marker("timeout")
            if marker and marker.args:
                # below pytest-timeout's bound for the same marker, so trio's fires first
                # and the failure shows where the test was waiting
                seconds = 0.9 * float(marker.args[0])
            elif {"autojump_clock", "mock_clock"} & set(item.fixturenames):
                seconds = VIRTUAL_TEST_SECONDS
            else:
                seconds = ASYNC_TEST_SECONDS
            item.obj = _bounded(test, seconds)
