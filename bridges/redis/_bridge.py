"""The Redis Streams bridge (redis-py's asyncio client): bus topics as Redis streams.

Mapping (the whole of it):

- one **stream per topic**, named like the topic; ``maxlen`` caps each stream
  (``XADD MAXLEN ~``; exact with ``approximate=False``), else streams grow until trimmed;
- **egress**: a batch is one pipeline of ``XADD`` (one round trip, one crossing to the
  asyncio loop); an entry counts as delivered once Redis answered its id (with the
  server's ``appendfsync always``, once it is on disk). Per record: an answer that
  cannot change on retry (``WRONGTYPE``: the key holds something else; a record over
  ``max_message_bytes``) is :class:`~bus.abc.Rejected` and dead-lettered by the bus; a
  server that is out of memory, loading or read-only fails that record transiently
  (retried by the bus); a lost connection fails the batch (retried whole);
- **ingress**: a consumer group per bridge, ``group`` (default: the bridge's name):
  bridges with the same group share the streams entry by entry (competing consumers),
  different groups each get everything; ``XREADGROUP`` reads, ``XACK`` once the bus
  reports an entry done, ``XAUTOCLAIM`` takes over a dead member's pending entries after
  ``claim_idle`` seconds (:mod:`._bridge_ingress`). Each bridge is one consumer of its
  group, named ``consumer`` (default: name, host, pid and a counter, so a restarted
  process is a new consumer and its predecessor's entries are claimed);
- **reconnects**: a lost connection ends ingress with a
  :class:`~bus.BackendUnavailableError`; the bus restarts it with backoff, and it reads
  its own unacknowledged entries first (at-least-once: the bus may see one twice);
- **CloudEvents** binary mode in the entry's fields (:mod:`._bridge_wire`).

Per-key order holds within one consumer (a stream is one ordered log); the members of a
group share a stream entry by entry, not by key, and an entry claimed from a dead member
arrives after later ones. Entries are persistent only as far as the server is: with an
append-only file (``appendonly yes``) they survive a restart, without one they do not.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import trio

from bus import BackendUnavailableError, ConfigurationError, Envelope
from bus.abc import Bridge, Features, Port, Rejected, mask_url

from .._close import close_step
from .._common import call, not_open, require
from .._runtime import Runtime, RuntimeKind, start_runtime
from . import _client
from ._bridge_ingress import Ingress
from ._bridge_wire import encode
from ._errors import is_client_error, translate

__all__ = ["FEATURES", "RedisBridge"]

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""Redis's default ``proto-max-bulk-len``: the largest string one field can hold."""
CLOSE_STEP_TIMEOUT = 2.0
"""Bound of each step of closing (final acks; connection close)."""
_TRANSIENT = ("OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
              "NOREPLICAS", "MISCONF")
"""Error answers to an XADD that may succeed later; any other answer is a rejection."""
_names = itertools.count(1)

FEATURES = Features(
    ordered=True,
    persistent=True,
    consumer_groups=True,
    redelivery=True,
    headers=True,
    patterns=True,
    max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
    restartable=True,
    notes=(
        "Order holds per stream with one consumer per group; group members share entries "
        "one by one, and an entry claimed from a dead member (XAUTOCLAIM after "
        "claim_idle) arrives after later ones. persistent requires the server's "
        "append-only file (appendonly yes; the test harness runs appendfsync always)."
    ),
)


