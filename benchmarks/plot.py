"""Every measured ratio against its target, from any mix of suite reports, as one chart.

``goals(reports)`` reads the reports of ``bus bench local``, ``bus bench bridges`` and
``bus bench memory`` (the dicts their ``--json`` writes) and lists, per target, the value
measured, the target and the share of it reached; ``write_plot(reports, path)`` draws
them as bars (1.0 = target met; green met, red not) with ``matplotlib`` (the ``bench``
extra). ``python -m benchmarks.plot OUT.png REPORT.json...`` redraws a chart from saved
reports without measuring again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Goal", "goals", "write_plot"]

CAP = 2.0  # a share above this is drawn at the cap, so one wide margin does not squash the rest


class Goal(NamedTuple):
    suite: str
    name: str
    value: float
    op: str
    target: float

    @property
    def share(self) -> float:
        """How much of the target was reached: 1.0 exactly at it, above 1 beyond it."""
        if self.op == ">=":
            return self.value / self.target if self.target else float("inf")
        return self.target / self.value if self.value else float("inf")

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.op == ">=" else self.value <= self.target


def _suite(report: dict[str, Any]) -> str:
    if "suite" in report:
        return str(report["suite"])
    return "memory" if "unbounded_channel" in report else "?"


def goals(reports: list[dict[str, Any]]) -> list[Goal]:
    """Every target with a measured value, in report order."""
    out: list[Goal] = []
    for report in reports:
        suite = _suite(report)
        if suite == "memory":
            out.append(Goal(suite, "rss_deviation_under_10x_overload",
                            float(report["bus"]["max_deviation"]), "<=",
                            float(report["target"]["max_deviation"])))
            continue
        values = {**report.get("ratios", {}), **report.get("extra_ratios", {})}
        for name, target in report.get("targets", {}).items():
            value = values.get(name)
            if value is not None:
                out.append(Goal(suite, name, float(value), target["op"], float(target["value"])))
    return out


def write_plot(reports: list[dict[str, Any]], path: str) -> str:
    """Draw the chart at *path*; return a one-line message (also when it cannot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (f"no chart: matplotlib is not installed (pip install -e '.[bench]'), "
                f"{path} not written")
    found = goals(reports)
    if not found:
        return f"no chart: the reports have no measured target, {path} not written"
    labels = [f"{g.suite}: {g.name}" for g in found]
    shares = [min(g.share, CAP) for g in found]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(found) + 1.6))
    ax.barh(labels, shares, color=["tab:green" if g.met else "tab:red" for g in found])
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlim(0, CAP + 0.9)
    ax.set_xlabel(f"share of the target reached (1.0 = met; drawn at most {CAP:g})")
    for y, (goal, share) in enumerate(zip(found, shares, strict=True)):
        ax.text(share, y, f" {goal.value:.3g} ({goal.op} {goal.target:g})", va="center",
                fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    met = sum(g.met for g in found)
    dates = sorted({str(r.get("created", ""))[:10] for r in reports if r.get("created")})
    ax.set_title(f"trio-bus benchmarks: {met} of {len(found)} targets met"
                 + (f" ({', '.join(dates)})" if dates else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart of {len(found)} ratios against their targets written to {path}"


def _main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m benchmarks.plot OUT.png REPORT.json...", file=sys.stderr)
        return 2
    reports: list[dict[str, Any]] = []
    for name in argv[1:]:
        data = json.loads(Path(name).read_text(encoding="utf-8"))
        # a `bus bench all --json` report holds the suites' reports
        reports.extend(data["reports"] if "reports" in data else [data])
    print(write_plot(reports, argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
