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
  keeps messages per subscription). StreamingPull runs on the threaded client
  (:mod:`._ingress`): ``max_outstanding`` bounds messages received and not done, the
  client extends their ack deadlines until done (``max_lease_duration``); a message is
  acked when the bus reports it done, never nacked once delivered: what is not done when
  the process dies comes back after the subscription's ack deadline;
- **redelivery** is counted: ``delivery_attempt`` where the subscription has a
  dead-letter policy, else the bridge remembers recent message ids
  (:attr:`PubSubBridge.redelivered`).

Client choice, measured on the emulator (5,000 publishes of ~200 B, 8 ordering keys,
batches of 256, 3 interleaved rounds): the generated synchronous client, one ``Publish``
per batch in a trio worker thread, 37.5k-66.2k/s; the generated asyncio client on an
asyncio loop in a thread of ours (``bridges._runtime``), one crossing per batch,
21.9k-31.6k/s (and grpc.aio's poller thread can outlive the bridge until a garbage
collection); the threaded ``google.cloud.pubsub_v1.PublisherClient`` with ordering
enabled, completion of a batch handed to trio with one ``TrioToken.run_sync_soon``,
6.4k-8.7k/s (it batches per ordering key). Egress and admin use the first; ingress uses
the threaded ``SubscriberClient``, whose StreamingPull manager brings flow control and
lease extension.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog
import trio

from bus import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    Envelope,
    MissingDependencyError,
)
from bus._routing import is_pattern
from bus.abc import Bridge, Delivery, Features, Port, Rejected

from ._client import Endpoint, NotSent, PubSubCalls, streaming_subscriber
from ._errors import is_client_error, is_invalid, is_not_found, translate
from ._ingress import Intake, Pulls
from ._names import subscription_id, topic_from_id, topic_id
from ._wire import MAX_MESSAGE_BYTES, from_pubsub, problem, to_pubsub

__all__ = ["FEATURES", "PubSubBridge"]

T = TypeVar("T")
log = structlog.get_logger("bus")

