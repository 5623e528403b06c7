"""``KafkaAdapter``: the seed facade's ``kafka`` backend, over :class:`KafkaBridge`.

The seed's options map onto the bridge's producer (``acks``, ``retries``,
``batch_size``, ``compression_type``, ``bootstrap_servers``); anything else the bridge
takes (``linger_ms``, ``security_protocol``, ``sasl_*``...) passes through. ``acks``
other than ``"all"`` turns the idempotent producer off unless ``enable_idempotence`` is
given. ``push`` returns once Kafka acknowledged the record with ``acks``.

A facade group (``group``, default ``"events"``) is a group *per topic*, as on the other
backends (a RabbitMQ queue, a Pub/Sub subscription per topic and group): on topic ``t``
it is the Kafka group id ``<group>~t`` (:func:`group_id`). Kafka rebalances a group as a
whole, so one group id for every topic would make each new subscription or pull of the
adapter stop and re-assign every other one (eagerly: aiokafka has no cooperative
protocol), waiting for their next heartbeat each time; per topic, a new consumer joins
alone unless it competes for the same topic (then one rebalance, :data:`HEARTBEAT_MS`).
A new group starts at the oldest record (``from_beginning=True``, ``consume``'s default)
or at new ones (``subscribe``'s), fixed by :meth:`KafkaAdapter.start_group` before the
call returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from bus import ConfigurationError
from bus.abc import Bridge
from bus.events import BridgeAdapter

from ._bridge import KafkaBridge
from ._errors import translate

__all__ = ["KafkaAdapter", "group_id"]

HEARTBEAT_MS = 500
"""The facade's consumers' heartbeat interval (aiokafka's default is 3 s): a member
joining a group with live members waits until each noticed the rebalance at its next
heartbeat, measured 2.5 s with the default and 0.5 s with this (docs/facade.md)."""


def group_id(group: str, topic: str) -> str:
    """The Kafka group id of the facade's *group* on *topic*: ``<group>~<topic>`` (``~``
    is not allowed in a topic name, so two pairs never share an id)."""
    return f"{group}~{topic}"


class KafkaAdapter(BridgeAdapter):
    """The ``kafka`` backend of ``bus.events`` (``UserEvent(event_type="kafka", ...)``)."""

    backend = "kafka"

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092",
        *,
        acks: int | str = "all",
        retries: int | None = None,
        batch_size: int | None = None,
        compression_type: str | None = None,
        group: str = "events",
        connect_timeout: float = 10.0,
        end_idle: float = 2.0,
        **bridge_options: Any,
    ) -> None:
        super().__init__(group=group, connect_timeout=connect_timeout, end_idle=end_idle)
        self.bootstrap_servers = bootstrap_servers
        for reserved in ("name", "group_id", "auto_offset_reset"):
            if reserved in bridge_options:
                raise ConfigurationError(
                    f"KafkaAdapter sets {reserved} itself; use group= and "
                    "subscribe/consume(from_beginning=...)"
                )
        if acks not in ("all", -1) and "enable_idempotence" not in bridge_options:
            # The seed's acks=1 (or 0) asks for weaker acknowledgements, which Kafka's
            # idempotent producer refuses: that combination means "not idempotent".
            bridge_options["enable_idempotence"] = False
        if "runtime" not in bridge_options:
            # A consumer on the trio-asyncio runtime cannot leave its group when the trio
            # run ends right after a `break` (the loop's system task is cancelled with
            # the consumer's): on the thread runtime the shielded close still runs.
            bridge_options.setdefault("ingress_runtime", "thread")
        consumer_options = bridge_options.get("consumer_options")
        if consumer_options is not None and not isinstance(consumer_options, Mapping):
            raise ConfigurationError(
                f"KafkaAdapter: consumer_options must be a mapping, got {consumer_options!r}"
            )
        # A member learns that a new one joins its group at its next heartbeat: that
        # interval is what a competing subscription's rebalance costs (aiokafka's 3 s).
        bridge_options["consumer_options"] = {
            "heartbeat_interval_ms": HEARTBEAT_MS, **(consumer_options or {})
        }
        self._options: dict[str, Any] = {
            "acks": acks, "retries": retries, "batch_size": batch_size,
            "compression_type": compression_type, **bridge_options,
        }
        self.make_bridge(name="kafka", group=None, topic=None, from_beginning=False)  # checks

    def __repr__(self) -> str:
        return f"<KafkaAdapter {self.bootstrap_servers!r} group={self.group!r}>"

    def make_bridge(
        self, *, name: str, group: str | None, topic: str | None, from_beginning: bool
    ) -> Bridge:
        try:
            return KafkaBridge(
                self.bootstrap_servers, name=name,
                group_id=None if group is None or topic is None else group_id(group, topic),
                auto_offset_reset="earliest" if from_beginning else "latest", **self._options,
            )
        except TypeError as exc:
            raise ConfigurationError(f"KafkaAdapter: {exc}") from None

    async def start_group(
        self, bridge: Bridge, topic: str, group: str, from_beginning: bool
    ) -> int | None:
        """Commit the start of each partition the group never committed (its oldest
        record with ``from_beginning``, else its end offset now), so a later member of
        the group starts there too, not at its own "latest" (a message pushed after a
        pull or subscribe returned would be skipped); return the records between the
        group's position and each partition's end offset now."""
        assert isinstance(bridge, KafkaBridge)
        try:
            waiting = await bridge._egress().run(
                _start_group, bridge._common, topic, group_id(group, topic), from_beginning
            )
            if waiting is None:
                # No such topic yet: create it (as the consumer would, by asking for it)
                # so that the group's start can be fixed now, before anything is pushed.
                await bridge.create_topic(topic)
                waiting = await bridge._egress().run(
                    _start_group, bridge._common, topic, group_id(group, topic), from_beginning
                )
        except Exception as exc:
            raise translate(exc, f"reading the offsets of {topic!r}", ()) from exc
        return waiting or 0

    async def remove_topic(self, bridge: Bridge, topic: str, groups: set[str]) -> None:
        """Delete the topic, and make the producer stop asking for its metadata: its
        next metadata request (the next push to another topic) would have the broker
        create it again (``auto.create.topics.enable``, on by default)."""
        assert isinstance(bridge, KafkaBridge)
        await bridge.delete_topic(topic)
        if bridge._producer is not None:
            await bridge._egress().run(_forget_topic, bridge._producer, topic)

    def topic_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if "num_partitions" in options:  # the admin client's spelling
            options["partitions"] = options.pop("num_partitions")
        return options


async def _start_group(
    options: dict[str, Any], topic: str, group: str, from_beginning: bool
) -> int | None:
    """(On the bridge's asyncio loop.) A consumer of *group* that joins nothing (manual
    assignment): reads the group's committed offsets and the partitions' begin and end
    offsets, commits the start of those never committed; None if *topic* does not
    exist. That commit is refused while
    the group has live members (they own its positions): then nothing is fixed here."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        partitions = metadata.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return None  # no such topic
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        total, starts = 0, {}
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                committed = starts[tp] = begins[tp] if from_beginning else ends[tp]
            total += max(0, ends[tp] - max(committed, begins[tp]))
        if starts:
            consumer.assign(list(starts))
            with contextlib.suppress(KafkaError):
                await consumer.commit(starts)
        return total
    finally:
        await consumer.stop()


async def _forget_topic(producer: Any, topic: str) -> None:
    """(On the bridge's asyncio loop.) Drop *topic* from the metadata the producer keeps
    asking for."""
    client = producer.client
    await client.set_topics([t for t in client._topics if t != topic])
