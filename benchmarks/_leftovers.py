"""What a bench run leaves on the brokers: the ``bench*`` resources it did not delete.

Every case deletes the topic, subscription, stream or queue of its round when the round
ends; a round killed past its bound (``_bound``) cannot. :func:`bench_resources` lists the
resources named ``bench...`` on each broker before and after a run, and :func:`new_since`
keeps what appeared meanwhile, so the report says what this run left behind (a run on
shared brokers may see another's, named alike: the report lists names, a reader judges).
Kafka topics are deleted at the end of the run (``_brokers.kafka_cleanup``), so Kafka's
list is taken after that deletion was asked for. RabbitMQ cannot list its queues without
the management plugin, which the harness does not enable: it is reported unchecked.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["bench_resources", "failures", "new_since"]

PREFIX = "bench"
TIMEOUT = 10.0

Listing = dict[str, list[str] | str]
"""Per broker: the names found, or why they could not be listed."""


def bench_resources(brokers: Sequence[str]) -> Listing:
    """The ``bench*`` resources on each of *brokers* now (best effort, never raises)."""
    out: Listing = {}
    for broker in brokers:
        lister = _LISTERS.get(broker)
        if lister is None:
            out[broker] = "unchecked: no way to list its resources here"
            continue
        try:
            out[broker] = sorted(n for n in lister() if n.startswith(PREFIX))
        except Exception as exc:
            out[broker] = f"unchecked: {type(exc).__name__}: {exc}"[:300]
    return out


def new_since(before: Listing, after: Listing) -> Listing:
    """What *after* has that *before* had not, per broker (an unchecked side stays so)."""
    out: Listing = {}
    for broker, now in after.items():
        then = before.get(broker, [])
        if isinstance(now, str) or isinstance(then, str):
            out[broker] = now if isinstance(now, str) else str(then)
        else:
            out[broker] = sorted(set(now) - set(then))
    return out


def failures(left: Listing) -> list[str]:
    """One line per broker where the run left resources behind."""
    return [
        f"left behind on {broker}: {len(names)} ({', '.join(names[:5])}"
        f"{', ...' if len(names) > 5 else ''})"
        for broker, names in left.items()
        if isinstance(names, list) and names
    ]


def _kafka() -> list[str]:
    from confluent_kafka.admin import AdminClient

    from ._brokers import KAFKA

    admin = AdminClient({"bootstrap.servers": KAFKA})
    topics = admin.list_topics(timeout=TIMEOUT).topics
    return [name for name, meta in topics.items() if meta.error is None]


def _pubsub() -> list[str]:
    host = os.environ.get("PUBSUB_EMULATOR_HOST") or "127.0.0.1:8085"
    project = os.environ.get("GCP_PROJECT_ID") or "trio-bus-test"
    names: list[str] = []
    for kind in ("topics", "subscriptions"):
        token = ""
        while True:
            url = f"http://{host}/v1/projects/{project}/{kind}?pageSize=1000"
            body = _get(url + (f"&pageToken={token}" if token else ""))
            names += [item["name"].rsplit("/", 1)[1] for item in body.get(kind, [])]
            token = body.get("nextPageToken", "")
            if not token:
                break
    return names


def _kinesis() -> list[str]:
    endpoint = os.environ.get("KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568")
    region = os.environ.get("AWS_REGION", "us-east-1")
    names: list[str] = []
    request: dict[str, Any] = {}
    while True:
        req = urllib.request.Request(
            endpoint + "/", data=json.dumps(request).encode(), method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "Kinesis_20131202.ListStreams",
                # kinesis-mock reads the region from the credential scope, not the signature
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/"
                f"{region}/kinesis/aws4_request, SignedHeaders=host, Signature=0",
                "X-Amz-Date": "20240101T000000Z",
            },
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            body = json.loads(resp.read())
        names += body.get("StreamNames", [])
        if not body.get("HasMoreStreams") or not names:
            return names
        request = {"ExclusiveStartStreamName": names[-1]}


def _redis() -> list[str]:
    import redis

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT)
    try:
        return [k.decode() for k in client.scan_iter(match=f"{PREFIX}*", count=1000)]
    finally:
        client.close()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


_LISTERS = {"kafka": _kafka, "pubsub": _pubsub, "kinesis": _kinesis, "redis": _redis}
