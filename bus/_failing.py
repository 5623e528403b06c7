"""Failure bursts of a bridge's broker: when a side started failing, how often, and why.

A bridge whose broker is down retries for ever (export batches with backoff, ingress
restarted with backoff), which is right, but must say so: its health, a metric and one
log line per burst, not one per retry. :class:`FailureBurst` is that bookkeeping for one
side (``export`` or ``ingress``) of one attachment: plain data, no trio, no logging; the
attachment (``_attach.py``) feeds it and logs when :meth:`failed` starts a burst or
:meth:`recovered` ends one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FailureBurst"]


@dataclass
class FailureBurst:
    """Consecutive failures of one side of a bridge (reset by a success)."""

    since: float | None = None
    """Clock time of the first failure of the current burst; None while healthy."""
    count: int = 0
    """Failures in the current burst (retries included)."""
    bursts: int = 0
    """Bursts so far (each one logged once)."""
    total: int = 0
    """Failures so far, all bursts together."""
    last_error: str | None = None
    """The latest failure's error, kept after a recovery."""

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, now: float, error: str) -> bool:
        """Record a failure at *now*; True when it starts a burst (log it then)."""
        self.count += 1
        self.total += 1
        self.last_error = error
        if self.since is not None:
            return False
        self.since = now
        self.bursts += 1
        return True

    def recovered(self) -> tuple[int, float] | None:
        """Record a success; ``(failures, start of the burst)`` when it ends a burst."""
        if self.since is None:
            return None
        ended = (self.count, self.since)
        self.since, self.count = None, 0
        return ended
