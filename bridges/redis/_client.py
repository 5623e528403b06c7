"""The asyncio side of the Redis Streams adapter: redis-py calls, one coroutine per crossing.

Every function here runs on the adapter's asyncio loop (through ``Runtime.run``) and
raises redis-py's own exceptions; the trio side translates them
(:func:`bridges.redis._wire.translate`). Entries come back as
``(id, {field: value})`` pairs with bytes ids, fields and values.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Entry",
    "ack",
    "add",
    "autoclaim",
    "close",
    "create_group",
    "create_stream",
    "dead_letter",
    "delete_stream",
    "delivery_counts",
    "destroy_group",
    "group_position",
    "last_id",
    "list_streams",
    "open_client",
    "pending_count",
    "read",
    "read_group",
    "stream_type",
    "trim",
]

Entry = tuple[bytes, dict[bytes, bytes]]


async def open_client(url: str, connect_timeout: float) -> Any:
    """A client for *url*, after a PING proved the server answers and accepts us."""
    import redis.asyncio

    client = redis.asyncio.from_url(
        url, socket_connect_timeout=connect_timeout, health_check_interval=30
    )
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def close(client: Any) -> None:
    await client.aclose()


async def add(
    client: Any, stream: str, fields: dict[str, bytes], maxlen: int | None, approximate: bool
) -> bytes:
    entry_id: bytes = await client.xadd(stream, fields, maxlen=maxlen, approximate=approximate)
    return entry_id


async def trim(client: Any, stream: str, maxlen: int, approximate: bool) -> None:
    await client.xtrim(stream, maxlen=maxlen, approximate=approximate)


async def create_group(client: Any, stream: str, group: str, start: str) -> bool:
    """Create *group* on *stream* (and the stream), reading from *start*; False if the
    group existed already (it keeps its position)."""
    from redis.exceptions import ResponseError

    try:
        await client.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        raise
    return True


async def destroy_group(client: Any, stream: str, group: str) -> None:
    await client.xgroup_destroy(stream, group)


async def read_group(
    client: Any, stream: str, group: str, consumer: str, start: str, count: int,
    block_ms: int | None,
) -> list[Entry]:
    """XREADGROUP: new entries (``start=">"``) or this consumer's pending ones (``"0"``)."""
    answer = await client.xreadgroup(group, consumer, {stream: start}, count=count, block=block_ms)
    return _entries(answer)


async def read(
    client: Any, stream: str, after: str, count: int, block_ms: int | None
) -> list[Entry]:
    """XREAD: entries after *after*, no group."""
    return _entries(await client.xread({stream: after}, count=count, block=block_ms))


def _entries(answer: Any) -> list[Entry]:
    # RESP2: [[stream, [(id, fields), ...]]]; an entry deleted while pending has no fields.
    out: list[Entry] = []
    for _stream, entries in answer or ():
        out.extend((entry_id, fields or {}) for entry_id, fields in entries)
    return out


async def ack(client: Any, stream: str, group: str, ids: list[bytes]) -> None:
    await client.xack(stream, group, *ids)


async def delivery_counts(client: Any, stream: str, group: str, ids: list[bytes]) -> list[int]:
    """How many times Redis delivered each pending entry of *ids* (XPENDING), in order;
    0 for one that is no longer pending."""
    async with client.pipeline(transaction=False) as pipe:
        for entry_id in ids:
            pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        answers = await pipe.execute()
    return [int(rows[0]["times_delivered"]) if rows else 0 for rows in answers]


async def dead_letter(
    client: Any, stream: str, group: str, entry_id: bytes, dead_stream: str,
    fields: dict[bytes, bytes], maxlen: int | None, approximate: bool,
) -> None:
    """XADD the dead letter and XACK the entry, in one MULTI transaction."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(dead_stream, fields, maxlen=maxlen, approximate=approximate)
        pipe.xack(stream, group, entry_id)
        await pipe.execute()


async def autoclaim(
    client: Any, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
) -> list[Entry]:
    """XAUTOCLAIM every entry of *group* idle for *min_idle_ms* to *consumer*."""
    claimed: list[Entry] = []
    start: bytes | str = "0-0"
    while True:
        answer = await client.xautoclaim(
            stream, group, consumer, min_idle_ms, start_id=start, count=count
        )
        start = answer[0]
        claimed.extend((entry_id, fields or {}) for entry_id, fields in answer[1])
        if start in (b"0-0", "0-0"):
            return claimed


async def last_id(client: Any, stream: str) -> bytes | None:
    """The id of the stream's newest entry, None when it is empty or missing."""
    newest = await client.xrevrange(stream, count=1)
    return newest[0][0] if newest else None


async def group_position(client: Any, stream: str, group: str) -> bytes | None:
    """The group's last delivered id, None when the group (or the stream) is gone."""
    from redis.exceptions import ResponseError

    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:
        return None
    for info in groups:
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else name) == group:
            position: bytes = info["last-delivered-id"]
            return position
    return None


