"""The asyncio side of the Kinesis bridge: aioboto3 calls, one coroutine per crossing.

Every ``async def`` method of :class:`KinesisClient` runs on the runtime's asyncio loop
(the bridge calls it through ``Runtime.run``) and returns plain Python values (no
botocore objects cross over). botocore's "standard" retry mode retries throttling,
5xx answers and broken connections a few times with backoff inside one call; what
outlasts that is raised as the client's exception and translated by the caller
(:func:`~bridges.kinesis._errors.translate`).

- :meth:`put`: one ``PutRecords`` per prepared call, the calls of one stream one after
  the other (so records of one key keep their order), different streams concurrently;
  a missing stream is created first when the bridge is told to;
- :meth:`get_records`: one ``GetRecords`` of one shard, records as tuples;
- admin: streams (create and wait until ACTIVE, list, delete), shards, iterators.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any

__all__ = ["KinesisClient", "PutAnswer", "Record"]

Record = tuple[str, bytes, str, float]
"""A consumed record: (sequence number, data, partition key, arrival time in seconds)."""
PutAnswer = None | tuple[str, str] | BaseException
"""Per record of :meth:`KinesisClient.put`: ``None`` (written), ``(error code,
message)`` from the response, or the exception that failed its whole call (or an
earlier call of its stream, after which the rest of that stream was not sent)."""

ACTIVE_TIMEOUT = 60.0


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "") or None
    return None


class KinesisClient:
    """One aioboto3 Kinesis client (an aiohttp connection pool)."""

    def __init__(
        self,
        *,
        region: str,
        key_id: str | None,
        secret: str | None,
        endpoint_url: str | None,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
    ) -> None:
        self._settings = (region, key_id, secret, endpoint_url)
        self._timeouts = (connect_timeout, read_timeout, max_attempts)
        self._cm: Any = None
        self._client: Any = None

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        """Make the client and check that the endpoint answers (``ListStreams``)."""
        import aioboto3
        from aiobotocore.config import AioConfig

        region, key_id, secret, endpoint_url = self._settings
        connect_timeout, read_timeout, attempts = self._timeouts
        session = aioboto3.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
        )
        config = AioConfig(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            max_pool_connections=64,
        )
        cm = session.client("kinesis", endpoint_url=endpoint_url, config=config)
        client = await cm.__aenter__()
        self._cm, self._client = cm, client
        await client.list_streams(Limit=1)

    async def close(self) -> None:
        cm, self._cm, self._client = self._cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    @property
    def _c(self) -> Any:
        assert self._client is not None, "Kinesis client used before connect()"
        return self._client

    async def probe(self) -> None:
        await self._c.list_streams(Limit=1)

    # -- egress -----------------------------------------------------------------------

    async def put(
        self,
        calls: dict[str, list[list[tuple[bytes, str]]]],
        create_shards: int | None,
    ) -> dict[str, list[PutAnswer]]:
        """``{stream: [call: [(data, partition key)...]...]}`` -> per stream, one answer
        per record in order. *create_shards*: create a missing stream with that many
        shards and send again (``None``: a missing stream fails its records)."""
        streams = list(calls)
        answers = await asyncio.gather(
            *(self._put_stream(s, calls[s], create_shards) for s in streams)
        )
        return dict(zip(streams, answers, strict=True))

    async def _put_stream(
        self, stream: str, calls: list[list[tuple[bytes, str]]], create_shards: int | None
    ) -> list[PutAnswer]:
        out: list[PutAnswer] = []
        client = self._c
        for i, call in enumerate(calls):
            entries = [{"Data": data, "PartitionKey": key} for data, key in call]
            try:
                try:
                    resp = await client.put_records(StreamName=stream, Records=entries)
                except Exception as exc:
                    if create_shards is None or _code(exc) != "ResourceNotFoundException":
                        raise
                    await self.create_stream(stream, create_shards)
                    resp = await client.put_records(StreamName=stream, Records=entries)
            except Exception as exc:  # this call and the rest of the stream: not sent
                for rest in calls[i:]:
                    out.extend([exc] * len(rest))
                return out
            for rec in resp["Records"]:
                code = rec.get("ErrorCode")
                out.append((str(code), str(rec.get("ErrorMessage", ""))) if code else None)
        return out

    # -- ingress ----------------------------------------------------------------------

    async def list_shards(self, stream: str) -> list[dict[str, Any]]:
        """Every shard of *stream* (open and closed ones still within retention)."""
        client = self._c
        shards: list[dict[str, Any]] = []
        resp = await client.list_shards(StreamName=stream)
        while True:
            shards.extend(resp.get("Shards", []))
            token = resp.get("NextToken")
            if not token:
                return shards
            resp = await client.list_shards(NextToken=token)

    async def iterator(
        self, stream: str, shard: str, after: str | None, initial: str,
        since: float | None = None,
    ) -> str | None:
        """A shard iterator after sequence number *after*, else at *initial*; ``LATEST``
        with *since* (a Unix time) means the records that arrived from then on."""
        kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif initial == "LATEST" and since is not None:
            kwargs.update(
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=datetime.datetime.fromtimestamp(since, datetime.UTC),
            )
        else:
            kwargs["ShardIteratorType"] = initial
        resp = await self._c.get_shard_iterator(**kwargs)
        return resp.get("ShardIterator")  # type: ignore[no-any-return]

    async def get_records(
        self, iterator: str, limit: int
    ) -> tuple[list[Record], str | None, int]:
        """(records, next iterator or None at the end of a closed shard, ms behind)."""
        resp = await self._c.get_records(ShardIterator=iterator, Limit=limit)
        records = [
            (
                r["SequenceNumber"], r["Data"], r.get("PartitionKey", ""),
                r["ApproximateArrivalTimestamp"].timestamp()
                if r.get("ApproximateArrivalTimestamp") is not None else 0.0,
            )
            for r in resp.get("Records", ())
        ]
        return records, resp.get("NextShardIterator"), int(resp.get("MillisBehindLatest") or 0)

    # -- admin ------------------------------------------------------------------------

    async def list_streams(self) -> list[str]:
        client = self._c
        names: list[str] = []
        resp = await client.list_streams(Limit=1000)
        while True:
            batch = resp.get("StreamNames", [])
            names.extend(batch)
            token = resp.get("NextToken")
            if token:
                resp = await client.list_streams(NextToken=token)
            elif resp.get("HasMoreStreams") and batch:
                resp = await client.list_streams(Limit=1000, ExclusiveStartStreamName=batch[-1])
            else:
                return names

    async def stream_status(self, stream: str) -> str | None:
        """``CREATING``/``ACTIVE``/``UPDATING``/``DELETING``, None if there is none."""
        try:
            resp = await self._c.describe_stream_summary(StreamName=stream)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        return str(resp["StreamDescriptionSummary"]["StreamStatus"])

    async def create_stream(self, stream: str, shards: int) -> None:
        """Create *stream* unless it exists; return once it is ACTIVE."""
        try:
            await self._c.create_stream(StreamName=stream, ShardCount=shards)
        except Exception as exc:
            if _code(exc) != "ResourceInUseException":  # exists (or is being made)
                raise
        await self.wait_active(stream)

    async def wait_active(self, stream: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACTIVE_TIMEOUT
        delay = 0.02
        while (status := await self.stream_status(stream)) != "ACTIVE":
            if loop.time() > deadline:
                raise TimeoutError(f"stream {stream!r} not ACTIVE in {ACTIVE_TIMEOUT}s: {status}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def delete_stream(self, stream: str) -> bool:
        """Delete *stream* and its consumers; False if there was none."""
        try:
            await self._c.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    async def split_shard(self, stream: str, shard: str) -> None:
        """Split *shard* in two halves of its hash key range; wait until ACTIVE."""
        shards = {s["ShardId"]: s for s in await self.list_shards(stream)}
        rng = shards[shard]["HashKeyRange"]
        middle = (int(rng["StartingHashKey"]) + int(rng["EndingHashKey"])) // 2
        await self._c.split_shard(
            StreamName=stream, ShardToSplit=shard, NewStartingHashKey=str(middle)
        )
        await self.wait_active(stream)

    async def put_raw(self, stream: str, data: Sequence[tuple[bytes, str]]) -> None:
        """Write records as they are, as a foreign producer would (tools, tests)."""
        for chunk_start in range(0, len(data), 500):
            chunk = data[chunk_start:chunk_start + 500]
            await self._c.put_records(
                StreamName=stream,
                Records=[{"Data": d, "PartitionKey": k} for d, k in chunk],
            )
