"""The one payload every case moves, so peers and the bus do the same object work."""

from __future__ import annotations

import msgspec


class Tick(msgspec.Struct):
    """A small typed message: a sequence number and an optional send timestamp (ns)."""

    n: int
    t: int = 0
