"""The harness's own small pieces, without a broker."""

from __future__ import annotations

from tests.conftest import load_harness


def test_a_kafka_cluster_id_never_starts_with_a_dash() -> None:
    # one in 64 did, and StorageTool then read `-t -abc…` as a missing argument
    harness = load_harness()
    ids = [harness.kafka_cluster_id() for _ in range(5_000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
