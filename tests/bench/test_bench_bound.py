"""`bus bench bridges` always finishes: a round past its bound is killed and its case
reported failed while the run goes on; `--only` runs a subset; ratios come from the rounds
that completed. No broker here: the cases are plain functions run through the suite's
own guard and round runner."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from benchmarks import _bound, _brokers, bridges
from benchmarks._harness import Case, CaseFailed, Progress, Sample, Size, run_rounds
from bus.cli import main


def _hang(n: int) -> Sample:
    threading.Event().wait()  # a client waiting on a server that answers nothing
    raise AssertionError("unreachable")


def _quick(n: int) -> Sample:
    _brokers.kafka_delete_topic(f"bench-topic-{os.getpid()}")
    return Sample(n, 0.5, {"pid": os.getpid()})


def test_a_round_runs_in_its_own_process_and_brings_back_its_result() -> None:
    sample, collected = _bound.run_bounded(_quick, 10, 60.0, collect=lambda: ["x"])
    assert sample.count == 10 and sample.extra["pid"] != os.getpid()
    assert collected == ["x"]


def test_a_hung_round_is_killed_at_its_bound() -> None:
    with pytest.raises(_bound.RoundTimeout, match=r"no result within 0\.5 s"):
        _bound.run_bounded(_hang, 10, 0.5)


def test_a_round_that_fails_raises_its_own_error_in_the_parent() -> None:
    def fails(n: int) -> Sample:
        raise CaseFailed(f"order broke at {n}")

    with pytest.raises(CaseFailed, match="order broke at 7"):
        _bound.run_bounded(fails, 7, 60.0)


def test_a_hung_case_fails_with_the_reason_and_the_next_case_still_runs() -> None:
    hung = bridges._guard(Case("pubsub_bridge_egress", "hangs", "msg/s", _hang), 0.5)
    after = bridges._guard(Case("redis_raw_egress", "works", "msg/s", _quick), 0.5)
    before = list(_brokers._to_delete)
    try:
        run_rounds([hung, after], Size(messages=100, rounds=2), Progress(1, enabled=False))
        assert hung.error is not None and hung.error.startswith("FAILED: timed out")
        assert "--case-timeout" in hung.error
        assert not hung.samples
        # warm-up and two rounds, each in its own process, each registering its topic
        assert after.error is None and len(after.samples) == 2
        assert len(_brokers._to_delete) == len(before) + 3
    finally:
        _brokers._to_delete[:] = before


def test_ratios_come_from_the_rounds_that_completed() -> None:
    ours = Case("redis_bridge_egress", "", "msg/s", _quick)
    theirs = Case("redis_raw_egress", "", "msg/s", _quick)
    ours.samples = [Sample(100, 1.0), Sample(120, 1.0)]
    theirs.samples = [Sample(200, 1.0), Sample(220, 1.0)]
    ours.error = "FAILED: timed out: no result within 300 s"  # in a later round
    results = {c.name: c.result() for c in (ours, theirs)}
    assert bridges.ratios(results)["redis_egress_vs_raw"] == round(110 / 210, 3)


def test_only_selects_brokers_and_case_names_in_the_suites_order() -> None:
    names = [c.name for c in bridges.cases(only=("redis", "kafka_raw_egress"))]
    assert names == [
        "kafka_raw_egress", "redis_raw_egress", "redis_bridge_egress",
        "redis_raw_ingress", "redis_bridge_ingress",
    ]
    assert [c.name for c in bridges.cases(only=("pubsub",))] == [
        "pubsub_raw_egress", "pubsub_bridge_egress", "pubsub_raw_ingress",
        "pubsub_bridge_ingress",
    ]


def test_only_with_an_unknown_name_is_one_clear_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "bridges", "--tiny", "--only", "kafak", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no broker or case named 'kafak'" in err and "brokers: kafka, kinesis" in err
    assert "Traceback" not in err


def test_the_latency_cases_follow_only() -> None:
    done: list[Any] = []
    size = Size(messages=1000, rounds=1)
    assert [c.name for c in bridges.latency_cases(done, size, ("redis",))] == []
    assert [c.name for c in bridges.latency_cases(done, size, ("rabbitmq",))] == [
        "rabbitmq_latency"
    ]
    assert len(bridges.latency_cases(done, size)) == 2
