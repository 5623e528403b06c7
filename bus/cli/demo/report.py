"""What a demo run reports: a line per notable event as it happens, a summary at the end.

:class:`Trace` stamps lines with trio's clock and hands them to an ``emit`` callback;
while the shop runs it also stands in as structlog's processor chain, so the bus's own
``handler.retry`` and ``message.dead_lettered`` events become trace lines instead of log
noise. Rendering (colours, columns) is ``_command``'s business, not this module's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, NoReturn

import msgspec
import structlog
import trio

__all__ = ["ActorLine", "BridgeLine", "DeadLetter", "Emit", "Summary", "Trace", "TraceLine"]

DEAD_LETTER_TOPIC = "bus.dead_letter"


class TraceLine(msgspec.Struct, frozen=True):
    """One notable event: seconds since the start, topic, key, what happened."""

    at: float
    topic: str
    key: str
    text: str
    tone: str = ""
    """``ok``, ``warn``, ``fail`` or empty: how the renderer colours the line."""


Emit = Callable[[TraceLine], None]


class ActorLine(msgspec.Struct, frozen=True):
    """The counters of one actor, copied from ``bus.stats()``."""

    pattern: str
    group: str | None
    delivered: int
    failed: int
    retried: int
    dead_lettered: int


class BridgeLine(msgspec.Struct, frozen=True):
    """What went through the broker of ``--bridge``, from its export subscription."""

    url: str
    """The broker's URL, password masked."""
    name: str
    exported: dict[str, int]
    """Per mirrored topic: messages published, hence handed to the bridge."""
    confirmed: int
    """Messages the broker confirmed."""
    refused: int
    """Messages the broker refused for good (dead-lettered)."""
    retried: int
    """Export batches retried after a failure."""


class DeadLetter(msgspec.Struct, frozen=True):
    """A message found in the dead-letter topic at the end of the run."""

    key: str
    original_topic: str
    error: str
    attempts: int


class Summary(msgspec.Struct, frozen=True):
    """Everything the run produced, for the closing report and for tests."""

    seed: int
    orders: int
    failure_rate: float
    outcomes: dict[str, str]
    """Order id -> ``confirmed`` or the reason it was cancelled."""
    confirmed: int
    cancelled: int
    declined: int
    """Cancelled because the payment was declined (and their stock released)."""
    dead_lettered: int
    """Cancelled because their message ended in the dead-letter topic."""
    revenue_cents: int
    stock_before: dict[str, int]
    stock_after: dict[str, int]
    held: dict[str, int]
    """Order id -> quantity inventory still holds for it (the confirmed orders)."""
    released: int
    """Compensations inventory carried out."""
    retries: int
    dead_letters: list[DeadLetter]
    published: dict[str, int]
    actors: dict[str, ActorLine]
    elapsed: float
    """Seconds of trio's clock the run took."""
    bridge: BridgeLine | None = None
    """With ``--bridge``: what was mirrored to the broker."""


_REPR = re.compile(r"^(\w+)\((['\"])(.*)\2\)$")


def _pretty_error(text: str) -> str:
    """``ValueError('x')`` -> ``ValueError: x``; anything else unchanged."""
    m = _REPR.match(text)
    return f"{m[1]}: {m[3]}" if m else text


class Trace:
    """Turns what happens into :class:`TraceLine` s: publishes, and the bus's own logs."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.started = trio.current_time()
        self.keys: dict[str, str] = {}  # envelope id -> key, to name retries in the trace

    def __call__(self, topic: str, key: str | None, text: str, tone: str = "") -> None:
        self.emit(TraceLine(trio.current_time() - self.started, topic, key or "-", text, tone))

    def from_log(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> NoReturn:
        """A structlog processor: the bus's retries and dead letters become trace lines."""
        name = event.get("event")
        key = self.keys.get(event.get("id", ""))
        if name == "handler.retry":
            self(
                event["topic"], key,
                f"{event['subscriber']} failed attempt {event['attempt']} "
                f"({_pretty_error(event['error'])}), retry in {event['delay'] * 1000:.0f} ms",
                "warn",
            )
        elif name == "message.dead_lettered":
            self(
                DEAD_LETTER_TOPIC, key,
                f"{event['topic']} given up by {event['subscriber']} after "
                f"{event['attempts']} attempts: {_pretty_error(event['error'])}",
                "fail",
            )
        elif event.get("level") in ("warning", "error", "critical"):
            details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level"))
            self("bus.log", key, f"{name}: {details}", "fail")
        raise structlog.DropEvent

    @contextmanager
    def bus_logs(self) -> Iterator[None]:
        """Route the bus's structlog events (info and up) into the trace; restore after."""
        was_configured, saved = structlog.is_configured(), structlog.get_config()
        structlog.configure(
            processors=[structlog.processors.add_log_level, self.from_log],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
        try:
            yield
        finally:
            if was_configured:
                structlog.configure(**saved)
            else:
                structlog.reset_defaults()  # unconfigured again: the bus is silent again
