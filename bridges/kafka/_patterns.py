"""Import patterns (``*`` one segment, ``#`` zero or more) as a Kafka subscription.

Kafka subscribes either to a list of topic names or to one regular expression matched
against every topic name the cluster has. Patterns without wildcards become a list
(the consumer then needs no metadata refresh to find them); otherwise all patterns
become one anchored regex. Topics are dotted names of ``[A-Za-z0-9_-]`` segments, so a
segment is ``[^.]+``. Sans-IO: no client here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bus.abc import is_pattern, validate_pattern

__all__ = ["pattern_regex", "posix_regex", "subscription"]

_SEG = r"[^.]+"


def pattern_regex(pattern: str) -> str:
    """The regex (unanchored) matching exactly the topics *pattern* selects."""
    segments: list[str] = []
    for seg in validate_pattern(pattern).split("."):
        if seg == "#" and segments and segments[-1] == "#":
            continue  # '#.#' selects what '#' does
        segments.append(seg)
    if segments == ["#"]:
        return r".+"
    out: list[str] = []
    need_dot = False  # the next plain segment must be preceded by a dot
    for i, seg in enumerate(segments):
        if seg == "#":
            if i == 0:  # leading: zero or more "segment." prefixes
                out.append(rf"(?:{_SEG}\.)*")
                need_dot = False
            else:  # inside or trailing: zero or more ".segment" suffixes
                out.append(rf"(?:\.{_SEG})*")
            continue
        if need_dot:
            out.append(r"\.")
        out.append(_SEG if seg == "*" else re.escape(seg))
        need_dot = True
    return "".join(out)


def subscription(patterns: Sequence[str]) -> tuple[list[str], str | None]:
    """``(topics, None)`` if no pattern has a wildcard, else ``([], regex)`` for all."""
    if not any(is_pattern(p) for p in patterns):
        return sorted(set(map(validate_pattern, patterns))), None
    body = "|".join(f"(?:{pattern_regex(p)})" for p in patterns)
    return [], rf"^(?:{body})$"


def posix_regex(regex: str) -> str:
    """A regex of :func:`subscription` in the POSIX extended syntax librdkafka compiles
    (no ``(?:`` groups; ``re.escape``'s ``\\-`` is a plain ``-`` there)."""
    return regex.replace("(?:", "(").replace("\\-", "-")
