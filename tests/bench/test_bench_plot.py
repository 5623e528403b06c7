"""The benchmark chart's data: every measured ratio against its target (benchmarks.plot).

Reads the committed reports; asserts on how goals are derived, never on speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.plot import Goal, goals, write_plot

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text(encoding="utf-8"))
    return data


def test_every_target_with_a_value_becomes_a_goal_in_report_order() -> None:
    local, memory = load("local.json"), load("memory.json")
    found = goals([local, memory])
    measured = {**local["ratios"], **local["extra_ratios"]}
    expected = [n for n in local["targets"] if measured.get(n) is not None]
    assert [g.name for g in found if g.suite == "local"] == expected
    assert found[-1] == Goal(
        "memory", "rss_deviation_under_10x_overload", memory["bus"]["max_deviation"], "<=", 0.1
    )
    for goal in found:
        target = local["targets"].get(goal.name)
        if target is not None:
            assert (goal.op, goal.target) == (target["op"], target["value"])
            assert goal.met == local["met"][goal.name]


@pytest.mark.parametrize(
    ("goal", "share", "met"),
    [
        (Goal("s", "higher", 0.45, ">=", 0.9), 0.5, False),
        (Goal("s", "higher", 1.8, ">=", 0.9), 2.0, True),
        (Goal("s", "lower", 2.0, "<=", 1.0), 0.5, False),
        (Goal("s", "lower", 0.25, "<=", 1.0), 4.0, True),
    ],
)
def test_share_is_how_much_of_the_target_was_reached(goal: Goal, share: float, met: bool) -> None:
    assert goal.share == pytest.approx(share)
    assert goal.met is met


def test_the_chart_is_a_png_naming_how_many_ratios(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the bench extra
    path = tmp_path / "chart.png"
    reports = [load("local.json"), load("memory.json")]
    message = write_plot(reports, str(path))
    count = len(goals(reports))
    assert message == f"chart of {count} ratios against their targets written to {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_targets_no_chart_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    message = write_plot([{"suite": "local", "ratios": {}, "targets": {}}], str(path))
    assert not path.exists()
    assert message == f"no chart: the reports have no measured target, {path} not written"