REQUEST_MESSAGES = 1000
REQUEST_BYTES = 9_000_000
"""Pub/Sub takes at most 1,000 messages and 10 MB in one Publish request."""
SEEN_IDS = 65_536
"""Recent message ids remembered to count redeliveries."""

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
        "Order holds per key (ordering_key; subscriptions have message ordering on); the "
        "client hands over a key's next message only when the previous one is done, so a "
        "key moves one message at a time through the bus. Import patterns are matched "
        "against a listing of the topics, re-listed every relist_interval (10 s): "
        "messages published to a topic before its subscription existed are not imported. "
        "Undone messages come back after the ack deadline (10 s by default). In tests: "
        "Google's emulator keeps everything in memory, so a restart loses topics and "
        "subscriptions (restartable: no; on Google Cloud, persistent); it does not "
        "enforce IAM or the 10 MB limit (the bridge checks it)."
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
    set on subscriptions the bridge creates; ``max_outstanding`` / ``max_outstanding_bytes``
    bound what each subscription has received and not acknowledged.
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
        max_outstanding_bytes: int = 100 * 1024 * 1024,
        max_lease_duration: float = 3600.0,
        relist_interval: float | None = 10.0,
        timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        _require_client()
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
        self._flow = (max_outstanding, max_outstanding_bytes, max_lease_duration)
        self._relist = relist_interval
        self._max_bytes = max_message_bytes
        self._client = PubSubCalls(self._endpoint)
        self._open = False
        self._intake: Intake | None = None
        self._pulls: Pulls | None = None
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.received = 0
        """Messages received from Pub/Sub (redeliveries included)."""
        self.redelivered = 0
        """Messages received again (``delivery_attempt`` > 1, or an id seen recently)."""
        self.acked = 0
        """Messages acknowledged because the bus reported them done."""

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
        intake, pulls = self._intake, self._pulls
        self._intake = self._pulls = None
        if intake is not None:
            for _, message in intake.take_nowait():
                message.nack()  # never handed to the bus: let it come back at once
        if pulls is not None:
            await pulls.stop()
        self._open = False
        with contextlib.suppress(BackendError):
            await self._call(self._client.close, check=False)

    async def _call(self, fn: Callable[..., T], *args: Any, check: bool = True) -> T:
        """Run the blocking client call *fn* in a worker thread (abandoned if cancelled:
        every call has a timeout); translate the client's exceptions."""
        if check and not self._open:
            raise ConfigurationError(
                f"bridge {self.name!r} is not open: attach it to a bus (bus.attach) first"
            )
        try:
            return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)
        except Exception as exc:
            if is_client_error(exc):
                raise translate(exc, self.name) from exc
            raise

    # -- egress -----------------------------------------------------------------------

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None] | None:
        results: list[BaseException | None] = [None] * len(batch)
        by_topic: dict[str, list[tuple[int, tuple[bytes, dict[str, str], str]]]] = {}
        for i, env in enumerate(batch):
            try:
                tid = topic_id(env.topic, self.topic_prefix)
            except ConfigurationError as exc:
                results[i] = Rejected(str(exc))
                continue
            out = to_pubsub(env, port.encode(env))
            why = problem(out, self._max_bytes)
            if why is not None:
                results[i] = Rejected(why)
                continue
            by_topic.setdefault(tid, []).append((i, (out.data, out.attributes, out.ordering_key)))
        requests: list[tuple[str, list[tuple[bytes, dict[str, str], str]]]] = []
        slots: list[list[int]] = []
        for tid, records in by_topic.items():
            path = self._endpoint.topic_path(tid)
            for chunk in _chunks(records):
                requests.append((path, [r for _, r in chunk]))
                slots.append([i for i, _ in chunk])
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
        from google.cloud.pubsub_v1.types import FlowControl

        if self._pulls is not None:  # restarted after a failure: start afresh
            old_intake, old_pulls = self._intake, self._pulls
            self._intake = self._pulls = None
            if old_intake is not None:
                for _, message in old_intake.take_nowait():
                    message.nack()
            await old_pulls.stop()
        intake = self._intake = Intake(trio.lowlevel.current_trio_token())
        messages, max_bytes, lease = self._flow
        flow = FlowControl(
            max_messages=messages, max_bytes=max_bytes, max_lease_duration=lease
        )
        pulls = self._pulls = Pulls(partial(streaming_subscriber, self._endpoint), flow, intake)
        await self._discover(port, pulls)
        async with trio.open_nursery() as nursery:
            if self._relist is not None:
                nursery.start_soon(self._relist_loop, port, pulls, self._relist)
            task_status.started()
            while True:
                items = await intake.take()
                if intake.failure is not None:
                    exc = intake.failure
                    raise translate(exc, self.name) from exc
                for n, (topic, message) in enumerate(items):
                    try:
                        await self._deliver(port, topic, message)
                    except trio.Cancelled:
                        for _, rest in items[n + 1:]:
                            rest.nack()  # taken but never handed to the bus
                        raise

    async def _discover(self, port: Port, pulls: Pulls) -> None:
        """Subscribe to every topic an import pattern matches (creating literal ones)."""
        wanted: dict[str, str] = {}
        for pattern in port.import_patterns:
            if not is_pattern(pattern):
                tid = topic_id(pattern, self.topic_prefix)
                if self._create_topics:
                    await self._call(self._client.create_topic, tid)
                wanted[tid] = pattern
        for tid in await self._call(self._client.list_topics):
            topic = topic_from_id(tid, self.topic_prefix)
            if topic is not None and port.wants(topic):
                wanted[tid] = topic
        for tid, topic in wanted.items():
            sid = subscription_id(tid, self.group)
            path = self._endpoint.subscription_path(sid)
            if path in pulls:
                continue
            try:
                await self._call(
                    self._client.create_subscription, sid, tid, self._ack_deadline, self._ordering
                )
            except BackendError as exc:
                if is_not_found(exc.__cause__ or exc):
                    continue  # the topic went away since the listing
                raise
            await pulls.start(path, topic)
            log.debug("pubsub.subscribed", bridge=self.name, subscription=sid, topic=topic)

    async def _relist_loop(self, port: Port, pulls: Pulls, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self._discover(port, pulls)
            except BackendError as exc:
                log.warning("pubsub.relist_failed", bridge=self.name, error=str(exc))

    async def _deliver(self, port: Port, topic: str, message: Any) -> None:
        self.received += 1
        attempt = self._attempt(message)
        incoming = from_pubsub(
            topic, message.attributes.items(), message.message_id, message.ordering_key,
            message.publish_time,
        )
        on_done = partial(self._on_done, message)
        kwargs: dict[str, Any] = {
            "id": incoming.id, "key": incoming.key, "headers": incoming.headers,
            "time": incoming.time, "attempt": max(incoming.attempt, attempt),
            "source": incoming.source, "on_done": on_done,
        }
        try:
            port.deliver_nowait(incoming.topic, message.data, **kwargs)
        except trio.WouldBlock:
            # A mailbox is full: wait here. The client keeps at most max_outstanding
            # messages un-acked per subscription, then stops reading the stream.
            await port.deliver(incoming.topic, message.data, **kwargs)

    def _attempt(self, message: Any) -> int:
        """1 for a first delivery; more (and counted) for a redelivery."""
        attempt: int | None = message.delivery_attempt
        mid: str = message.message_id
        seen = self._seen
        previous = seen.pop(mid, 0)
        seen[mid] = previous + 1
        if len(seen) > SEEN_IDS:
            seen.popitem(last=False)
        if attempt is None:
            attempt = previous + 1
        if attempt > 1:
            self.redelivered += 1
        return attempt

    def _on_done(self, message: Any, delivery: Delivery) -> None:
        message.ack()  # queued to the client's dispatcher thread; does not block
        self.acked += 1

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
    records: list[tuple[int, tuple[bytes, dict[str, str], str]]],
) -> list[list[tuple[int, tuple[bytes, dict[str, str], str]]]]:
    """*records* cut into Publish requests within Pub/Sub's per-request limits."""
    chunks: list[list[tuple[int, tuple[bytes, dict[str, str], str]]]] = [[]]
    size = 0
    for record in records:
        data, attrs, key = record[1]
        n = len(data) + len(key) + sum(len(k) + len(v) for k, v in attrs.items()) + 64
        if chunks[-1] and (len(chunks[-1]) >= REQUEST_MESSAGES or size + n > REQUEST_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += n
    return chunks


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _require_client() -> None:
    try:
        import google.cloud.pubsub_v1  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the Pub/Sub bridge needs google-cloud-pubsub: pip install 'trio-bus[pubsub]'"
        ) from exc
