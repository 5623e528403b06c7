"""The Kafka bridge: aiokafka behind the bus's bridge contract.

Mapping (see ``docs/bridges.md``):

- bus topic = Kafka topic (dotted names are valid Kafka names); envelope key = record
  key, so one key stays on one partition, in order; payload = the topic codec's bytes;
  envelope attributes and headers = CloudEvents binary mode ``ce_`` headers;
- egress: an idempotent producer with ``acks="all"`` by default; a batch is one crossing
  into asyncio (append every record to a batch builder of its partition, hand those to
  the producer, then wait for every acknowledgement: ``_client.send_batch``) with one
  result per record: too large / invalid / not encodable -> dead letter, the rest
  retried. More than one export batch in flight is ``bus.attach(concurrency=N)`` (a key
  keeps its lane); aiokafka keeps one produce request per broker in flight, so a
  partition's batches reach the log in the order they were handed over;
- ingress: a consumer group member (``group_id``, default ``trio-bus.<name>``) without
  auto-commit, subscribed to the import patterns (a regex when they have wildcards);
  offsets are committed only below what the bus is done with (``_ingress.py``);
- admin: create/delete/list topics with partitions and replication factor; health.

Credentials (SASL password, OAuth provider, SSL context) are passed to the client and
appear in no repr, log line or error message. aiokafka is imported when the bridge opens.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from bus import ConfigurationError, Envelope
from bus.abc import Bridge, ExportResults, Features, Port, get_logger, redact

from .._close import close_step
from .._runtime import Runtime, RuntimeKind, start_runtime
from . import _client
from ._errors import export_results, is_unavailable, translate
from ._ingress import Consumer
from ._patterns import subscription
from ._wire import encode_batch

__all__ = ["FEATURES", "KafkaBridge"]

log = get_logger("bus.bridges")

CLOSE_STEP_SECONDS = 8.0
"""At most this long for each step of closing (consumer, producer, admin client)."""

FLUSH_SECONDS = 4.0
"""At most this long for the producer to flush on close; then its connections are closed
regardless (records still queued were never acknowledged, so never counted exported)."""

FEATURES = Features(
    ordered=True,
    persistent=True,
    consumer_groups=True,
    redelivery=True,
    headers=True,
    patterns=True,
    max_message_bytes=1_048_576,
    restartable=True,
    notes="Order is per key (one key, one partition). Wildcard imports subscribe by "
    "regex: topics created later are found at the next metadata refresh, every 5 s "
    "(metadata_max_age_ms; topic.metadata.refresh.interval.ms for confluent-kafka).",
)

EXPORT_BATCH_BYTES = 512 * 1024
"""The producer's ``max_batch_size`` unless *batch_size* says otherwise: an export batch
is complete when it is handed over, so it goes out in as few record batches as fit
(aiokafka's 16 KB default cut a 256-message export into ~2 per partition, each waiting
for the one before to leave: 10.9 -> 8.5 us of CPU a record, measured side by side),
well below the broker's 1 MB ``max.message.bytes`` and aiokafka's ``max_request_size``."""

METADATA_REFRESH_MS = 5_000
"""How often a consumer refreshes its metadata, so a wildcard import finds topics
created after it started (the clients' defaults are 5 minutes; Kinesis lists its
streams every 5 s, Pub/Sub its topics every 10 s). A consumer option overrides it."""


class KafkaBridge(Bridge):
    """Mirror bus topics to and from a Kafka cluster.

    The producer options of the seed are accepted by name: *acks*, *retries*,
    *batch_size* (aiokafka's ``max_batch_size``, default :data:`EXPORT_BATCH_BYTES`),
    *linger_ms*, *compression_type*,
    *client_id*; TLS and SASL settings go to every client. *producer_options* and
    *consumer_options* pass any other aiokafka setting through. *retries* is accepted for
    the seed's sake only: aiokafka retries retriable errors until ``request_timeout_ms``
    by itself, and the bus retries what still failed, with backoff.

    *egress_runtime* / *ingress_runtime* choose how aiokafka runs inside trio (see
    :mod:`bridges._runtime`); *runtime* sets both. The defaults are what measured best
    (SPEC §6, ``bus bench bridges --runtimes ...``): producing on an asyncio loop in a thread
    (trio-asyncio's per-callback cost makes the producer 0.35-0.7x as fast), consuming on
    trio-asyncio (no thread hand-off per batch, and no GIL contention between the fetch
    and the bus delivering the previous batch).
    """

    features = FEATURES

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092",
        *,
        name: str = "kafka",
        group_id: str | None = None,
        acks: int | str = "all",
        enable_idempotence: bool = True,
        retries: int | None = None,
        batch_size: int | None = None,
        linger_ms: int | None = None,
        compression_type: str | None = None,
        client_id: str | None = None,
        security_protocol: str = "PLAINTEXT",
        ssl_context: ssl.SSLContext | None = None,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_oauth_token_provider: Any = None,
        auto_offset_reset: str = "earliest",
        commit_interval: float = 0.5,
        poll_interval: float = 0.2,
        max_poll_records: int = 500,
        topic_ready_timeout: float = 10.0,
        runtime: RuntimeKind | None = None,
        egress_runtime: RuntimeKind = "thread",
        ingress_runtime: RuntimeKind = "trio-asyncio",
        producer_options: Mapping[str, Any] | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_options(acks, enable_idempotence, commit_interval=commit_interval,
                      poll_interval=poll_interval)
        self.name = name
        self.bootstrap_servers = join_servers(bootstrap_servers)
        self.group_id = group_id or f"trio-bus.{name}"
        self.retries = retries
        self._egress_kind: RuntimeKind = runtime or egress_runtime
        self._ingress_kind: RuntimeKind = runtime or ingress_runtime
        common: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": security_protocol,
            "sasl_mechanism": sasl_mechanism,
        }
        if client_id is not None:
            common["client_id"] = client_id
        if ssl_context is not None:
            common["ssl_context"] = ssl_context
        if sasl_plain_username is not None:
            common["sasl_plain_username"] = sasl_plain_username
        if sasl_plain_password is not None:
            common["sasl_plain_password"] = sasl_plain_password
        if sasl_oauth_token_provider is not None:
            common["sasl_oauth_token_provider"] = sasl_oauth_token_provider
        self._common = common  # holds secrets: never printed
        self._secrets = (sasl_plain_password,)  # masked in error messages
        producer: dict[str, Any] = {**common, "acks": acks,
                                    "enable_idempotence": enable_idempotence}
        producer["max_batch_size"] = EXPORT_BATCH_BYTES if batch_size is None else batch_size
        if linger_ms is not None:
            producer["linger_ms"] = linger_ms
        if compression_type is not None:
            producer["compression_type"] = compression_type
        producer.update(producer_options or {})
        self._producer_options = producer
        consumer: dict[str, Any] = {
            **common, "group_id": self.group_id, "enable_auto_commit": False,
            "auto_offset_reset": auto_offset_reset, "max_poll_records": max_poll_records,
            # a wildcard import sees a topic created later at the next metadata refresh:
            # 5 s, not aiokafka's 5 minutes (a small request per refresh)
            "metadata_max_age_ms": METADATA_REFRESH_MS,
        }
        consumer.update(consumer_options or {})
        self._consumer_options = consumer
        self._commit_interval = commit_interval
        self._poll_ms = max(1, math.ceil(poll_interval * 1000))
        self._max_records = max_poll_records
        self._topic_ready_timeout = topic_ready_timeout
        self._egress_rt: Runtime | None = None
        self._ingress_rt: Runtime | None = None
        self._producer: Any = None
        self._admin: Any = None
        self._consumer: Consumer | None = None

    def __repr__(self) -> str:
        return (
            f"KafkaBridge(name={self.name!r}, bootstrap_servers={self.bootstrap_servers!r}, "
            f"group_id={self.group_id!r})"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        _client.client()  # a missing aiokafka fails here, with the extra to install
        _client.check_codec(self._producer_options.get("compression_type"))
        self._egress_rt = await start_runtime(self._egress_kind)
        try:
            self._producer = await self._egress_rt.run(
                _client.start_producer, self._producer_options
            )
        except BaseException as exc:
            await self._close_runtimes()
            if isinstance(exc, Exception):
                raise translate(
                    exc, f"connecting to {self.bootstrap_servers}", self._secrets
                ) from exc
            raise

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                if self._consumer is not None:
                    consumer, self._consumer = self._consumer, None
                    await self._quietly(consumer.close(), "closing the consumer")
                if self._producer is not None and self._egress_rt is not None:
                    producer, self._producer = self._producer, None
                    await self._quietly(
                        self._stop_producer(producer, self._egress_rt), "stopping the producer"
                    )
                if self._admin is not None and self._egress_rt is not None:
                    admin, self._admin = self._admin, None
                    await self._quietly(self._egress_rt.run(admin.close), "closing the admin")
            finally:
                await self._close_runtimes()

    async def _quietly(self, work: Any, doing: str) -> None:
        await close_step(work, bridge=self.name, step=doing, within=CLOSE_STEP_SECONDS,
                         secrets=self._secrets)

    async def _stop_producer(self, producer: Any, rt: Runtime) -> None:
        flushed = await rt.run(_client.stop_producer, producer, FLUSH_SECONDS)
        if not flushed:
            log.warning("kafka.flush_abandoned", bridge=self.name, seconds=FLUSH_SECONDS)

    async def _close_runtimes(self) -> None:
        rts = {id(rt): rt for rt in (self._ingress_rt, self._egress_rt) if rt is not None}
        self._ingress_rt = self._egress_rt = None
        for rt in rts.values():
            await rt.aclose()

    def _egress(self) -> Runtime:
        if self._egress_rt is None:
            raise ConfigurationError(f"bridge {self.name!r} is not open: attach it to a bus")
        return self._egress_rt

    # -- egress -------------------------------------------------------------------------

    async def export(self, batch: Sequence[Envelope[Any]], port: Port) -> ExportResults:
        rt = self._egress()
        records, unencodable = encode_batch(batch, port)
        try:
            sent = await rt.run(_client.send_batch, self._producer, records) if records else []
        except Exception as exc:
            raise translate(exc, f"sending {len(batch)} records", self._secrets) from exc
        return export_results(batch, sent, unencodable)

    # -- ingress ------------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        if self._egress_rt is None:
            raise ConfigurationError(f"bridge {self.name!r} is not open: attach it to a bus")
        if self._ingress_rt is None:
            self._ingress_rt = (
                self._egress_rt if self._ingress_kind == self._egress_kind
                else await start_runtime(self._ingress_kind)
            )
        if self._consumer is not None:  # a restart after a failure: start afresh
            old, self._consumer = self._consumer, None
            await self._quietly(old.close(), "closing the failed consumer")
        topics, pattern = subscription(port.import_patterns)
        consumer = Consumer(
            self._ingress_rt, self.name, poll_ms=self._poll_ms, max_records=self._max_records,
            commit_interval=self._commit_interval,
        )
        session = self._consumer_options.get("session_timeout_ms", 10_000)
        self.starting = (
            f"joining Kafka group {self.group_id!r} and looking up its start offsets (a "
            "join waits until every member of the group rejoined; one that went away "
            f"without leaving holds it until its session times out, {session / 1000:g} s)"
        )
        try:
            await consumer.start(self._consumer_options, topics, pattern)
        except Exception as exc:
            raise translate(exc, f"joining group {self.group_id!r}", self._secrets) from exc
        finally:
            self.starting = None
        self._consumer = consumer
        try:
            await consumer.run(port, task_status)
        except Exception as exc:
            # Stays for aclose() when cancelled; after a failure the next run starts anew.
            raise translate(exc, "consuming", self._secrets) from exc

    # -- admin --------------------------------------------------------------------------

    async def _admin_client(self) -> Any:
        if self._admin is None:
            self._admin = await self._egress().run(_client.start_admin, self._common)
        return self._admin

    async def create_topic(
        self, name: str, *, partitions: int = 1, replication_factor: int = 1,
        config: Mapping[str, str] | None = None, **options: Any,
    ) -> None:
        """Create topic *name* (existing is fine); returns once the cluster lists it."""
        if options:
            raise ConfigurationError(f"unknown create_topic options: {sorted(options)}")
        try:
            admin = await self._admin_client()
            await self._egress().run(
                _client.create_topic, admin, name, partitions, replication_factor, config or {},
                self._topic_ready_timeout,
            )
        except Exception as exc:
            raise translate(exc, f"creating topic {name!r}", self._secrets) from exc

    async def delete_topic(self, name: str) -> None:
        try:
            admin = await self._admin_client()
            await self._egress().run(_client.delete_topic, admin, name)
        except Exception as exc:
            raise translate(exc, f"deleting topic {name!r}", self._secrets) from exc

    async def list_topics(self) -> list[str]:
        try:
            admin = await self._admin_client()
            topics: list[str] = await self._egress().run(admin.list_topics)
        except Exception as exc:
            raise translate(exc, "listing topics", self._secrets) from exc
        return sorted(t for t in topics if not t.startswith("__"))

    async def backlog(self, topic: str, group: str | None = None) -> tuple[int, int]:
        """``(records topic keeps, records after group's committed offsets)``, summed over
        its partitions: what a consumer of *group* (default this bridge's) has yet to read,
        from the beginning where it committed nothing. The bridge must be open;
        :class:`~bus.ConfigurationError` if the cluster has no topic *topic*."""
        try:
            found = await self._egress().run(
                _client.backlog, self._common, topic, group or self.group_id
            )
        except Exception as exc:
            raise translate(exc, f"reading the offsets of {topic!r}", self._secrets) from exc
        if found is None:
            raise ConfigurationError(
                f"Kafka at {self.bootstrap_servers} has no topic {topic!r}: check its name"
            )
        return found

    async def commit_done(self) -> bool:
        """Commit now the offsets of what the bus is done with, while ingress runs, and
        wait for Kafka's answer: True if nothing done is left uncommitted (for a tool that
        ends right after, ``bus dead-letters replay``, rather than the final commit's
        bound at close). False if the commit failed (it is retried with the next one)."""
        consumer = self._consumer
        if consumer is None:
            return False
        await consumer.commit()
        return not consumer.commit_failed

    async def lag(self) -> int | None:
        """Records not fetched yet: from the consumer's position (records fetched but not
        delivered are behind it) to the high watermarks the last fetches reported, over
        the assigned partitions (None while nothing is assigned or fetched). Never
        raises."""
        consumer = self._consumer
        if consumer is None or consumer.client is None:
            return None
        with trio.move_on_after(5):
            try:
                return await consumer.rt.run(_client.lag, consumer.client)
            except Exception:
                return None
        return None

    async def health(self) -> bool:
        if self._egress_rt is None:
            return False
        try:
            with trio.fail_after(5):
                await self.list_topics()
        except (Exception, trio.TooSlowError) as exc:
            log.info("kafka.unhealthy", bridge=self.name, error=redact(repr(exc), *self._secrets),
                     unavailable=is_unavailable(exc))
            return False
        return True


# -- helpers shared by both clients -------------------------------------------------------


def check_options(acks: int | str, enable_idempotence: bool, **seconds: float) -> None:
    """One clear error for options both Kafka bridges refuse; *seconds* must be > 0."""
    if acks not in ("all", -1, 0, 1):
        raise ConfigurationError(f"acks must be 'all', -1, 0 or 1, got {acks!r}")
    if enable_idempotence and acks not in ("all", -1):
        raise ConfigurationError(
            f"enable_idempotence=True needs acks='all' (got acks={acks!r}); "
            f"pass enable_idempotence=False to use weaker acks"
        )
    bad = [name for name, value in seconds.items() if not value > 0]
    if bad:
        raise ConfigurationError(f"{' and '.join(bad)} must be > 0 seconds")


def join_servers(bootstrap_servers: str | Sequence[str]) -> str:
    """``host:port[,host:port...]`` from a string or a list of them."""
    if isinstance(bootstrap_servers, str):
        return bootstrap_servers
    return ",".join(bootstrap_servers)
