"""The subscribers of one bus: their names, their groups, their place in the routing table.

``bus.subscribe`` makes a :class:`~bus.Subscription` and hands it here
(:meth:`Subscribers.add`): its retained messages are replayed into its mailboxes if it
asked, it enters the routing table (through its :class:`~bus.Group` when it has one), and
its name keys ``stats().actors``. A subscription that closes leaves the table
(:meth:`Subscribers.remove`, through ``BusState.unsubscribe``). Draining and the
``bus.undelivered`` report read every mailbox through :meth:`Subscribers.lanes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._actor import Subscription
from ._errors import ConfigurationError
from ._group import Group
from ._log import get_logger
from ._mailbox import Lane
from ._policy import DedupWindow, Overflow, RetryPolicy, Supervision
from ._route import Router
from ._routing import validate_pattern
from ._state import BusState
from ._topics import Topics

__all__ = ["Defaults", "Subscribers"]

log = get_logger("bus")


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a subscription gets where ``subscribe`` leaves an option out (``open_bus``'s)."""

    capacity: int
    overflow: Overflow
    retry: RetryPolicy
    supervision: Supervision


class Subscribers:
    """The subscriptions of one bus (see the module docstring)."""

    def __init__(
        self, state: BusState, router: Router, topics: Topics, defaults: Defaults
    ) -> None:
        self.state = state
        self.router = router
        self.topics = topics
        self.defaults = defaults
        self.subs: dict[str, Subscription] = {}
        self.groups: dict[str, Group[Subscription]] = {}
        self._next_suffix: dict[str, int] = {}  # derived subscriber names (h#2, h#3...)

    def subscribe(
        self,
        patterns: Sequence[str],
        handler: Any,
        *,
        start_soon: Callable[..., None],
        name: str | None,
        concurrency: int,
        capacity: int | None,
        overflow: Overflow | str | None,
        retry: RetryPolicy | None,
        supervision: Supervision | None,
        group: str | None,
        dedup: DedupWindow | None,
        replay: bool,
        batch: int | None,
        skip_origin: str | None,
        middleware: Sequence[Any] = (),
    ) -> Subscription:
        """Make a subscription (``Bus.subscribe``), route it, start it with *start_soon*."""
        for pattern in patterns:
            validate_pattern(pattern)
        default = self.defaults
        sub = Subscription(
            self.state,
            name=self.name_for(name, handler, self.state.name),
            pattern=patterns[0],
            handler=handler,
            concurrency=concurrency,
            capacity=default.capacity if capacity is None else capacity,
            overflow=default.overflow if overflow is None else Overflow.parse(overflow),
            retry=retry or default.retry,
            supervision=supervision or default.supervision,
            group=group,
            dedup=dedup,
            batch=batch,
            skip_origin=skip_origin,
            middleware=middleware,
        )
        self.add(sub, patterns, replay=replay)
        start_soon(sub.run, name=f"actor:{sub.name}")
        log.debug(
            "actor.start", **sub.log_context, pattern=sub.pattern, group=group,
            bus=self.state.name,
        )
        return sub

    def subscribe_export(
        self,
        patterns: Sequence[str],
        handler: Any,
        *,
        start_soon: Callable[..., None],
        name: str,
        batch: int,
        capacity: int,
        retry: RetryPolicy,
        skip_origin: str,
        concurrency: int = 1,
    ) -> Subscription:
        """A bridge's export: one batched subscriber for all its patterns (a message that
        matches two of them is exported once) that skips what the bridge imported;
        *concurrency* lanes keep that many batches in flight, each key on one lane. No
        handle middleware: exporting is the bus's own delivery, not an application's."""
        return self.subscribe(
            patterns, handler, start_soon=start_soon, name=name, concurrency=concurrency,
            capacity=capacity, overflow=None, retry=retry, supervision=None, group=None,
            dedup=None, replay=False, batch=batch, skip_origin=skip_origin,
        )

    def name_for(self, name: str | None, handler: Any, bus_name: str) -> str:
        """An explicit *name* must be unique on this bus; a name derived from the handler's
        ``__qualname__`` gets a ``#2``, ``#3``... suffix when it is taken. A subscription
        that was closed and has stopped frees its name (a bridge detached and attached
        again); its counters leave ``stats()`` with it."""
        subs = self.subs
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"name must be a non-empty str, got {name!r}")
            old = subs.get(name)
            if old is not None and old.closed and old.stopped:
                del subs[name]
            elif old is not None:
                raise ConfigurationError(
                    f"a subscriber named {name!r} already exists on bus {bus_name!r} "
                    f"({old!r}); names key stats().actors and dead-letter "
                    f"headers, so give each subscriber its own name"
                )
            return name
        base = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        if base not in subs:
            return base
        # the next suffix to try, remembered per base: no rescan of #2, #3... each time
        n = self._next_suffix.get(base, 2)
        while (derived := f"{base}#{n}") in subs:
            n += 1
        self._next_suffix[base] = n + 1
        return derived

    def add(self, sub: Subscription, patterns: Sequence[str], *, replay: bool) -> None:
        """Route *patterns* (the first, for a group member) to *sub*, having replayed the
        retained messages first if asked (replay may exceed its capacity: retention
        bounds it)."""
        pattern = patterns[0]
        group = sub.group
        if replay:
            for env in self.topics.retained_matching(pattern):
                lane = sub.select(env)
                if lane is not None:
                    lane.items.append(env)
        if group is None:
            for each in patterns:
                self.router.add(each, sub)
        else:
            grp = self.groups.get(group)
            if grp is None:
                grp = self.groups[group] = Group(group, pattern)
                self.router.add(pattern, grp)
            elif grp.pattern != pattern:
                raise ConfigurationError(
                    f"group {group!r} subscribes to {grp.pattern!r}; every member must use "
                    f"that pattern, not {pattern!r} (use another group name)"
                )
            careful = grp.careful
            grp.members.append(sub)
            if grp.careful != careful:  # publish must now check (or no longer) first
                self.router.changed(grp)
        self.subs[sub.name] = sub

    def remove(self, sub: Subscription) -> None:
        """*sub* closed: it leaves the routing table (or its group)."""
        if sub.group is not None:
            grp = self.groups[sub.group]
            if sub in grp.members:
                careful = grp.careful
                grp.members.remove(sub)
                if grp.careful != careful:
                    self.router.changed(grp)
        else:
            self.router.remove(sub)

    def reaching(self, topic: str) -> list[Subscription]:
        """The subscriptions a message on *topic* may reach (every member of a group)."""
        found: list[Subscription] = []
        for target in self.router.targets(topic):
            if isinstance(target, Group):
                found.extend(target.members)
            elif isinstance(target, Subscription):
                found.append(target)
        return found

    def lanes(self) -> Iterator[Lane]:
        for sub in self.subs.values():
            yield from sub.lanes

    def queued(self) -> dict[str, int]:
        """Messages still in each subscriber's mailboxes, for those that have some."""
        queued = {name: sum(len(ln.items) for ln in sub.lanes) for name, sub in self.subs.items()}
        return {name: n for name, n in queued.items() if n}

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self.subs.values()))
