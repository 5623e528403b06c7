"""From case results to the report: ratios vs targets, the text table, the PNG chart.

The ratios are the contract with SPEC §6: each is a quotient of two medians measured in
the same run (``rates[a] / rates[b]``), except the latency entries, which are
milliseconds (publish→handler, and one request/reply round trip) and
``request_reply_per_s``. ``ratios`` holds a fixed set of keys (the
ones CI and the docs read); comparisons with optional peers (FastStream) go to
``extra_ratios``. ``targets`` says what each must reach; ``met`` says whether it did.
"""

from __future__ import annotations

import statistics
from typing import Any

from ._harness import human

# name: (numerator case, denominator case)
RATE_RATIOS: dict[str, tuple[str, str]] = {
    "bus_1to1_vs_trio_drain": ("bus_1to1", "trio_drain"),
    "bus_1to1_vs_asyncio_queue": ("bus_1to1", "asyncio_queue"),
    "bus_1to1_vs_pyee": ("bus_1to1", "pyee_sync"),
    "bus_1to1_vs_blinker": ("bus_1to1", "blinker"),
    "bus_1to1_batch_vs_trio_drain": ("bus_1to1_batch", "trio_drain"),
    "fanout_1to4_deliveries_vs_1to1": ("bus_fanout_1to4", "bus_1to1"),
    "keyed_4workers_vs_1to1": ("bus_keyed_4workers", "bus_1to1"),
}

# ratios against peers that may not be installed
EXTRA_RATIOS: dict[str, tuple[str, str]] = {
    "bus_1to1_vs_faststream_kafka": ("bus_1to1", "faststream_kafka"),
}

# name: (">=" or "<=", value)
TARGETS: dict[str, tuple[str, float]] = {
    "bus_1to1_vs_trio_drain": (">=", 0.6),
    "bus_1to1_vs_asyncio_queue": (">=", 0.5),
    "bus_1to1_vs_pyee": (">=", 1.0),  # SPEC §6: at least pyee's sync emit (was 2x)
    "bus_1to1_vs_faststream_kafka": (">=", 100.0),
    "fanout_1to4_deliveries_vs_1to1": (">=", 2.0),
    "keyed_4workers_vs_1to1": (">=", 0.5),
    "latency_p99_ms": ("<=", 1.0),
}


def _median(cases: dict[str, dict[str, Any]], name: str) -> float | None:
    case = cases.get(name)
    if not case or not case.get("ok"):
        return None
    value = case.get("median")
    return float(value) if value else None


