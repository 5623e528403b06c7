"""The Pub/Sub bridge: bus topics as Google Cloud Pub/Sub topics (google-cloud-pubsub).

Mapping (the whole of it):

- **topics**: bus topic ``order.created`` is the Pub/Sub topic id
  ``topic_prefix + "order.created"`` (bus names need no escaping, see :mod:`._names`);
- **egress**: a batch is one crossing to the asyncio loop, one ``Publish`` request per
  topic (at most 1,000 messages or ~9 MB each), sent one after the other, each confirmed
  by the service before the batch counts as exported. The key is the ``ordering_key``;
  CloudEvents binary mode as ``ce-`` attributes (:mod:`._wire`). A record over Pub/Sub's
  limits is :class:`~bus.abc.Rejected` before sending; a request the service refuses as
  invalid is resent a message at a time so only the bad record is rejected; a missing
  topic is created (``create_topics=True``, default) or rejected; anything else is
  transient (the bus retries with backoff). A failed request holds back the later
  requests of its topic in that batch, so a retry cannot reorder a key;
- **ingress**: Pub/Sub has no wildcard subscriptions, so the bridge lists the project's
  topics, keeps those whose bus name matches an import pattern (literal patterns: the
  topic is created if missing), and gives each one subscription per consumer group,
  ``f"{topic_id}~{group or name}"``, created with message ordering. Topics created after
  attach are picked up by a re-list every ``relist_interval`` seconds (``None``: never).
  A message published before its subscription existed is not delivered to it (Pub/Sub
  keeps messages per subscription). Each subscription is read with unary ``Pull`` calls
  in worker threads; ``max_outstanding`` bounds the messages received and not yet
  acknowledged, over all subscriptions (no pull while it is reached: that is the
  backpressure); the deadline of messages still in work is extended every half
  ``ack_deadline`` (up to ``max_lease_duration``, :mod:`._ingress`); a message is
  acknowledged when the bus reports it done, batched, and never nacked once delivered:
  what is not done when the process dies comes back after the ack deadline. Messages
  pulled but never handed to the bus (ingress cancelled mid-batch) are handed back at
  once (deadline 0);
- **redelivery** is counted (:attr:`PubSubBridge.redelivered`): ``delivery_attempt``
  where the subscription has a dead-letter policy, else the bridge remembers recent
  message ids.

Client choice, measured on the emulator (5,000 publishes of ~200 B, 8 ordering keys,
batches of 256, 3 interleaved rounds): the generated synchronous client, one ``Publish``
per batch in a trio worker thread, 37.5k-66.2k/s; the generated asyncio client on an
asyncio loop in a thread of ours (``bridges._runtime``), one crossing per batch,
21.9k-31.6k/s (and grpc.aio's poller thread can outlive the bridge until a garbage
collection); the threaded ``google.cloud.pubsub_v1.PublisherClient`` with ordering
enabled, completion of a batch handed to trio with one ``TrioToken.run_sync_soon``,
6.4k-8.7k/s (it batches per ordering key). Everything uses the first kind of call.
Ingress does not use the threaded ``SubscriberClient`` (StreamingPull with its own
leasing and flow control): on the emulator (0.8.20) a subscription whose StreamingPull
stream went away, cancelled or its process killed, keeps routing messages to the dead
stream, so a restarted consumer gets part of the backlog or none of it (reproduced with
the plain client); unary Pull has no stream to go stale. It also leaves no client thread
behind, and lets the bridge ack in batches of done messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import trio

from bus import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    Envelope,
)
from bus.abc import Bridge, Features, Port, Rejected, get_logger

from .._common import call, not_open, require
from ._client import Endpoint, NotSent, PubSubCalls
from ._errors import is_client_error, is_invalid, is_not_found, translate
from ._ingress import Ingress
from ._names import subscription_id, topic_from_id, topic_id
from ._wire import MAX_MESSAGE_BYTES, encode_checked

__all__ = ["FEATURES", "PubSubBridge"]

T = TypeVar("T")
log = get_logger("bus.bridges")

REQUEST_MESSAGES = 1000
REQUEST_BYTES = 9_000_000
"""Pub/Sub takes at most 1,000 messages and 10 MB in one Publish request."""

FEATURES = Features(
    ordered=True,
    persistent=True,
    consumer_groups=True,
    redelivery=True,
    headers=True,
    patterns=True,
    max_message_bytes=MAX_MESSAGE_BYTES,
    restartable=False,
    notes=(
        "Order holds per key (ordering_key; subscriptions have message ordering on); a "
        "redelivery re-sends the rest of its key after it. Import patterns are matched "
        "against a listing of the topics, re-listed every relist_interval (10 s): "
        "messages published to a topic before its subscription existed are not imported. "
        "Undone messages come back after the ack deadline (10 s by default). In tests: "
        "Google's emulator keeps everything in memory, so a restart loses topics and "
        "subscriptions (restartable: no; on Google Cloud, persistent). The bridge reads "
        "with unary Pull: the emulator's StreamingPull keeps routing messages to streams "
        "that went away."
    ),
)


class PubSubBridge(Bridge):
    """Mirror bus topics to and from Google Cloud Pub/Sub (or its emulator).

    ``project`` defaults to ``GCP_PROJECT_ID`` (else ``PUBSUB_PROJECT_ID``,
    ``GOOGLE_CLOUD_PROJECT``). ``emulator_host`` (default ``PUBSUB_EMULATOR_HOST``) sends
    everything in plaintext to an emulator with no credentials; otherwise
    ``credentials_path`` (default ``GCP_CREDENTIALS_PATH``: a service account JSON file)
    or Application Default Credentials. ``group`` names the consumer group (default
    ``name``): bridges of one group share each topic's subscription. ``ack_deadline`` is
    set on subscriptions the bridge creates; ``max_outstanding`` bounds what the bridge
    has received and not acknowledged; ``pull_wait`` is the deadline of one Pull, and
    so how long stopping ingress may take: a Pull on the wire is waited for, never cut
    (default 2 s; Google's emulator answers an empty Pull one second before its deadline,
    so a close waits at most ~1 s there, and below ~1.5 s idle pulls come back at once, a
    busy loop); ``pull_max`` is the most one
    Pull asks for (smaller pulls spread a group's messages more evenly over its members).
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        name: str = "pubsub",
        group: str | None = None,
        topic_prefix: str = "",
        emulator_host: str | None = None,
        credentials_path: str | None = None,
        create_topics: bool = True,
        ordering: bool = True,
        ack_deadline: int = 10,
        max_outstanding: int = 1000,
        max_lease_duration: float = 3600.0,
        relist_interval: float | None = 10.0,
        pull_wait: float = 2.0,
        pull_max: int = 100,
        timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        require("google.cloud.pubsub_v1", "pubsub", "the Pub/Sub bridge", "google-cloud-pubsub")
        project = project or _env("GCP_PROJECT_ID", "PUBSUB_PROJECT_ID", "GOOGLE_CLOUD_PROJECT")
        if not project:
            raise ConfigurationError(
                "PubSubBridge needs a project: PubSubBridge(project=...) or GCP_PROJECT_ID"
            )
        if not 10 <= ack_deadline <= 600:
            raise ConfigurationError(f"ack_deadline must be 10-600 seconds, not {ack_deadline!r}")
        if max_outstanding < 1:
            raise ConfigurationError(f"max_outstanding must be >= 1, not {max_outstanding!r}")
        self.name = name
        self.group = group or name
        self.topic_prefix = topic_prefix
        self.features = dataclasses.replace(FEATURES, max_message_bytes=max_message_bytes)
        self._endpoint = Endpoint(
            project,
            emulator_host=emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST") or None,
            credentials_path=credentials_path or os.environ.get("GCP_CREDENTIALS_PATH") or None,
            timeout=timeout,
        )
        self._create_topics = create_topics
        self._ordering = ordering
        self._ack_deadline = ack_deadline
        self._max_bytes = max_message_bytes
        self._tids: dict[str, str | Rejected] = {}  # bus topic -> Pub/Sub id or why none
        self._client = PubSubCalls(self._endpoint)
        self._open = False
        self._pull_wait = pull_wait
        self._ingress = Ingress(
            self._call, lambda: self._open, name=name, group=self.group,
            topic_prefix=topic_prefix, create_topics=create_topics, ordering=ordering,
            ack_deadline=ack_deadline, max_outstanding=max_outstanding,
            max_lease_duration=max_lease_duration, relist_interval=relist_interval,
            pull_wait=pull_wait, pull_max=min(max(1, pull_max), 1000),
        )

    def __repr__(self) -> str:
        ep = self._endpoint
        where = f"emulator={ep.emulator_host!r}" if ep.emulator_host else "cloud"
        return (
            f"PubSubBridge(name={self.name!r}, project={ep.project!r}, {where}, "
            f"group={self.group!r}, topic_prefix={self.topic_prefix!r})"
        )

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._open:
            raise ConfigurationError(f"bridge {self.name!r} is open already")
        self._open = True
        try:
            await self._call(self._client.start)
            try:
                await self._call(self._client.probe, self._endpoint.timeout)
            except BackendError as exc:
                raise BackendUnavailableError(
                    f"Pub/Sub bridge {self.name!r} cannot reach {self._where()}: {exc}"
                ) from exc.__cause__
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.aclose()
            raise

    def _where(self) -> str:
        ep = self._endpoint
        return f"the emulator at {ep.emulator_host}" if ep.emulator_host else "Google Cloud"

    async def aclose(self) -> None:
        if not self._open:
            return
        self._open = False
        # Pulls still on the wire end by themselves within pull_wait (ingress has been
        # cancelled; their messages are handed back): closing the channel under them
        # would cancel them, and Google's emulator mishandles cancelled calls (RST_STREAM:
        # a NoSuchMethodError in its log, a pull left waiting that still takes messages).
        # This wait bounds a close: about a second on the emulator (see pull_wait).
        with trio.move_on_after(self._pull_wait + 2):
            while self._ingress.pulls_in_flight:  # noqa: ASYNC110 - counted by the pullers
                await trio.sleep(0.01)
        await self._ingress.flush()
        with contextlib.suppress(BackendError):
            await self._call(self._client.close, check=False)

    async def _call(self, fn: Callable[..., T], *args: Any, check: bool = True) -> T:
        """Run the blocking client call *fn* in a worker thread (abandoned if cancelled:
        every call has a timeout); translate the client's exceptions."""
        return await call(
            _in_thread if self._open or not check else None, fn, *args,
            is_client_error=is_client_error, translate=self._translate,
            closed=partial(not_open, self.name),
        )

    def _translate(self, exc: BaseException) -> BaseException:
        return translate(exc, self.name)

    # -- egress -----------------------------------------------------------------------

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None] | None:
        results: list[BaseException | None] = [None] * len(batch)
        by_topic: dict[str, list[tuple[int, tuple[bytes, dict[str, str], str], int]]] = {}
        tids = self._tids
        encode_payload, max_bytes = port.encode, self._max_bytes
        for i, env in enumerate(batch):
            tid = tids.get(env.topic)
            if tid is None:
                tid = tids[env.topic] = self._topic_id(env.topic)
            if not isinstance(tid, str):
                results[i] = tid
                continue
            encoded = encode_checked(env, encode_payload(env), max_bytes)
            if isinstance(encoded, str):
                results[i] = Rejected(encoded)
                continue
            out, chars = encoded
            entry = (i, (out.data, out.attributes, out.ordering_key), len(out.data) + chars)
            records = by_topic.get(tid)
            if records is None:
                by_topic[tid] = [entry]
            else:
                records.append(entry)
        requests: list[tuple[str, list[tuple[bytes, dict[str, str], str]]]] = []
        slots: list[list[int]] = []
        for tid, records in by_topic.items():
            path = self._endpoint.topic_path(tid)
            for chunk in _chunks(records):
                requests.append((path, [r for _, r, _ in chunk]))
                slots.append([i for i, _, _ in chunk])
        if requests:
            answers = await self._call(self._client.publish, requests)
            singles: list[tuple[str, list[tuple[bytes, dict[str, str], str]]]] = []
            single_slots: list[int] = []
            for (path, sent), idx, answer in zip(requests, slots, answers, strict=True):
                if answer is None:
                    continue
                if is_invalid(answer) and len(sent) > 1:
                    # one bad record fails the whole request: find it, send the rest
                    singles += [(path, [r]) for r in sent]
                    single_slots += idx
                    continue
                result = await self._result(path, answer)
                for i in idx:
                    results[i] = result
            if singles:
                answers = await self._call(self._client.publish, singles)
                for (path, _), i, answer in zip(singles, single_slots, answers, strict=True):
                    results[i] = None if answer is None else await self._result(path, answer)
        return None if all(r is None for r in results) else results

    def _topic_id(self, topic: str) -> str | Rejected:
        """The Pub/Sub topic id of bus topic *topic*, or why it has none (remembered per
        topic by :meth:`export`, a few thousand at most)."""
        if len(self._tids) >= 4096:
            self._tids.clear()
        try:
            return topic_id(topic, self.topic_prefix)
        except ConfigurationError as exc:
            return Rejected(str(exc))

    async def _result(self, path: str, answer: BaseException) -> BaseException:
        tid = path.rsplit("/", 1)[-1]
        if isinstance(answer, NotSent):
            return BackendError(f"Pub/Sub bridge {self.name!r}: {answer}")
        if is_not_found(answer):
            if not self._create_topics:
                return Rejected(f"Pub/Sub topic {tid!r} does not exist (create_topics=False)")
            with contextlib.suppress(BackendError):
                await self._call(self._client.create_topic, tid)
            return BackendError(f"Pub/Sub topic {tid!r} did not exist; created it, retrying")
        if is_invalid(answer):
            return Rejected(f"refused by Pub/Sub: {getattr(answer, 'message', answer)}")
        if is_client_error(answer):
            return translate(answer, self.name)
        return answer

    # -- ingress ----------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        await self._ingress.run(self._client, port, task_status)

    def on_caught_up(self, callback: Callable[[], None]) -> None:
        """Have *callback* called (in the ingress task, once per ingress run) when every
        subscription ingress reads answered a pull with nothing while none of its
        messages was out (see :mod:`._ingress`). Call before ``attach``. For a reader
        that ends there (the facade's ``pull``)."""
        self._ingress.caught_up_callbacks.append(callback)

    @property
    def received(self) -> int:
        """Messages received from Pub/Sub (redeliveries included)."""
        return self._ingress.received

    @property
    def redelivered(self) -> int:
        """Messages received again (``delivery_attempt`` > 1, or an id seen recently)."""
        return self._ingress.redelivered

    @property
    def acked(self) -> int:
        """Messages acknowledged because the bus reported them done."""
        return self._ingress.acked

    @property
    def extended(self) -> int:
        """Ack deadline extensions sent for messages still in work."""
        return self._ingress.extended

    # -- admin ------------------------------------------------------------------------

    async def create_topic(self, name: str, **options: Any) -> None:
        """Create the Pub/Sub topic of bus topic *name* (idempotent). ``group=`` also
        creates that consumer group's subscription, so messages are kept for it from
        now on (``group=True``: this bridge's group); ``labels=`` sets topic labels."""
        group = options.pop("group", None)
        labels = options.pop("labels", None)
        if options:
            raise ConfigurationError(f"unknown Pub/Sub topic option(s): {sorted(options)}")
        tid = topic_id(name, self.topic_prefix)
        await self._call(self._client.create_topic, tid, labels)
        if group:
            await self.create_subscription(name, self.group if group is True else str(group))

    async def create_kept_topic(self, name: str, group: str) -> None:
        """Keep topic *name*'s messages for *group* from now on, even while nobody reads:
        the topic and *group*'s subscription (``bus topics create``)."""
        await self.create_topic(name, group=group)

    async def delete_kept_topic(self, name: str, group: str) -> None:
        """Undo :meth:`create_kept_topic` (the topic with its subscriptions)."""
        await self.delete_topic(name)

    async def delete_topic(self, name: str) -> None:
        """Delete the topic of *name* and the subscriptions this bridge's naming gave it
        (other subscriptions stay, detached, as Pub/Sub leaves them)."""
        tid = topic_id(name, self.topic_prefix)
        with contextlib.suppress(BackendError):
            for sid in await self._call(self._client.list_subscriptions, tid):
                if sid.startswith(f"{tid}~"):
                    await self._call(self._client.delete_subscription, sid)
        await self._call(self._client.delete_topic, tid)

    async def list_topics(self) -> list[str]:
        """Bus names of the project's topics under ``topic_prefix``, sorted."""
        names = await self._call(self._client.list_topics)
        return sorted(t for t in (topic_from_id(n, self.topic_prefix) for n in names) if t)

    async def create_subscription(self, topic: str, group: str | None = None) -> str:
        """Create *group*'s (default this bridge's) subscription to bus *topic*; its id."""
        tid = topic_id(topic, self.topic_prefix)
        sid = subscription_id(tid, group or self.group)
        await self._call(
            self._client.create_subscription, sid, tid, self._ack_deadline, self._ordering
        )
        return sid

    async def delete_subscription(self, topic: str, group: str | None = None) -> None:
        """Delete *group*'s (default this bridge's) subscription to bus *topic*."""
        sid = subscription_id(topic_id(topic, self.topic_prefix), group or self.group)
        await self._call(self._client.delete_subscription, sid)

    async def list_subscriptions(self, topic: str | None = None) -> list[str]:
        """Subscription ids of the project, or of bus *topic*, sorted."""
        tid = None if topic is None else topic_id(topic, self.topic_prefix)
        return sorted(await self._call(self._client.list_subscriptions, tid))

    async def health(self) -> bool:
        """True if the service answers a one-topic listing within 5 seconds."""
        if not self._open:
            return False
        with trio.move_on_after(5):
            try:
                await self._call(self._client.probe, 5.0)
            except BackendError:
                return False
            return True
        return False


def _chunks(
    records: list[tuple[int, tuple[bytes, dict[str, str], str], int]],
) -> list[list[tuple[int, tuple[bytes, dict[str, str], str], int]]]:
    """*records* (position, record, size in bytes with attributes counted in characters)
    cut into Publish requests within Pub/Sub's per-request limits (the 1 MB margin of
    ``REQUEST_BYTES`` covers characters that take more than a byte)."""
    chunks: list[list[tuple[int, tuple[bytes, dict[str, str], str], int]]] = [[]]
    size = 0
    for record in records:
        n = record[2] + 64
        if chunks[-1] and (len(chunks[-1]) >= REQUEST_MESSAGES or size + n > REQUEST_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += n
    return chunks


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


