"""Smoke test of ``bus bench bridges``: the report's shape, on the real brokers.

Runs every case once with a few hundred Kafka messages (tens for RabbitMQ) through
``bus bench bridges --tiny``. It checks the keys the docs read, that every case ran with
a positive rate, that latency percentiles are ordered, and that nothing the run created
is left on the brokers. It never asserts on speed: timing belongs in ``bus bench``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bus.cli import main

pytestmark = pytest.mark.brokers

RATIO_KEYS = {
    "kafka_egress_vs_raw",
    "kafka_ingress_vs_raw",
    "kafka_confluent_egress_vs_raw",
    "kafka_confluent_ingress_vs_raw",
    "rabbitmq_egress_vs_raw",
    "rabbitmq_ingress_vs_raw",
    "kafka_egress_vs_faststream",
    "kafka_ingress_vs_faststream",
    "rabbitmq_egress_vs_faststream",
    "rabbitmq_ingress_vs_faststream",
    "kinesis_egress_vs_raw",
    "kinesis_ingress_vs_raw",
    "pubsub_egress_vs_raw",
    "pubsub_ingress_vs_raw",
    "redis_egress_vs_raw",
    "redis_ingress_vs_raw",
    "kafka_latency_p50_ms",
    "kafka_latency_p99_ms",
    "rabbitmq_latency_p50_ms",
    "rabbitmq_latency_p99_ms",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "bridges.json"
    code = main(["bench", "bridges", "--tiny", "--no-progress", "--json", str(path)])
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert code == 0, data["failures"]
    return data


def test_every_case_ran_with_a_positive_rate(report: dict[str, Any]) -> None:
    from benchmarks import bridges

    expected = {case.name for case in bridges.cases()} | set(bridges.LATENCY_CASES)
    assert set(report["cases"]) == expected
    for name, case in report["cases"].items():
        assert case["ok"], (name, case["error"])
        assert case["median"] > 0 and all(rate > 0 for rate in case["rounds"]), name


def test_ratios_targets_and_met(report: dict[str, Any]) -> None:
    ratios = report["ratios"]
    assert set(ratios) == RATIO_KEYS
    for key in RATIO_KEYS:
        assert ratios[key] is not None and ratios[key] > 0, key
    assert set(report["targets"]) == RATIO_KEYS - {k for k in RATIO_KEYS if "latency" in k}
    assert set(report["met"]) == set(report["targets"])
    assert all(isinstance(ok, bool) for ok in report["met"].values())


def test_confluent_reference_and_machine_facts(report: dict[str, Any]) -> None:
    reference = report["reference"]
    assert reference["confluent_produce_per_s"] > 0
    assert reference["confluent_consume_per_s"] > 0
    assert set(report["extra_ratios"]) >= {"kafka_egress_vs_confluent"}
    versions = report["machine"]["versions"]
    assert versions["aiokafka"] and versions["aio-pika"] and versions["faststream"]
    assert versions["confluent-kafka"]


def test_latency_percentiles_are_ordered(report: dict[str, Any]) -> None:
    for case in ("kafka_latency", "rabbitmq_latency"):
        lat = report["cases"][case]["extra_rounds"][0]
        assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"], case


def test_no_kafka_topic_left_behind(report: dict[str, Any]) -> None:
    from confluent_kafka.admin import AdminClient

    from benchmarks._brokers import KAFKA

    created = set(report["kafka_topics_deleted"])
    assert created  # every Kafka case made its own topic
    admin = AdminClient({"bootstrap.servers": KAFKA})
    deadline = time.monotonic() + 15  # deletion reaches the metadata a moment later
    while True:
        left = created & set(admin.list_topics(timeout=10).topics)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left


def test_every_round_ran_bounded_and_left_nothing_behind(report: dict[str, Any]) -> None:
    from benchmarks import bridges

    assert report["case_bound_s"] == bridges.CASE_BOUND
    left = report["left_behind"]
    assert set(left) == {"kafka", "rabbitmq", "kinesis", "pubsub", "redis"}
    assert str(left.pop("rabbitmq")).startswith("unchecked")  # no listing without plugins
    assert left == {"kafka": [], "kinesis": [], "pubsub": [], "redis": []}
