"""KafkaBridge's settings: the seed's names mapped to aiokafka's, checked up front."""

from __future__ import annotations

import ssl

import pytest

from bridges.kafka import ConfluentKafkaBridge, KafkaBridge
from bus import ConfigurationError


def test_seed_options_map_to_the_client() -> None:
    ctx = ssl.create_default_context()
    bridge = KafkaBridge(
        ["b1:9093", "b2:9093"], name="k", acks="all", batch_size=32768, linger_ms=5,
        compression_type="gzip", client_id="shop", security_protocol="SASL_SSL",
        ssl_context=ctx, sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="svc",
        sasl_plain_password="s3cret", producer_options={"request_timeout_ms": 5000},
        consumer_options={"session_timeout_ms": 6000},
    )
    p = bridge._producer_options
    assert p["bootstrap_servers"] == "b1:9093,b2:9093"
    assert (p["acks"], p["enable_idempotence"], p["max_batch_size"], p["linger_ms"]) == (
        "all", True, 32768, 5
    )
    assert (p["compression_type"], p["client_id"]) == ("gzip", "shop")
    assert p["request_timeout_ms"] == 5000
    for opts in (p, bridge._consumer_options):
        assert opts["security_protocol"] == "SASL_SSL" and opts["ssl_context"] is ctx
        assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("svc", "s3cret")
    c = bridge._consumer_options
    assert (c["group_id"], c["enable_auto_commit"], c["session_timeout_ms"]) == (
        "trio-bus.k", False, 6000
    )
    assert "s3cret" not in repr(bridge) and "svc" not in repr(bridge)
    assert KafkaBridge(acks=1, enable_idempotence=False)._producer_options["acks"] == 1


BOTH = pytest.mark.parametrize("cls", [KafkaBridge, ConfluentKafkaBridge])


@BOTH
def test_idempotence_needs_acks_all(cls: type) -> None:
    with pytest.raises(ConfigurationError, match="enable_idempotence=False"):
        cls(acks=1)
    cls(acks=1, enable_idempotence=False)
    with pytest.raises(ConfigurationError, match="acks"):
        cls(acks="some")


@BOTH
def test_intervals_must_be_positive(cls: type) -> None:
    with pytest.raises(ConfigurationError, match=r"^commit_interval must be > 0 seconds$"):
        cls(commit_interval=0)
    with pytest.raises(ConfigurationError, match=r"^poll_interval must be > 0 seconds$"):
        cls(poll_interval=-1)


@BOTH
def test_a_list_of_servers_is_joined(cls: type) -> None:
    assert cls(["a:1", "b:2"]).bootstrap_servers == "a:1,b:2"
    assert cls("a:1").bootstrap_servers == "a:1"


def test_runtime_sets_both_directions() -> None:
    default = KafkaBridge()
    assert (default._egress_kind, default._ingress_kind) == ("thread", "trio-asyncio")
    both = KafkaBridge(runtime="thread")
    assert (both._egress_kind, both._ingress_kind) == ("thread", "thread")


def test_consumers_refresh_their_metadata_every_5_s_unless_told_otherwise() -> None:
    # so a wildcard import finds a topic created later within seconds, not 5 minutes
    assert KafkaBridge()._consumer_options["metadata_max_age_ms"] == 5_000
    assert KafkaBridge(consumer_options={"metadata_max_age_ms": 60_000}
                       )._consumer_options["metadata_max_age_ms"] == 60_000
    key = "topic.metadata.refresh.interval.ms"
    assert ConfluentKafkaBridge()._consumer_config[key] == 5_000
    assert ConfluentKafkaBridge(consumer_config={key: 1_000})._consumer_config[key] == 1_000