def _median_extra(cases: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    case = cases.get(name)
    if not case or not case.get("ok") or not case.get("extra_rounds"):
        return None
    values = sorted(float(r[key]) for r in case["extra_rounds"])
    return values[len(values) // 2]


def _quotients(
    cases: dict[str, dict[str, Any]], pairs: dict[str, tuple[str, str]]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, (num, den) in pairs.items():
        a, b = _median(cases, num), _median(cases, den)
        out[name] = round(a / b, 3) if a is not None and b else None
    return out


def extra_ratios(cases: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Ratios against optional peers; ``None`` where the peer is not installed."""
    return _quotients(cases, EXTRA_RATIOS)


def ratios(cases: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The fixed set of ratios of the report; ``None`` where a case did not run."""
    out = _quotients(cases, RATE_RATIOS)
    out["latency_p50_ms"] = _round(_median_extra(cases, "bus_latency", "p50_ms"))
    out["latency_p99_ms"] = _round(_median_extra(cases, "bus_latency", "p99_ms"))
    rr = _median(cases, "bus_request_reply")
    out["request_reply_per_s"] = round(rr, 1) if rr is not None else None
    out["request_reply_p50_ms"] = _round(_median_extra(cases, "bus_request_reply", "p50_ms"))
    out["request_reply_p99_ms"] = _round(_median_extra(cases, "bus_request_reply", "p99_ms"))
    return out


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


Targets = dict[str, tuple[str, float]]


def targets_json(targets: Targets = TARGETS) -> dict[str, dict[str, Any]]:
    return {name: {"op": op, "value": value} for name, (op, value) in targets.items()}


def met(values: dict[str, float | None], targets: Targets = TARGETS) -> dict[str, bool | None]:
    """Per target: True/False, or None when its inputs were not measured (optional peer)."""
    out: dict[str, bool | None] = {}
    for name, (op, target) in targets.items():
        value = values.get(name)
        if value is None:
            out[name] = None
        else:
            out[name] = value >= target if op == ">=" else value <= target
    return out


def table(report: dict[str, Any], targets: Targets = TARGETS) -> str:
    """The human-readable summary printed at the end of ``bus bench local``."""
    cases: dict[str, dict[str, Any]] = report["cases"]
    w = max([22, *(len(name) for name in cases)])
    lines = [f"{'case':<{w}} {'median':>10}  {'unit':<16} {'±IQR/2':<8} what"]
    lines.append("-" * (w + 74))
    for name, case in cases.items():
        if case["ok"]:
            spread = _spread(case["rounds"])
            lines.append(
                f"{name:<{w}} {human(case['median']):>10}  {case['unit']:<16} "
                f"{spread:<8} {case['what']}"
            )
        else:
            lines.append(f"{name:<{w}} {'-':>10}  {case['unit']:<16} {'':<8} {case['error']}")
    lines += ["", f"{'ratio':<32} {'value':>10}  {'target':<8} met", "-" * 58]
    for name, value in _all_ratios(report).items():
        target = targets.get(name)
        shown = "-" if value is None else f"{value:.3f}" if value < 1e5 else human(value)
        tgt = f"{target[0]} {target[1]:g}" if target else ""
        ok = report["met"].get(name)
        mark = "" if target is None else "n/a" if ok is None else "yes" if ok else "NO"
        lines.append(f"{name:<32} {shown:>10}  {tgt:<8} {mark}")
    return "\n".join(lines)


def _all_ratios(report: dict[str, Any]) -> dict[str, float | None]:
    return {**report["ratios"], **report.get("extra_ratios", {})}


def _spread(rounds: list[float]) -> str:
    """Half the interquartile range of the rounds, as ±percent of their median."""
    if len(rounds) < 2:
        return ""
    q1, mid, q3 = statistics.quantiles(rounds, n=4, method="inclusive")
    return f"±{(q3 - q1) / 2 / mid * 100:.0f}%" if mid else ""


def write_png(report: dict[str, Any], path: str) -> str:
    """Draw the chart; return a one-line message. Needs matplotlib (not a dependency)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"no chart: matplotlib is not installed (pip install matplotlib), {path} not written"
    cases = {k: v for k, v in report["cases"].items() if v["ok"] and k != "bus_latency"}
    names = list(cases)
    rates = [cases[n]["median"] for n in names]
    colors = ["tab:blue" if n.startswith("bus_") else "tab:gray" for n in names]
    goals = _goal_fractions(report)
    fig, (ax, gx) = plt.subplots(
        2,
        1,
        figsize=(9, 0.4 * (len(names) + len(goals)) + 2.5),
        gridspec_kw={"height_ratios": [max(1, len(names)), max(1, len(goals))]},
    )
    ax.barh(names, rates, color=colors)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median rate per second (log scale); blue = trio-bus, grey = baselines")
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {human(rate)}", va="center", fontsize=8)
    info = report["machine"]
    ax.set_title(
        f"trio-bus local benchmark — Python {info.get('python')}, {info.get('cpu_count')} CPUs",
        fontsize=10,
    )
    labels = [g[0] for g in goals]
    fractions = [g[1] for g in goals]
    gx.barh(labels, fractions, color=["tab:green" if f >= 1 else "tab:red" for f in fractions])
    gx.invert_yaxis()
    gx.axvline(1.0, color="black", linewidth=1)
    gx.set_xlim(0, 2.6)
    gx.set_xlabel("share of the SPEC §6 target reached (1.0 = met; capped at 2)")
    for y, (_label, fraction, text) in enumerate(goals):
        gx.text(fraction, y, f" {text}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart written to {path}"


def _goal_fractions(report: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(ratio name, value as a share of its target, label) for every measured target."""
    out = []
    for name, (op, target) in TARGETS.items():
        value = _all_ratios(report).get(name)
        if value is None:
            continue
        fraction = value / target if op == ">=" else target / value if value else 0.0
        shown = min(fraction, 2.0)  # keep one huge margin from squashing the rest
        out.append((name, shown, f"{value:.3g} ({op} {target:g})"))
    return out


def markdown(report: dict[str, Any], targets: Targets = TARGETS) -> str:
    """The results and ratio tables as Markdown, for ``docs/performance.md``."""
    lines = [
        "| case | median | best | unit | rounds (±IQR/2) | what |",
        "|---|---:|---:|---|---|---|",
    ]
    for name, case in report["cases"].items():
        if case["ok"]:
            spread = _spread(case["rounds"])
            rounds = f"{len(case['rounds'])} ({spread})" if spread else str(len(case["rounds"]))
            best = human(case["best"]) if case.get("best") else "-"
            lines.append(
                f"| `{name}` | {human(case['median'])} | {best} | {case['unit']} | "
                f"{rounds} | {case['what']} |"
            )
        else:
            lines.append(f"| `{name}` | - | - | {case['unit']} | - | {case['error']} |")
    lines += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
    for name, value in _all_ratios(report).items():
        target = targets.get(name)
        shown = "-" if value is None else f"{value:,.3f}" if value < 1e4 else f"{value:,.0f}"
        tgt = f"{target[0]} {target[1]:g}" if target else ""
        ok = report["met"].get(name)
        mark = "" if target is None else "n/a" if ok is None else "**yes**" if ok else "**no**"
        lines.append(f"| `{name}` | {shown} | {tgt} | {mark} |")
    return "\n".join(lines)
