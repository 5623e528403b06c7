"""The one payload every case moves, so peers and the bus do the same object work."""

from __future__ import annotations

import msgspec


class Tick(msgspec.Struct):
    """A small typed message: a sequence number and an optional send timestamp (ns)."""

    n: int
    t: int = 0


class Reading(msgspec.Struct):
    """The bridge benchmarks' message: about 200 bytes of msgspec JSON.

    ``t`` is the publish time (``time.time_ns()``) for the latency cases; ``key`` is one of
    ``KEYS`` partition keys.
    """

    n: int
    t: int
    key: str
    sensor: str
    unit: str
    value: float
    note: str


KEYS = 64
NOTE = "x" * 96  # pads the JSON to ~200 bytes


def reading(n: int, t: int = 0) -> Reading:
    return Reading(n, t, f"k{n % KEYS}", f"sensor-{n % 997:04d}", "celsius", 21.5, NOTE)
