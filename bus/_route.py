"""The general route: which mailboxes a message goes to, and delivering it there.

:class:`Router` owns the bus's routing table (patterns → :class:`Target`: subscriptions,
groups, the reply router) and keeps each topic's route memo (``TopicSpec.offers`` and
the plain-mailbox shortcuts) in step with it: a subscribe or unsubscribe re-derives the
memo of the topics whose route it changed, and no other (:meth:`Router.reroute`).

:meth:`Router.deliver` is the general route every message can take: select every lane
first, refuse before anyone got it if one would (``overflow="error"``, or a full
``block`` mailbox for a ``nowait`` caller), then offer to each, holding the message's
:class:`~bus.abc.Delivery` once per lane, and wait for room where a ``block`` mailbox is
full. The publish fast paths in ``bus/_bus.py`` are inlined copies of its steps for
targets that cannot refuse (see "Fast-path protocol" in ``bus/_mailbox.py``); a property
test (``tests/bus/test_fast_paths.py``) holds them to the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import trio

from ._envelope import Envelope
from ._errors import BusClosedError, NotDeliveredError
from ._mailbox import Lane
from ._policy import Overflow
from ._routing import RoutingTable
from ._state import BusState
from ._topics import Topics, TopicSpec

__all__ = ["Router", "Target", "confirmed"]


class Target(Protocol):
    """What the routing table holds: a subscription, a group, or the reply router."""

    @property
    def careful(self) -> bool:
        """True if :meth:`select`'s lane may refuse a message (``overflow="error"``)."""

    def route_offer(self, env: Envelope[Any]) -> Lane | None:
        """Select a lane and offer *env* to it (see :meth:`Lane.offer`)."""

    def select(self, env: Envelope[Any]) -> Lane | None:
        """The lane *env* would go to, or None if this target skips it."""


