"""Smoke test of the local benchmark suite and ``bus bench``: shape of the report only.

Runs every case once with a few hundred messages. It checks that the report has the
keys the docs and CI read, that each rate is positive and that keyed delivery kept
per-key order. It never asserts on speed: timing belongs in ``bus bench``, not tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bus.cli import main

RATIO_KEYS = {
    "bus_1to1_vs_trio_drain",
    "bus_1to1_vs_asyncio_queue",
    "bus_1to1_vs_pyee",
    "bus_1to1_vs_blinker",
    "bus_1to1_batch_vs_trio_drain",
    "fanout_1to4_deliveries_vs_1to1",
    "keyed_4workers_vs_1to1",
    "latency_p50_ms",
    "latency_p99_ms",
    "request_reply_per_s",
    "request_reply_p50_ms",
    "request_reply_p99_ms",
}
REQUIRED_CASES = {
    "trio_drain",
    "asyncio_queue",
    "pyee_sync",
    "blinker",
    "bus_1to1",
    "bus_1to1_batch",
    "bus_fanout_1to4",
    "bus_keyed_4workers",
    "bus_request_reply",
    "bus_latency",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "local.json"
    code = main(["bench", "local", "--tiny", "--no-progress", "--json", str(path)])
    assert code == 0
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_report_has_machine_info(report: dict[str, Any]) -> None:
    machine = report["machine"]
    assert machine["python"] and machine["cpu_count"]
    assert machine["versions"]["trio"] and machine["versions"]["msgspec"]


def test_every_required_case_ran_with_positive_rates(report: dict[str, Any]) -> None:
    cases = report["cases"]
    assert REQUIRED_CASES <= set(cases)
    for name in REQUIRED_CASES:
        case = cases[name]
        assert case["ok"], (name, case["error"])
        assert case["median"] > 0
        assert case["rounds"] and all(rate > 0 for rate in case["rounds"])


def test_ratios_targets_and_met(report: dict[str, Any]) -> None:
    ratios = report["ratios"]
    assert set(ratios) == RATIO_KEYS
    for key in RATIO_KEYS:
        assert ratios[key] is not None and ratios[key] > 0, key
    assert set(report["targets"]) <= set(ratios) | set(report["extra_ratios"])
    assert set(report["met"]) == set(report["targets"])
    for key in ("bus_1to1_vs_trio_drain", "keyed_4workers_vs_1to1", "latency_p99_ms"):
        assert isinstance(report["met"][key], bool)


def test_keyed_delivery_kept_order(report: dict[str, Any]) -> None:
    assert report["keyed_order_ok"] is True
    assert report["failures"] == []
    keyed = report["cases"]["bus_keyed_4workers"]["extra_rounds"][0]
    # order_ok is derived from these counts (and the case fails when either is not 0)
    assert (keyed["order_violations"], keyed["key_worker_switches"]) == (0, 0)
    assert keyed["order_ok"] is True


def test_latency_percentiles_are_ordered(report: dict[str, Any]) -> None:
    lat = report["cases"]["bus_latency"]["extra_rounds"][0]
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_bad_arguments_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nowhere"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_png_without_matplotlib_is_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import _report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    message = _report.write_png({"cases": {}, "ratios": {}, "machine": {}}, str(tmp_path / "x"))
    assert "matplotlib is not installed" in message
    assert not (tmp_path / "x").exists()


def test_memory_bench_reports_bounded_growth_and_no_loss() -> None:
    from benchmarks import memory

    report = memory.run(1.0, 0.5, lambda case, fraction: None)
    bus = report["bus"]
    assert report["lost"] == 0 and bus["dropped"] == 0
    assert bus["published"] == bus["handled"] > 0
    # growth is bounded by the mailbox: the publisher was held back to the handler's pace
    # (its capacity, 1024, is all that ever waited), while the same overload through an
    # unbounded channel piled up
    assert bus["queued_at_stop"] <= 1024
    # at the stop, what was published and not yet handled fits in the mailbox (+ the
    # message in the handler's hands and the publish waiting for room)
    handled_in_time = bus["handled_rate"] * report["seconds"]
    assert bus["published"] - handled_in_time <= 1024 + 2 + 1  # +1: handled_rate rounding
    assert bus["achieved_publish_rate"] < bus["attempted_rate"] / 2
    assert report["unbounded_channel"]["queued_at_stop"] > 1024
    assert bus["samples"] and all(rss > 0 for _, rss in bus["samples"])
    assert "RSS" in memory.table(report)


def test_bridges_bench_rejects_an_unknown_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "bridges", "--runtimes", "thread,greenlet"])
    assert exc.value.code == 2
    assert "unknown runtime greenlet" in capsys.readouterr().err


def test_scale_bench_reports_every_dimension_as_a_ratio(tmp_path: Path) -> None:
    from benchmarks import scale
    from benchmarks.plot import goals

    path = tmp_path / "scale.json"
    assert main(["bench", "scale", "--tiny", "--no-progress", "--json", str(path)]) == 0
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert report["suite"] == "scale" and report["versions"] == ["this"]
    assert set(report["ratios"]) == set(scale.RATIOS)
    values = report["results"]["this"]["values"]
    for name, ratio in report["ratios"].items():
        small, large = values[name]["small"], values[name]["large"]
        assert small > 0 and large > 0, name
        rounds = values[name]["rounds"]
        assert ratio == round(sorted(b / a for a, b in rounds)[len(rounds) // 2], 3), name
    assert report["measures"]["retained_bytes_per_message"] > 0
    assert set(report["measures"]["after_change_vs_memoised"]) == set(
        scale.cases.ROUTE_CHANGES
    )
    assert {g.name for g in goals([report])} == set(scale.TARGETS)
    assert all(isinstance(report["met"][name], bool) for name in scale.TARGETS)
