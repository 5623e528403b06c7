"""Delivery policies as plain data: overflow, retry/backoff, supervision, retention, dedup.

Every decision here is a pure function of its inputs (and of a clock value or a random
number passed in), so it is unit-tested without trio and the trio tasks that use it
stay thin. Times are in seconds of trio's clock; the bus passes ``trio.current_time()``,
which is why ``MockClock`` makes all of them deterministic.
"""

from __future__ import annotations

import enum
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ConfigurationError

__all__ = [
    "DedupWindow",
    "Overflow",
    "RateLimitedCount",
    "Retention",
    "RetentionLog",
    "RetryPolicy",
    "Supervision",
]

T = TypeVar("T")


class Overflow(enum.Enum):
    """What a full mailbox does with a new message."""

    BLOCK = "block"
    """The publisher waits for room: backpressure. Nothing is dropped. The default."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued message is dropped to make room: counted in
    ``ActorStats.dropped``, logged as a ``message.dropped`` summary at most once a second."""
    DROP_NEWEST = "drop_newest"
    """The new message is dropped; the queue is unchanged. Counted and logged as above."""
    ERROR = "error"
    """``publish`` raises :class:`~bus.MailboxFullError`; the caller decides."""

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        if isinstance(value, Overflow):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(o.value) for o in cls)
            raise ConfigurationError(
                f"unknown overflow policy {value!r}; use one of {choices}"
            ) from None


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigurationError` naming *name* unless *value* is a finite number
    > 0 (or >= 0 with *allow_zero*). NaN, infinities, bools and strings are refused."""
    bound = ">= 0" if allow_zero else "> 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigurationError(f"{name} must be {bound} (a finite number), got {value!r}")


def _count(name: str, value: int, *, minimum: int) -> None:
    """Raise :class:`ConfigurationError` naming *name* unless *value* is an int >= *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")


def _delays(owner: str, base_delay: float, max_delay: float) -> None:
    _positive(f"{owner}.base_delay", base_delay, allow_zero=True)
    _positive(f"{owner}.max_delay", max_delay, allow_zero=True)
    if base_delay > max_delay:
        raise ConfigurationError(
            f"{owner}.base_delay ({base_delay!r}) is greater than {owner}.max_delay "
            f"({max_delay!r}), so every wait would be capped at max_delay; raise max_delay "
            f"to at least base_delay, or lower base_delay"
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing handler is tried, and how long to wait in between.

    The wait before attempt ``n + 1`` is ``min(max_delay, base_delay * factor**(n-1))``,
    then scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that many actors
    failing together do not retry in lockstep.
    """

    attempts: int | None = 3
    """Total attempts, the first included. 1 means no retry; None retries forever
    (bridges' egress uses that: an outage holds messages back, it never drops them)."""
    base_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        attempts = self.attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ConfigurationError(
                f"RetryPolicy.attempts must be an int >= 1 or None (forever), got {attempts!r}"
            )
        _delays("RetryPolicy", self.base_delay, self.max_delay)
        _positive("RetryPolicy.factor", self.factor)
        if self.factor < 1:
            raise ConfigurationError(f"RetryPolicy.factor must be >= 1, got {self.factor!r}")
        _positive("RetryPolicy.jitter", self.jitter, allow_zero=True)
        if self.jitter > 1:
            raise ConfigurationError(
                f"RetryPolicy.jitter must be within [0, 1], got {self.jitter!r}"
            )

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed *attempt* (1-based) before the next one."""
        raw = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        return raw * (1 - self.jitter + 2 * self.jitter * rand())

    def gives_up_after(self, attempt: int) -> bool:
        return self.attempts is not None and attempt >= self.attempts


@dataclass(frozen=True, slots=True)
class Supervision:
    """How an actor that crashes outside its handler is restarted.

    ``max_restarts`` restarts are allowed within ``window`` seconds; one more and the
    supervisor gives up, raising :class:`~bus.SupervisorGaveUp` into the bus.
    """

    max_restarts: int = 5
    window: float = 60.0
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        _count("Supervision.max_restarts", self.max_restarts, minimum=0)
        _positive("Supervision.window", self.window)
        _delays("Supervision", self.base_delay, self.max_delay)

    def delay(self, restart: int) -> float:
        """Seconds to wait before restart number *restart* (1-based)."""
        return float(min(self.max_delay, self.base_delay * 2 ** (restart - 1)))


class RestartTracker:
    """Counts restarts in a sliding window for :class:`Supervision`."""

    def __init__(self, policy: Supervision) -> None:
        self.policy = policy
        self._times: deque[float] = deque()
        self.total = 0

    def record(self, now: float) -> int | None:
        """Record a crash at *now*; the restart number, or None if the limit is passed."""
        times = self._times
        while times and times[0] <= now - self.policy.window:
            times.popleft()
        times.append(now)
        if len(times) > self.policy.max_restarts:
            return None
        self.total += 1
        return len(times)


@dataclass(frozen=True, slots=True)
class Retention:
    """Bounds of a topic's retained log. Any bound left ``None`` does not apply; the
    oldest messages are dropped from the log while any bound is exceeded."""

    max_count: int | None = None
    """Messages."""
    max_bytes: int | None = None
    """Bytes of the payloads' JSON encoding (``Codec.encode``, what a bridge sends),
    summed over the retained messages; envelope fields and headers are not counted. Each
    retained publish encodes its payload once to measure it. This bounds the retained
    log only: mailboxes are bounded in messages (``capacity=``), never in bytes."""
    max_age: float | None = None
    """Seconds of trio's clock since the message was retained. A message exactly
    ``max_age`` old is still kept; it goes once it is older."""

    def __post_init__(self) -> None:
        if self.max_count is None and self.max_bytes is None and self.max_age is None:
            raise ConfigurationError(
                "Retention needs at least one bound: max_count, max_bytes or max_age"
            )
        for name in ("max_count", "max_bytes"):
            value = getattr(self, name)
            if value is not None:
                _count(f"Retention.{name}", value, minimum=1)
        if self.max_age is not None:
            _positive("Retention.max_age", self.max_age)


class RetentionLog(Generic[T]):
    """A bounded log of items with their size and time, trimmed on every append.

    Items have absolute offsets, as in a Kafka partition: the first item ever appended
    is 0 and trimming never renumbers, so a reader's position stays meaningful while the
    oldest items go (``begin`` is the oldest retained offset, ``end`` the next one).
    ``groups`` holds the consumer groups' positions in this log (``bus._replay``), and
    ``wake`` is called after each append (set while readers wait for new items).

    Each item costs one slot of a deque; its time is kept (in a second deque) only when
    the policy bounds age, its size (a third) only when it bounds bytes: a retained
    message is its envelope and 8 bytes, not a tuple and a float besides.
    """

    def __init__(self, policy: Retention) -> None:
        self.policy = policy
        self._items: deque[T] = deque()
        self._times: deque[float] | None = deque() if policy.max_age is not None else None
        self._sizes: deque[int] | None = deque() if policy.max_bytes is not None else None
        self._bytes = 0
        self.begin = 0
        """The offset of the oldest retained item."""
        self.groups: dict[str, Any] = {}
        self.wake: Callable[[], None] | None = None
        self.deleted = False

    @property
    def end(self) -> int:
        """The offset the next appended item will get."""
        return self.begin + len(self._items)

    def append(self, item: T, now: float, size: int = 0) -> None:
        self._items.append(item)
        if self._times is not None:
            self._times.append(now)
        if self._sizes is not None:
            self._sizes.append(size)
            self._bytes += size
        self.trim(now)
        if self.wake is not None:
            self.wake()

    def get(self, offset: int) -> T:
        """The item at *offset*, which must be retained (``begin <= offset < end``)."""
        return self._items[offset - self.begin]

    def trim(self, now: float) -> None:
        p, items, times, sizes = self.policy, self._items, self._times, self._sizes
        max_count = p.max_count
        if max_count is not None:
            while len(items) > max_count:
                self._drop_oldest()
        if sizes is not None:
            assert p.max_bytes is not None
            while items and self._bytes > p.max_bytes:
                self._drop_oldest()
        if times is not None:
            assert p.max_age is not None
            oldest = now - p.max_age
            while items and times[0] < oldest:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._items.popleft()
        if self._times is not None:
            self._times.popleft()
        if self._sizes is not None:
            self._bytes -= self._sizes.popleft()
        self.begin += 1

    def items(self, now: float) -> list[T]:
        self.trim(now)
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes


class DedupWindow:
    """Remembers recently handled message keys for *ttl* seconds, at most *size* of them."""

    def __init__(self, size: int = 10_000, ttl: float = 300.0) -> None:
        _count("DedupWindow.size", size, minimum=1)
        _positive("DedupWindow.ttl", ttl)
        self.size, self.ttl = size, ttl
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, key: str, now: float) -> bool:
        self._expire(now)
        return key in self._seen

    def add(self, key: str, now: float) -> None:
        self._seen[key] = now
        self._seen.move_to_end(key)
        self._expire(now)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen and (len(seen) > self.size or next(iter(seen.values())) <= now - self.ttl):
            seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


class RateLimitedCount:
    """Counts events and says when to report them: at most once per *interval* seconds.

    ``note(now)`` counts one event and returns how many to report now (the events since
    the last report, this one included) or 0 while the interval since the last report has
    not passed. The first event after a quiet interval is reported at once; ``flush()``
    hands over what is still unreported (the owner calls it when it stops).
    """

    __slots__ = ("_next", "interval", "pending")

    def __init__(self, interval: float = 1.0) -> None:
        _positive("interval", interval)
        self.interval = interval
        self.pending = 0
        self._next = float("-inf")

    def note(self, now: float) -> int:
        self.pending += 1
        if now < self._next:
            return 0
        self._next = now + self.interval
        return self.flush()

    def flush(self) -> int:
        count, self.pending = self.pending, 0
        return count
