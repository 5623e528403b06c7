"""Kinesis (kinesis-mock from npm kinesis-local) through aioboto3: stream round trip."""

from __future__ import annotations

import asyncio

import aioboto3
import pytest

pytestmark = pytest.mark.brokers


async def _round_trip(brokers, stream: str) -> None:
    session = aioboto3.Session(
        aws_access_key_id=brokers.env("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=brokers.env("AWS_SECRET_ACCESS_KEY"),
        region_name=brokers.env("AWS_REGION"),
    )
    endpoint = brokers.env("KINESIS_ENDPOINT_URL")
    async with session.client("kinesis", endpoint_url=endpoint) as kinesis:
        await kinesis.create_stream(StreamName=stream, ShardCount=1)
        try:
            for _ in range(100):
                summary = await kinesis.describe_stream_summary(StreamName=stream)
                if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("stream never became ACTIVE")
            put = await kinesis.put_record(
                StreamName=stream, Data=b"\x00payload\xff", PartitionKey="order-42"
            )
            shards = (await kinesis.list_shards(StreamName=stream))["Shards"]
            assert [s["ShardId"] for s in shards] == [put["ShardId"]]
            iterator = (
                await kinesis.get_shard_iterator(
                    StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
            )["ShardIterator"]
            records = (await kinesis.get_records(ShardIterator=iterator, Limit=10))["Records"]
            assert len(records) == 1
            # Kinesis records have no headers: the partition key is the key, plus the data.
            assert records[0]["Data"] == b"\x00payload\xff"
            assert records[0]["PartitionKey"] == "order-42"
            assert records[0]["SequenceNumber"] == put["SequenceNumber"]
        finally:
            await kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        names = (await kinesis.list_streams())["StreamNames"]
        assert stream not in names or (
            (await kinesis.describe_stream_summary(StreamName=stream))["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            == "DELETING"
        )


def test_kinesis_round_trip(brokers, unique: str) -> None:
    brokers.require("kinesis")
    asyncio.run(_round_trip(brokers, unique))