class Router:
    """The routing table of one bus and the general route (see the module docstring)."""

    def __init__(self, topics: Topics, state: BusState) -> None:
        self.topics = topics
        self.state = state
        self.table: RoutingTable[Target] = RoutingTable()

    # -- the table --------------------------------------------------------------------

    def add(self, pattern: str, target: Target) -> None:
        self.reroute(self.table.add(pattern, target))

    def remove(self, target: Target) -> None:
        self.reroute(self.table.remove(target))

    def changed(self, target: Target) -> None:
        """*target*'s ``careful`` changed (a group gained or lost a member)."""
        self.reroute(self.table.routed_to(target))

    def targets(self, topic: str) -> tuple[Target, ...]:
        return self.table.route(topic)

    def reroute(self, topics: Iterable[str]) -> None:
        """Derive again what publish uses from the routes of *topics* (they changed),
        for each topic that had it: the change pays for the routes it changes, and no
        publish to an unrelated topic, nor the first one to a changed topic, does."""
        specs = self.topics.specs
        for name in topics:
            spec = specs.get(name)
            if spec is not None and spec.offers is not None:
                self.memoise(spec)

    def memoise(self, spec: TopicSpec) -> tuple[Callable[[Envelope[Any]], Lane | None], ...]:
        """Derive what publish needs from the topic's route, in one pass over it: the
        targets' offers, whether one may refuse, and the mailboxes to append to inline
        when every target is a plain one-lane subscriber (its offer is its lane's), or
        the lanes of its one plain keyed subscriber (``Subscription.spread_lanes``)."""
        targets = spec.targets = self.table.route(spec.name)
        offers = []
        lanes = []
        careful = False
        for target in targets:
            offer = target.route_offer
            offers.append(offer)
            if target.careful:
                careful = True
            lane = getattr(offer, "__self__", None)
            if type(lane) is Lane:
                lanes.append(lane)
        spec.careful = careful
        memo = spec.offers = tuple(offers)
        plain = spec.log is None and not careful and len(lanes) == len(targets)
        spec.lane = lanes[0] if plain and len(lanes) == 1 else None
        spec.lanes = tuple(lanes) if plain and len(lanes) > 1 else None
        spec.keyed = None
        if len(targets) == 1 and not careful and spec.log is None:
            spec.keyed = getattr(targets[0], "spread_lanes", None)
        return memo

    # -- the general route ------------------------------------------------------------

    def select(self, spec: TopicSpec, env: Envelope[Any], *, nowait: bool) -> list[Lane]:
        """Every lane *env* goes to; raises before anyone got it if one would refuse."""
        if spec.offers is None:
            self.memoise(spec)
        lanes = [lane for t in spec.targets if (lane := t.select(env)) is not None]
        for lane in lanes:
            if lane.full:
                if lane.overflow is Overflow.ERROR:
                    lane.owner.rejected += 1
                    raise lane.full_error()
                if nowait and lane.overflow is Overflow.BLOCK:
                    raise trio.WouldBlock
        return lanes

    def accept(self, spec: TopicSpec, env: Envelope[Any], lanes: list[Lane]) -> list[Lane]:
        """Count and retain *env*, offer it to *lanes*; return the full ``block`` ones."""
        spec.published += 1
        if spec.log is not None:
            spec.retain(env)
        delivery = env.delivery
        blocked = []
        for lane in lanes:
            if delivery is not None:
                delivery.hold()
            if lane.offer(env) is not None:
                blocked.append(lane)
        return blocked

    async def deliver(self, spec: TopicSpec, env: Envelope[Any]) -> None:
        """Deliver *env* all-or-nothing to its lanes, holding its :class:`Delivery` once
        per lane that accepts it, then waiting for room in full ``block`` lanes."""
        lanes = self.select(spec, env, nowait=False)
        blocked = self.accept(spec, env, lanes)
        for lane in blocked:
            await lane.put(env)
        if env.delivery is not None:
            env.delivery.routed()

    def deliver_nowait(self, spec: TopicSpec, env: Envelope[Any]) -> None:
        """:meth:`deliver` without waiting: :exc:`trio.WouldBlock`, delivering to nobody,
        if a ``block`` mailbox is full."""
        lanes = self.select(spec, env, nowait=True)
        blocked = self.accept(spec, env, lanes)
        assert not blocked, "a lane filled up between the check and the offer"
        if env.delivery is not None:
            env.delivery.routed()

    async def route(self, env: Envelope[Any]) -> None:
        """Route an envelope made elsewhere (a bridge's import, a dead letter, a facade
        message), tracking it if it carries a :class:`Delivery`."""
        if self.state.closed:
            raise BusClosedError(f"bus {self.state.name!r} is closed")
        await self.deliver(self.topics.spec(env.topic), env)

    def route_nowait(self, env: Envelope[Any]) -> None:
        """:meth:`route` without waiting (see :meth:`deliver_nowait`)."""
        if self.state.closed:
            raise BusClosedError(f"bus {self.state.name!r} is closed")
        self.deliver_nowait(self.topics.spec(env.topic), env)

    async def deliver_batch(self, spec: TopicSpec, envs: list[Envelope[Any]]) -> None:
        """Deliver untracked *envs* (``publish_batch``'s) in order: each all-or-nothing by
        itself where a target may refuse; else a mailbox with room for the batch takes it
        in one ``extend``, and retention keeps them all before any is offered."""
        offers = spec.offers
        if offers is None:
            offers = self.memoise(spec)
        if spec.careful:
            for env in envs:
                await self.deliver(spec, env)
            return
        spec.published += len(envs)
        lane = spec.lane
        lanes = (lane,) if lane is not None else spec.lanes
        if lanes is not None:
            # Plain mailboxes: the envelopes that fit in every one go in with one extend
            # each (the state publishing them in turn would leave), the rest one by one.
            # (limit, not capacity: no one jumps the queue)
            # fast path: bus/_mailbox.py, A/B: docs/performance.md "Fast paths"
            fit = max(0, min(lane.limit - len(lane.items) for lane in lanes))
            if fit:
                part = envs[:fit] if fit < len(envs) else envs
                for lane in lanes:
                    lane.items.extend(part)
                    if lane.getter_parked:
                        lane.wake_getter()
            for env in envs[fit:]:  # a mailbox is full: the overflow policy, in turn
                for lane in lanes:
                    if (full := lane.offer(env)) is not None:
                        await full.put(env)
            return
        if spec.log is not None:
            for env in envs:
                spec.retain(env)
        for env in envs:
            for offer in offers:
                if (full := offer(env)) is not None:
                    await full.put(env)


async def confirmed(env: Envelope[Any]) -> None:
    """Wait until tracked *env* is done; :class:`NotDeliveredError` if a subscriber
    dead-lettered or dropped it (``publish(confirm=True)``, ``route(confirm=True)``)."""
    delivery = env.delivery
    assert delivery is not None
    await delivery.wait()
    if delivery.failures:
        said = "; ".join(f"{f.subscriber}: {f.outcome} ({f.reason})" for f in delivery.failures)
        raise NotDeliveredError(
            f"message {env.id} on {env.topic!r} was not handled by every subscriber: {said}",
            delivery=delivery,
        )