async def create_stream(client: Any, stream: str) -> bool:
    """Create an empty stream; False if the key exists already. A stream has no
    "create" command: a group made with MKSTREAM and removed again leaves it empty."""
    kind = await client.type(stream)
    if kind not in (b"none", "none"):
        return False
    marker = "trio-bus.create"
    await client.xgroup_create(stream, marker, id="$", mkstream=True)
    await client.xgroup_destroy(stream, marker)
    return True


async def stream_type(client: Any, key: str) -> str:
    kind = await client.type(key)
    return kind.decode() if isinstance(kind, bytes) else str(kind)


async def delete_stream(client: Any, stream: str) -> None:
    await client.delete(stream)


async def list_streams(client: Any) -> list[str]:
    return sorted(
        [k.decode() if isinstance(k, bytes) else k async for k in client.scan_iter(_type="stream")]
    )


async def pending_count(client: Any, stream: str, group: str) -> int:
    """How many entries of *group* are delivered and not acknowledged."""
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


# -- the bridge's calls (RedisBridge, _bridge_ingress) ---------------------------------


async def add_batch(
    client: Any, records: list[tuple[str, dict[str, bytes]]], maxlen: int | None,
    approximate: bool,
) -> list[Any]:
    """XADD every record in one pipeline (one round trip); per record its entry id or
    the error Redis answered (``WRONGTYPE``...). A lost connection raises."""
    async with client.pipeline(transaction=False) as pipe:
        for stream, fields in records:
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=approximate)
        answers: list[Any] = await pipe.execute(raise_on_error=False)
    return answers


async def read_groups(
    client: Any, group: str, consumer: str, streams: dict[str, str], count: int,
    block_ms: int | None,
) -> list[tuple[str, list[Entry]]]:
    """XREADGROUP over several streams at once: ``{stream: ">"}`` for new entries,
    ``"0"`` for this consumer's pending ones; per stream, its entries."""
    answer = await client.xreadgroup(group, consumer, streams, count=count, block=block_ms)
    out: list[tuple[str, list[Entry]]] = []
    for stream, entries in answer or ():
        name = stream.decode() if isinstance(stream, bytes) else stream
        out.append((name, [(entry_id, fields or {}) for entry_id, fields in entries]))
    return out


async def ack_streams(client: Any, group: str, acks: dict[str, list[bytes]]) -> None:
    """XACK the ids of each stream, every stream in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for stream, ids in acks.items():
            pipe.xack(stream, group, *ids)
        await pipe.execute()


async def server_time_ms(client: Any) -> int:
    """The server's clock in milliseconds (the clock its entry ids are made from)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def scan_streams(client: Any, match: str) -> list[str]:
    """The stream keys matching the glob *match*."""
    return [
        k.decode() if isinstance(k, bytes) else k
        async for k in client.scan_iter(match=match, _type="stream", count=1000)
    ]


async def group_lag(client: Any, streams: list[str], group: str) -> int | None:
    """Entries of *streams* not yet delivered to *group* (XINFO GROUPS ``lag``, Redis 7);
    None if the server does not say."""
    total = 0
    for stream in streams:
        for info in await client.xinfo_groups(stream):
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                lag = info.get("lag")
                if lag is None:
                    return None
                total += int(lag)
    return total


async def delete_consumer(client: Any, streams: list[str], group: str, consumer: str) -> None:
    """Remove *consumer* from *group* on each stream where it holds no pending entry."""
    from redis.exceptions import ResponseError

    for stream in streams:
        try:
            consumers = await client.xinfo_consumers(stream, group)
        except ResponseError:  # the group (or the stream) is gone: nothing to remove
            continue
        for info in consumers:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == consumer:
                if int(info["pending"]) == 0:
                    await client.xgroup_delconsumer(stream, group, consumer)
                break


async def ping(client: Any) -> bool:
    return bool(await client.ping())


async def backlog(
    client: Any, stream: str, group: str, consumer: str, from_beginning: bool
) -> int | None:
    """Entries *group* has to read on *stream* now: not yet delivered (``lag``) plus
    those pending with *consumer* (read again first). A group that does not exist yet
    has the whole stream ahead (*from_beginning*) or nothing. None if Redis cannot say
    (entries deleted or trimmed from the middle: ``lag`` is nil)."""
    from redis.exceptions import ResponseError

    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return 0
    for info in groups:
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else name) != group:
            continue
        lag = info.get("lag")
        if lag is None:
            return None
        summary = await client.xpending(stream, group)
        mine = {
            (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): int(c["pending"])
            for c in summary.get("consumers") or ()
        }
        return int(lag) + mine.get(consumer, 0)
    return int(await client.xlen(stream)) if from_beginning else 0