class RedisBridge(Bridge):
    """Mirror bus topics to and from Redis streams.

    ``url`` is redis-py's (``redis://[user:password@]host:port/db``, ``rediss://`` for
    TLS; the password never appears in reprs, logs or errors). ``group`` names the
    consumer group ingress reads in (default: the bridge's name), ``consumer`` this
    bridge in it. ``initial_position`` is where a group new on a stream starts:
    ``"latest"`` (what is published from this bridge's start on) or ``"earliest"``.
    ``batch`` bounds the entries one read takes, ``block`` how long (seconds) a read
    waits for new ones, ``claim_idle`` how long an entry may stay pending with another
    member before this one takes it over, ``discover_interval`` how often import
    patterns are matched against the server's streams. ``runtime`` picks how redis-py
    runs (``"thread"``: an asyncio loop in a thread of ours; ``"trio-asyncio"``).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        name: str = "redis",
        group: str | None = None,
        consumer: str | None = None,
        initial_position: Literal["latest", "earliest"] = "latest",
        maxlen: int | None = None,
        approximate: bool = True,
        batch: int = 256,
        block: float = 0.5,
        claim_idle: float = 30.0,
        discover_interval: float = 1.0,
        connect_timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        runtime: RuntimeKind = "thread",
    ) -> None:
        require("redis", "redis", "the Redis bridge", "redis")
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            shown = mask_url(url) if isinstance(url, str) else repr(url)
            raise ConfigurationError(
                f"Redis bridge {name!r}: url must be redis://host:port/db (or rediss://, "
                f"unix://), got {shown!r}"
            )
        if initial_position not in ("latest", "earliest"):
            raise ConfigurationError(
                f"initial_position must be 'latest' or 'earliest', not {initial_position!r}"
            )
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int)
                                   or maxlen < 1):
            raise ConfigurationError(f"maxlen must be a positive int or None, not {maxlen!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(f"batch must be a positive int, not {batch!r}")
        for what, value in (("block", block), ("claim_idle", claim_idle),
                            ("discover_interval", discover_interval),
                            ("connect_timeout", connect_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{what} must be > 0 seconds, not {value!r}")
        self.name = name
        self.group = group or name
        self.consumer = consumer or f"{name}-{socket.gethostname()}-{os.getpid()}-{next(_names)}"
        self.features = dataclasses.replace(FEATURES, max_message_bytes=max_message_bytes)
        self._url = url
        self._secret = urlsplit(url).password
        self._maxlen = maxlen
        self._approximate = approximate
        self._max_bytes = max_message_bytes
        self._connect_timeout = float(connect_timeout)
        self._runtime_kind = runtime
        self._rt: Runtime | None = None
        self._client: Any = None
        self._ingress = Ingress(
            self._call, group=self.group, consumer=self.consumer,
            earliest=initial_position == "earliest", batch=batch, block=block,
            claim_idle=float(claim_idle), discover_interval=float(discover_interval),
        )

    def __repr__(self) -> str:
        return (
            f"RedisBridge(name={self.name!r}, url={mask_url(self._url)!r}, "
            f"group={self.group!r}, consumer={self.consumer!r})"
        )

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._rt is not None:
            raise ConfigurationError(f"bridge {self.name!r} is open already")
        rt = await start_runtime(self._runtime_kind)
        try:
            self._client = await rt.run(_client.open_client, self._url, self._connect_timeout)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await rt.aclose()
            if isinstance(exc, Exception) and is_client_error(exc):
                error = translate(exc, self._url, (self._secret,))
                raise type(error)(f"Redis bridge {self.name!r}: {error}") from exc
            raise
        self._rt = rt

    async def aclose(self) -> None:
        rt = self._rt
        if rt is None:
            return
        try:
            # Each step bounded: with the server down a reply never comes. What is not
            # acknowledged stays pending and is claimed by another member, or read again
            # by this consumer name.
            await close_step(self._final_acks(), bridge=self.name, step="final acks",
                             within=CLOSE_STEP_TIMEOUT, secrets=(self._secret,))
            await close_step(self._call(_client.close), bridge=self.name,
                             step="closing the connection", within=CLOSE_STEP_TIMEOUT,
                             secrets=(self._secret,))
        finally:
            self._rt = None
            self._client = None
            await rt.aclose()

    async def _final_acks(self) -> None:
        ingress = self._ingress
        await ingress.flush()
        if ingress.streams and not ingress.in_flight:
            # leave no consumer without entries behind (XINFO CONSUMERS stays readable)
            await self._call(_client.delete_consumer, sorted(ingress.streams), self.group,
                             self.consumer)

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a :mod:`._client` function on the asyncio loop; translate its errors."""
        rt = self._rt
        return await call(
            None if rt is None else rt.run, fn, self._client, *args,
            is_client_error=is_client_error, translate=self._translate,
            closed=partial(not_open, self.name),
        )

    def _translate(self, exc: BaseException) -> BaseException:
        return translate(exc, self._url, (self._secret,))

    # -- egress -----------------------------------------------------------------------

    async def export(
        self, batch: Sequence[Envelope[Any]], port: Port
    ) -> list[BaseException | None] | None:
        results: list[BaseException | None] = [None] * len(batch)
        records: list[tuple[str, dict[str, bytes]]] = []
        slots: list[int] = []
        limit = self._max_bytes
        for i, env in enumerate(batch):
            body = port.encode(env)
            if len(body) > limit:
                results[i] = Rejected(
                    f"message of {len(body)} bytes exceeds the Redis bridge's "
                    f"max_message_bytes ({limit} bytes)"
                )
                continue
            records.append((env.topic, encode(env, body)))
            slots.append(i)
        if records:
            answers = await self._call(
                _client.add_batch, records, self._maxlen, self._approximate
            )
            for i, answer in zip(slots, answers, strict=True):
                results[i] = self._result(answer)
        return None if all(r is None for r in results) else results

    def _result(self, answer: Any) -> BaseException | None:
        if not isinstance(answer, BaseException):
            return None
        if isinstance(answer, Exception) and is_client_error(answer):
            error = self._translate(answer)
            if str(answer).startswith(_TRANSIENT) or isinstance(error, BackendUnavailableError):
                return error  # transient: the bus retries this record
            return Rejected(f"Redis refused the entry: {error}")
        return answer

    # -- ingress ----------------------------------------------------------------------

    async def ingest(self, port: Port, task_status: trio.TaskStatus[None]) -> None:
        await self._ingress.run(port, task_status)

    @property
    def acked(self) -> int:
        """Entries this bridge acknowledged (``XACK`` answered)."""
        return self._ingress.acked

    async def lag(self) -> int | None:
        """Entries of the streams read here not yet delivered to the group."""
        streams = sorted(self._ingress.streams)
        if self._rt is None or not streams:
            return None
        try:
            with trio.move_on_after(CLOSE_STEP_TIMEOUT):
                return await self._call(_client.group_lag, streams, self.group)
        except Exception:
            return None
        return None

    async def backlog(
        self, topic: str, group: str, consumer: str, from_beginning: bool
    ) -> int | None:
        """Entries *group* has to read on stream *topic* now, *consumer*'s own pending
        ones included; a group not there yet has the whole stream ahead
        (*from_beginning*) or nothing. None if Redis cannot say (``lag`` unknown after
        entries were deleted)."""
        return await self._call(_client.backlog, topic, group, consumer, from_beginning)

    async def delete_group(self, group: str) -> None:
        """Remove consumer group *group* from every stream this bridge reads (a ``bus
        tail``'s private group, afterwards)."""
        for stream in sorted(self._ingress.streams):
            await self._call(_client.destroy_group, stream, group)

    # -- admin ------------------------------------------------------------------------

    async def create_topic(self, name: str, **options: Any) -> None:
        """Create the empty stream *name* (kept until deleted); idempotent. Takes no
        options: a stream needs none (``maxlen`` is the bridge's)."""
        if options:
            raise ConfigurationError(
                f"Redis bridge {self.name!r}: create_topic takes no options, got "
                f"{sorted(options)}"
            )
        await self._stream_or_none(name)
        await self._call(_client.create_stream, name)

    async def delete_topic(self, name: str) -> None:
        """Delete stream *name* (its entries and groups); a missing one is no error."""
        if await self._stream_or_none(name):
            await self._call(_client.delete_stream, name)

    async def list_topics(self) -> list[str]:
        """Every stream on the server (``SCAN ... TYPE stream``)."""
        return await self._call(_client.list_streams)

    async def _stream_or_none(self, name: str) -> bool:
        """True if *name* is a stream, False if it does not exist; a key of another type
        is refused rather than touched."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a Redis stream name must be a non-empty str, got {name!r}")
        kind = await self._call(_client.stream_type, name)
        if kind not in ("stream", "none"):
            raise ConfigurationError(
                f"Redis bridge {self.name!r}: key {name!r} holds a {kind}, not a stream; "
                f"pick another topic name or delete that key"
            )
        return kind == "stream"

    async def health(self) -> bool:
        if self._rt is None:
            return False
        try:
            with trio.move_on_after(CLOSE_STEP_TIMEOUT):
                return await self._call(_client.ping)
        except Exception:
            return False
        return False
