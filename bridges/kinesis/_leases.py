"""Shard leases: how bridges of one group share the shards of a stream (sans-IO).

Kinesis has no consumer groups; the KCL builds them from leases in a DynamoDB table.
This is the same idea, small: members of a group heartbeat in the store; each holds
leases on at most its fair share (``ceil(shards / live members)``) of the shards that
may be read now; a lease not renewed within its time to live is free for another
member. :func:`claim` decides, given what the store holds; the stores
(:mod:`._checkpoints`) run it inside one transaction, so members sharing a store (the
same SQLite file, or any store with ``claim``/``release``) never hold the same shard at
once, except after a lease expired under a member that was too slow to renew it (it
stops reading that shard at its next renewal; what both delivered meanwhile is
delivered twice, never lost).

A member over its share (another one joined) gives shards up: it stops reading them,
saves their checkpoints, then releases them; the next member resumes after the saved
checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Claim", "Lease", "claim"]


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str
    expires: float


@dataclass(frozen=True, slots=True)
class Claim:
    """What :func:`claim` decided, and what the store must write."""

    held: list[str]
    """Shards *owner* holds now (renewed or newly taken), sorted."""
    limit: int
    """Its fair share: hold no more than this (give the rest up)."""
    members: dict[str, float]
    """Live members after the heartbeat (owner -> expiry)."""
    leases: dict[str, Lease]
    """Leases to write (the owner's, renewed or taken)."""


def claim(
    members: dict[str, float],
    leases: dict[str, Lease],
    owner: str,
    shards: Sequence[str],
    ttl: float,
    now: float,
) -> Claim:
    """Heartbeat *owner*, renew its leases among *shards*, take free or expired ones up
    to its fair share. *members* and *leases* are what the store holds for the group and
    stream; *shards* those that may be read now (open, parents finished)."""
    live = {m: exp for m, exp in members.items() if exp >= now}
    live[owner] = now + ttl
    limit = math.ceil(len(shards) / len(live)) if shards else 0
    mine = [s for s in shards if (lease := leases.get(s)) is not None and lease.owner == owner]
    free = [
        s for s in sorted(shards)
        if (lease := leases.get(s)) is None or (lease.owner != owner and lease.expires < now)
    ]
    held = sorted(mine + free[: max(0, limit - len(mine))])
    return Claim(
        held=held, limit=limit, members=live,
        leases={s: Lease(owner, now + ttl) for s in held},
    )
