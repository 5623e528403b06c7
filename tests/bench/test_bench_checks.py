"""Checks of the benchmarks themselves: a case's own check fails when what it guards
breaks, reports hold what they measured, and docs/performance.md states the sizes run."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

import bus._actor
import bus._bus
import bus._group
from benchmarks import _bus_cases, _harness, _report, memory

ROOT = Path(__file__).resolve().parents[2]


def test_the_keyed_bench_fails_when_keys_move_between_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keyed case's order check is real: break key affinity and the case fails."""
    rand = random.Random(1)
    def scattered(data: bytes) -> int:
        return rand.randrange(1 << 32)

    monkeypatch.setattr(bus._group, "_crc32", scattered)  # key_slot
    monkeypatch.setattr(bus._actor, "_crc32", scattered)  # _offer_spread's inlined key_slot
    monkeypatch.setattr(bus._bus, "_crc32", scattered)  # publish's inlined key_slot
    with pytest.raises(_harness.CaseFailed, match=r"out of order|different workers"):
        _bus_cases.bus_keyed_4workers(20_000)


def test_the_keyed_bench_reports_what_it_checked() -> None:
    sample = _bus_cases.bus_keyed_4workers(4_000)
    assert sample.extra["order_ok"] is True
    assert (sample.extra["order_violations"], sample.extra["key_worker_switches"]) == (0, 0)
    assert sample.extra["workers_used"] == 4


def test_memory_summary_measures_deviation_after_the_warmup() -> None:
    mb = 2**20
    samples = [(0.0, 50 * mb), (1.0, 100 * mb), (2.0, 110 * mb), (3.0, 95 * mb)]
    summary: dict[str, Any] = memory._summary(samples, warmup=1.0)
    assert summary["rss_reference_mb"] == 100.0  # the first sample after the warm-up
    assert summary["max_deviation"] == 0.1  # 110 MB vs 100 MB; the 50 MB start is ignored
    assert (summary["rss_min_mb"], summary["rss_max_mb"]) == (95.0, 110.0)


def test_performance_doc_states_the_sizes_the_code_runs() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")

    def stated(flag: str) -> tuple[int, int]:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"bus bench local{flag}"))
        found = re.search(r"(\d+)k messages x (\d+) rounds", line)
        assert found, line
        return int(found[1]) * 1000, int(found[2])

    assert stated("  ") == (_harness.FULL.messages, _harness.FULL.rounds)
    assert stated(" --quick") == (_harness.QUICK.messages, _harness.QUICK.rounds)


def test_pyee_target_is_one_times() -> None:
    assert _report.TARGETS["bus_1to1_vs_pyee"] == (">=", 1.0)  # SPEC §6
