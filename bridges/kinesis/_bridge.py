"""The Kinesis bridge: each bus topic is a Kinesis data stream of the same name (aioboto3).

Mapping, and why:

- **one stream per bus topic**, named ``stream_prefix + topic`` (dotted names are valid
  stream names). Kinesis has no routing: a reader gets every record of the streams it
  reads. With one stream per topic a bridge reads only what its import patterns want,
  a foreign producer's records need nothing but the stream they are in to be imported
  (the topic is the stream's name), and shards (the unit of throughput and of order)
  are sized per topic. The alternative, one stream for many topics with the topic only
  inside each envelope, would make every importer read and drop everything, and would
  leave foreign records without a topic. Import patterns are matched by the bridge
  against the listed stream names (``ListStreams``, again every ``discover_interval``).
- **egress**: ``PutRecords`` within Kinesis's limits (500 records and 5 MiB a call,
  1 MiB a record), one crossing per batch; calls of one stream in order, streams
  concurrently. The partition key is the envelope's key, else its id, so a key's
  records share a shard and its order. A record over 1 MiB is :class:`Rejected` (dead
  letter); a record the response reports failed (throttled, internal failure) is
  returned as a transient error and retried alone by the bus. A missing stream is
  created (``create_streams=True``, ``shard_count`` shards), else its records are
  rejected. Caveat (Kinesis's own, for ``PutRecords``): a record retried after a
  throttle lands after later records of its key.
- **ingress** (:mod:`._ingress`): every shard of every wanted stream, parents before
  children after a reshard; the position of each shard is a **checkpoint** of the last
  sequence number below which everything is done, in a :class:`CheckpointStore`
  (SQLite file by default) keyed by ``group`` + stream + shard; a restarted bridge
  resumes after it. Nothing done is read again except what followed the last saved
  checkpoint (at-least-once).
- **consumer groups from shard leases** (:mod:`._leases`): Kinesis has no broker-side
  groups (the KCL builds them from DynamoDB leases); bridges of one ``group`` sharing a
  lease-capable store split the shards, each its fair share, taken over from a member
  that stops renewing after ``lease_ttl``.
- **CloudEvents structured mode** (:mod:`._wire`): records have no headers.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

import trio

from bus import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    Envelope,
)
from bus.abc import Bridge, Features, Port, Rejected, get_logger, mask_url

from .._common import call, not_open, require
from .._runtime import Runtime, RuntimeKind, open_runtime
from ._checkpointer import Checkpointer
from ._checkpoints import CheckpointStore, LeaseStore, SQLiteCheckpointStore
from ._client import KinesisClient, PutAnswer
from ._errors import TRANSIENT_RECORD_CODES, error_code, is_client_error, translate
from ._ingress import IngressRun
from ._wire import MAX_RECORD_BYTES, chunks, encode, partition_key, record_size

__all__ = ["FEATURES", "KinesisBridge"]

T = TypeVar("T")
log = get_logger("bus.bridges")

FEATURES = Features(
    ordered=True,
    persistent=True,
    consumer_groups=True,
    redelivery=True,
    headers=False,
    patterns=True,
    max_message_bytes=MAX_RECORD_BYTES,
    restartable=True,
    notes=(
        "One stream per topic; CloudEvents structured mode (the 1 MiB limit counts the "
        "JSON envelope and the partition key too). Kinesis has no consumer groups: the "
        "bridge makes them from shard leases in its checkpoint store (as the KCL does in "
        "DynamoDB), so the members of a group must share that store (the default SQLite "
        "file: bridges on one machine; a store of your own across machines) and have "
        "distinct names (the lease owner is host/name). Redelivery = resuming after the "
        "last checkpoint of done records. Tests run against kinesis-mock, which does not "
        "implement SubscribeToShard (enhanced fan-out: on a real account push reads at "
        "2 MB/s per shard per consumer, instead of GetRecords polling at 5 calls/s per "
        "shard shared by all readers). kinesis-mock keeps its data across a restart only "
        "with SHOULD_PERSIST_DATA (the harness sets it), and even then loses writes it "
        "acknowledged after its SIGTERM; a checkpoint no longer found in its shard is "
        "read again from TRIM_HORIZON."
    ),
)


class KinesisBridge(Bridge):
    """Mirror bus topics to and from Kinesis data streams (one stream per topic).

    Credentials and region default to the usual AWS environment (``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, else
    botocore's credential chain); ``endpoint_url`` (or ``KINESIS_ENDPOINT_URL``) points
    at an emulator. The secret never appears in reprs, logs or errors.

    ``group`` names the consumer in the checkpoint store (default: the bridge's name);
    ``checkpoints`` is a :class:`CheckpointStore` or the path of the SQLite file
    (default ``~/.local/state/trio-bus/kinesis-checkpoints.sqlite``).
    ``initial_position`` is where a shard without a checkpoint is read from:
    ``"TRIM_HORIZON"`` (the oldest record kept) or ``"LATEST"`` (what arrives once
    ingress started, read with ``AT_TIMESTAMP``, so a record put right after ``attach``
    returned is not missed). With
    ``leases`` (and a store that has them), bridges of one group share the shards;
    ``owner`` (default ``host/name``) identifies this member.
    """

    def __init__(
        self,
        *,
        name: str = "kinesis",
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        group: str | None = None,
        stream_prefix: str = "",
        shard_count: int = 1,
        create_streams: bool = True,
        initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON",
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        records_per_call: int = 1000,
        poll_interval: float = 0.2,
        discover_interval: float = 5.0,
        checkpoint_interval: float = 0.5,
        leases: bool = True,
        lease_ttl: float = 10.0,
        owner: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        runtime: RuntimeKind = "thread",
    ) -> None:
        require("aioboto3", "kinesis", "the Kinesis bridge")
        if shard_count < 1:
            raise ConfigurationError(f"shard_count must be at least 1, not {shard_count!r}")
        if not 1 <= records_per_call <= 10_000:
            raise ConfigurationError(
                f"records_per_call must be 1..10000 (GetRecords' limit), not {records_per_call!r}"
            )
        if initial_position not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigurationError(
                f"initial_position must be 'TRIM_HORIZON' or 'LATEST', not {initial_position!r}"
            )
        self.name = name
        self.features = FEATURES
        self.region: str = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        self.endpoint_url = endpoint_url or os.environ.get("KINESIS_ENDPOINT_URL") or None
        self.group = group or name
        self.stream_prefix = stream_prefix
        self.shard_count = shard_count
        self.create_streams = create_streams
        self.initial_position = initial_position
        self.records_per_call = records_per_call
        self.poll_interval = poll_interval
        self.discover_interval = discover_interval
        self._secret = secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY") or None
        store: CheckpointStore = (
            checkpoints if isinstance(checkpoints, CheckpointStore)
            else SQLiteCheckpointStore(checkpoints)
        )
        self.checkpoints = Checkpointer(store, self.group, checkpoint_interval)
        self.leasing = leases and isinstance(store, LeaseStore)
        self.lease_ttl = lease_ttl
        self.owner = owner or f"{socket.gethostname()}/{name}"
        self._runtime_kind = runtime
        self._client = KinesisClient(
            region=self.region,
            key_id=access_key_id or None,
            secret=secret_access_key or None,
            endpoint_url=self.endpoint_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        self._rt: Runtime | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.caught_up_callbacks: list[Callable[[], None]] = []

    @property
    def _shown_endpoint(self) -> str | None:
        return mask_url(self.endpoint_url) if self.endpoint_url else None

    def __repr__(self) -> str:
        return (
            f"KinesisBridge(name={self.name!r}, region={self.region!r}, "
            f"endpoint_url={self._shown_endpoint!r}, group={self.group!r}, "
            f"stream_prefix={self.stream_prefix!r})"
        )

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._stack is not None:
            raise ConfigurationError(f"bridge {self.name!r} is open already")
        stack = contextlib.AsyncExitStack()
        try:
            self._rt = await stack.enter_async_context(open_runtime(self._runtime_kind))
            stack.push_async_callback(self._close_client)
            try:
                await self._call(self._client.connect)
            except BackendError as exc:
                where = mask_url(self.endpoint_url or f"AWS {self.region}")
                raise BackendUnavailableError(
                    f"Kinesis bridge {self.name!r} cannot reach {where}: {exc}"
                ) from exc.__cause__
        except BaseException:
            with trio.CancelScope(shield=True):
                await stack.aclose()
            self._rt = None
            raise
        self._stack = stack

    async def _close_client(self) -> None:
        try:
            await self.checkpoints.close()
        except Exception as exc:  # the next run reads those records again
            log.error("kinesis.checkpoint_failed", bridge=self.name, error=str(exc))
        with contextlib.suppress(BackendError):
            await self._call(self._client.close)

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._rt = None

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run *fn* on the asyncio loop; translate the client's exceptions."""
        rt = self._rt
        return await call(
            None if rt is None else rt.run, fn, *args, is_client_error=is_client_error,
            translate=self._translate, closed=partial(not_open, self.name),
        )

    def _translate(self, exc: BaseException) -> BaseException:
        return translate(exc, self.name, (self._secret,))

    def stream_of(self, topic: str) -> str:
        return self.stream_prefix + topic

    def topic_of(self, stream: str) -> str | None:
        """The bus topic of *stream*, None if the stream is not under this prefix."""
        if not stream.startswith(self.stream_prefix) or stream == self.stream_prefix:
            return None
        return stream[len(self.stream_prefix):]

    # -- egress -----------------------------------------------------------------------

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None] | None:
        results: list[BaseException | None] = [None] * len(batch)
        per_stream: dict[str, list[tuple[int, bytes, str]]] = {}
        for i, env in enumerate(batch):
            data = encode(env, port.encode(env))
            key = partition_key(env)
            size = record_size(data, key)
            if size > MAX_RECORD_BYTES:
                results[i] = Rejected(
                    f"record of {size} bytes (CloudEvent with its data, and partition key) "
                    f"exceeds Kinesis's limit of {MAX_RECORD_BYTES} bytes"
                )
                continue
            per_stream.setdefault(self.stream_of(env.topic), []).append((i, data, key))
        if not per_stream:
            return results
        calls = {
            stream: [
                [(data, key) for _, data, key in recs[r.start:r.stop]]
                for r in chunks([record_size(d, k) for _, d, k in recs])
            ]
            for stream, recs in per_stream.items()
        }
        shards = self.shard_count if self.create_streams else None
        answers = await self._call(self._client.put, calls, shards)
        failures: list[BaseException] = []
        for stream, recs in per_stream.items():
            for (i, _, _), answer in zip(recs, answers[stream], strict=True):
                results[i] = self._result(stream, answer)
                if isinstance(answer, BaseException):
                    failures.append(answer)
        sent = sum(len(r) for r in per_stream.values())
        if failures and len(failures) == sent and not any(
            isinstance(r, Rejected) for r in results
        ):
            # nothing got through (the endpoint is down...): retry the batch as a whole
            raise translate(failures[0], self.name, (self._secret,)) from failures[0]
        return None if all(r is None for r in results) else results

    def _result(self, stream: str, answer: PutAnswer) -> BaseException | None:
        if answer is None:
            return None
        if isinstance(answer, tuple):
            code, message = answer
            if code in TRANSIENT_RECORD_CODES:
                return BackendUnavailableError(f"Kinesis bridge {self.name!r}: {code}: {message}")
            return Rejected(f"Kinesis refused the record: {code}: {message}")
        err = translate(answer, self.name, (self._secret,))
        failed = error_code(answer)
        if failed == "ResourceNotFoundException":
            return Rejected(f"stream {stream!r} does not exist (create_streams=False): {err}")
        if failed in ("ValidationException", "InvalidArgumentException"):
            return Rejected(f"Kinesis refused the call: {err}")
        return err

    # -- ingress ----------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        await IngressRun(self, port, self._call, self._client).run(task_status)

    def on_caught_up(self, callback: Callable[[], None]) -> None:
        """Have *callback* called (in the ingress task, once per ingress run) when
        ingress has delivered every record of the wanted streams up to their present end:
        each shard it reads answered ``GetRecords`` empty with ``MillisBehindLatest``
        0. Call before ``attach``. For a reader that ends there (the facade's ``pull``)."""
        self.caught_up_callbacks.append(callback)


    # -- admin ------------------------------------------------------------------------

    async def create_topic(self, name: str, **options: Any) -> None:
        """Create the stream of topic *name* (``shard_count=`` shards, default the
        bridge's) and wait until it is ACTIVE; an existing stream is left as it is."""
        shards = int(options.pop("shard_count", self.shard_count))
        if options:
            raise ConfigurationError(f"unknown Kinesis topic option(s): {sorted(options)}")
        await self._call(self._client.create_stream, self.stream_of(name), shards)

    async def delete_topic(self, name: str) -> None:
        """Delete the stream of topic *name* (and its records); a missing one is fine."""
        await self._call(self._client.delete_stream, self.stream_of(name))

    async def list_topics(self) -> list[str]:
        """The topics of the streams under this bridge's prefix, sorted."""
        streams = await self._call(self._client.list_streams)
        return sorted(t for s in streams if (t := self.topic_of(s)) is not None)

    async def health(self) -> bool:
        """True if ``ListStreams`` answers within 5 seconds."""
        if self._rt is None:
            return False
        with trio.move_on_after(5):
            try:
                await self._call(self._client.probe)
            except BackendError:
                return False
            return True
        return False

    # -- for tests and tools ----------------------------------------------------------

    async def split_shard(self, topic: str, shard: str) -> None:
        """Split *shard* of *topic*'s stream in two (resharding); waits until ACTIVE."""
        await self._call(self._client.split_shard, self.stream_of(topic), shard)

    async def shards(self, topic: str) -> list[dict[str, Any]]:
        """``ListShards`` of *topic*'s stream, as botocore returns them."""
        return await self._call(self._client.list_shards, self.stream_of(topic))

    async def put_raw(self, topic: str, records: Sequence[tuple[bytes, str]]) -> None:
        """Write ``(data, partition key)`` records as they are (a foreign producer)."""
        await self._call(self._client.put_raw, self.stream_of(topic), list(records))


