"""The bridge suite: Kafka and RabbitMQ through our bridges, the raw clients and FastStream.

``run(size)`` measures, against the real brokers on loopback, in one run with rounds
interleaved (round 1 of every case, then round 2, ...):

- per broker and direction, the bridge, the raw asyncio client doing the same work in
  plain asyncio (aiokafka, aio-pika), and FastStream's real ``KafkaBroker`` /
  ``RabbitBroker`` (see ``_kafka_cases``, ``_rabbitmq_cases``, ``_kafka_bridge_cases``);
- confluent-kafka (librdkafka) producing and consuming the same messages, as a
  reference with no target for the aiokafka bridge, and as the raw client of the Kafka
  bridge's confluent-kafka client (``kafka_fast_*``: ``ConfluentKafkaBridge``);
- after those rounds, latency of local publish → broker → local handler through each
  bridge, paced at a tenth of that bridge's measured rate (``_bridge_latency.pace``:
  both buses, both bridges and the broker share the machine).

The report has the local suite's shape: machine facts, per-case rates, ``ratios`` (the
twelve SPEC §6 keys plus the latency percentiles), ``extra_ratios`` (against
confluent-kafka), ``reference`` (confluent's rates), ``targets`` and ``met``. Every
topic, exchange and queue it creates is deleted before it returns; ``left_behind`` lists
the ``bench*`` resources the run left on each broker (``_leftovers``).

A run always finishes: each round of a case runs in its own process under
:data:`CASE_BOUND` (``_bound``); a round past it is killed, its case reported failed with
the reason (in ``failures``, exit status 1), and the run goes on; ratios use the rounds
that completed. ``only`` runs a subset: brokers or case names (:func:`select`).
``bus bench bridges`` (``bus/_cli.py``) is its command-line face.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from . import _bridge_latency, _leftovers
from . import _brokers as brokers
from . import _kafka_bridge_cases as kb
from . import _kafka_cases as k
from . import _pubsub_cases as ps
from . import _rabbitmq_cases as r
from . import _redis_cases as rd
from . import bridges_kinesis as kin
from ._bound import RoundTimeout, preload, run_bounded
from ._brokers import kafka_cleanup
from ._harness import Case, CaseFailed, Progress, Sample, Size, machine_info, run_rounds
from ._report import Targets, _median_extra, _quotients, met, targets_json
from ._report import markdown as _markdown
from ._report import table as _table

__all__ = [
    "CASE_BOUND", "FULL", "QUICK", "TINY", "Size", "UnknownCase", "markdown", "run", "select",
    "table",
]

FULL = Size(messages=100_000, rounds=5)
QUICK = Size(messages=20_000, rounds=3)
TINY = Size(messages=400, rounds=1)

RABBITMQ_SCALE = 0.1
"""RabbitMQ with confirms moves ~10x fewer messages/s than Kafka here: fewer per round."""
LATENCY_SCALE = 0.05

CASE_BOUND = 300.0
"""Seconds one round of one case may take (``--case-timeout``); past it the round's
process is killed, the case is reported failed with the reason and the run goes on. The
slowest healthy round of a full run (Kinesis egress) takes about a minute here."""

PRELOAD = (
    "aiokafka", "aio_pika", "confluent_kafka", "faststream", "aioboto3", "redis.asyncio",
    "google.cloud.pubsub_v1", "trio_asyncio", "bridges.kafka", "bridges.rabbitmq",
    "bridges.kinesis", "bridges.pubsub", "bridges.redis", "confluent_kafka.admin", "grpc._channel",
)
"""Imported once before the rounds, so a round's forked process does not pay for them."""

RATE_RATIOS: dict[str, tuple[str, str]] = {
    "kafka_egress_vs_raw": ("kafka_bridge_egress", "kafka_raw_egress"),
    "kafka_ingress_vs_raw": ("kafka_bridge_ingress", "kafka_raw_ingress"),
    "kafka_confluent_egress_vs_raw": ("kafka_fast_egress", "kafka_confluent_produce"),
    "kafka_confluent_ingress_vs_raw": ("kafka_fast_ingress", "kafka_confluent_consume"),
    "rabbitmq_egress_vs_raw": ("rabbitmq_bridge_egress", "rabbitmq_raw_egress"),
    "rabbitmq_ingress_vs_raw": ("rabbitmq_bridge_ingress", "rabbitmq_raw_ingress"),
    "kafka_egress_vs_faststream": ("kafka_bridge_egress", "kafka_faststream_egress"),
    "kafka_ingress_vs_faststream": ("kafka_bridge_ingress", "kafka_faststream_ingress"),
    "rabbitmq_egress_vs_faststream": ("rabbitmq_bridge_egress", "rabbitmq_faststream_egress"),
    "rabbitmq_ingress_vs_faststream": (
        "rabbitmq_bridge_ingress", "rabbitmq_faststream_ingress",
    ),
    "kinesis_egress_vs_raw": ("kinesis_bridge_egress", "kinesis_raw_egress"),
    "kinesis_ingress_vs_raw": ("kinesis_bridge_ingress", "kinesis_raw_ingress"),
    **ps.RATIOS,
    **rd.RATIOS,
}

# the reference: no target, how far librdkafka is from everything in Python
EXTRA_RATIOS: dict[str, tuple[str, str]] = {
    "kafka_egress_vs_confluent": ("kafka_bridge_egress", "kafka_confluent_produce"),
    "kafka_ingress_vs_confluent": ("kafka_bridge_ingress", "kafka_confluent_consume"),
    "confluent_produce_vs_aiokafka": ("kafka_confluent_produce", "kafka_raw_egress"),
    "confluent_consume_vs_aiokafka": ("kafka_confluent_consume", "kafka_raw_ingress"),
}

TARGETS: Targets = {
    **{name: (">=", 0.9) for name in RATE_RATIOS if name.endswith("_vs_raw")},
    **{name: (">=", 1.0) for name in RATE_RATIOS if name.endswith("_vs_faststream")},
}

LATENCY_CASES = ("kafka_latency", "rabbitmq_latency")


def _guarded(fn: Callable[[int], Sample], bound: float | None) -> Callable[[int], Sample]:
    """A broker error fails this case (reported, exit status 1), not the whole run: the
    brokers are shared, and another user may restart one mid-run. With a *bound*, each
    round runs in its own process, killed past the bound (``_bound``)."""

    @functools.wraps(fn)
    def run(n: int) -> Sample:
        try:
            if bound is None:
                return fn(n)
            known = len(brokers._to_delete)  # the child's list starts as a copy of ours

            def new_topics() -> list[str]:
                return brokers._to_delete[known:]

            sample, topics = run_bounded(fn, n, bound, collect=new_topics)
            brokers._to_delete.extend(topics)
            return cast(Sample, sample)
        except (CaseFailed, ImportError):
            raise
        except RoundTimeout as exc:
            raise CaseFailed(f"timed out: {exc} (bound: --case-timeout)") from exc
        except Exception as exc:
            raise CaseFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc

    return run


def _guard(case: Case, bound: float | None) -> Case:
    case.run = _guarded(case.run, bound)
    return case


def cases(
    runtimes: Sequence[str] = (), only: Sequence[str] = (), bound: float | None = None
) -> list[Case]:
    """The throughput cases, Kafka then RabbitMQ; the order is also the table's order.

    Each kind in *runtimes* (``"thread"``, ``"trio-asyncio"``) adds the four bridge cases
    again with that asyncio runtime (``name[kind]``), for comparing runtimes; the plain
    names use each bridge's default. *only* keeps a subset (:func:`select`); *bound*: see
    :data:`CASE_BOUND` (``None``: rounds run in this process, unbounded).
    """
    out = select(_cases(), only)
    for kind in runtimes:
        for case in list(out):
            if "_bridge_" in case.name and "[" not in case.name:
                out.append(Case(
                    f"{case.name}[{kind}]", f"{case.what} ({kind} runtime)", case.unit,
                    functools.partial(cast(Any, case.run), runtime=kind), scale=case.scale,
                ))
    return [_guard(case, bound) for case in out]


class UnknownCase(ValueError):
    """``--only`` named neither a broker nor a case of the suite."""


def select(all_cases: list[Case], only: Sequence[str]) -> list[Case]:
    """The cases *only* names, in the suite's order: a broker (``kafka``, ``rabbitmq``,
    ``kinesis``, ``pubsub``, ``redis``: every case of it) or a case's full name. Empty:
    every case."""
    if not only:
        return all_cases
    brokers_ = {c.name.split("_")[0] for c in all_cases}
    names = {c.name for c in all_cases} | set(LATENCY_CASES)
    unknown = [w for w in only if w not in brokers_ and w not in names]
    if unknown:
        raise UnknownCase(
            f"--only: no broker or case named {', '.join(map(repr, unknown))}; brokers: "
            f"{', '.join(sorted(brokers_))}; cases: {', '.join(c.name for c in all_cases)}"
        )
    wanted = set(only)
    return [c for c in all_cases if c.name in wanted or c.name.split("_")[0] in wanted]


def runtime_ratios(results: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """``kafka_egress_vs_raw[kind]`` and so on, for the runtime cases in *results*."""
    out: dict[str, tuple[str, str]] = {}
    for name in results:
        if "[" in name and "_bridge_" in name:
            base, kind = name.rstrip("]").split("[", 1)
            broker, direction = base.split("_bridge_")
            out[f"{broker}_{direction}_vs_raw[{kind}]"] = (name, f"{broker}_raw_{direction}")
    return out


def _cases() -> list[Case]:
    rs = RABBITMQ_SCALE
    return [
        Case("kafka_raw_egress", "aiokafka send_batch, acks=all, idempotent", "msg/s",
             k.raw_egress),
        Case("kafka_bridge_egress", "bus.publish → KafkaBridge export, acks=all", "msg/s",
             kb.bridge_egress),
        Case("kafka_faststream_egress", "FastStream KafkaBroker.publish_batch, acks=all",
             "msg/s", k.faststream_egress),
        Case("kafka_confluent_produce", "confluent-kafka produce+flush, acks=all (ref.)",
             "msg/s", k.confluent_produce),
        Case("kafka_fast_egress", "bus.publish → ConfluentKafkaBridge export, acks=all",
             "msg/s", functools.partial(kb.bridge_egress, client="confluent")),
        Case("kafka_raw_ingress", "aiokafka getmany + decode, commit at end", "msg/s",
             k.raw_ingress),
        Case("kafka_bridge_ingress", "KafkaBridge import → bus handler, commits", "msg/s",
             kb.bridge_ingress),
        Case("kafka_faststream_ingress", "FastStream batch subscriber, AckPolicy.ACK",
             "msg/s", k.faststream_ingress),
        Case("kafka_confluent_consume", "confluent-kafka consume + decode (reference)",
             "msg/s", k.confluent_consume),
        Case("kafka_fast_ingress", "ConfluentKafkaBridge import → bus handler, commits",
             "msg/s", functools.partial(kb.bridge_ingress, client="confluent")),
        Case("rabbitmq_raw_egress", "aio-pika publish, confirms, persistent", "msg/s",
             r.raw_egress, scale=rs),
        Case("rabbitmq_bridge_egress", "bus.publish → RabbitMQBridge export, confirms",
             "msg/s", r.bridge_egress, scale=rs),
        Case("rabbitmq_faststream_egress", "FastStream RabbitBroker.publish, confirms",
             "msg/s", r.faststream_egress, scale=rs),
        Case("rabbitmq_raw_ingress", "aio-pika consume + decode, acks, prefetch", "msg/s",
             r.raw_ingress, scale=rs),
        Case("rabbitmq_bridge_ingress", "RabbitMQBridge import → bus handler, acks",
             "msg/s", r.bridge_ingress, scale=rs),
        Case("rabbitmq_faststream_ingress", "FastStream subscriber, AckPolicy.ACK", "msg/s",
             r.faststream_ingress, scale=rs),
        *kin.cases(),
        *ps.cases(),
        *rd.cases(),
    ]


LATENCY_SECONDS = 10.0
"""At most this long per latency round: a slow bridge gets fewer messages, not minutes."""


def latency_cases(
    done: list[Case], size: Size, only: Sequence[str] = (), bound: float | None = None
) -> list[Case]:
    """One paced latency case per broker, at ``_bridge_latency.pace`` of its bridge's rates
    measured in this run (*done*); only for the brokers (or case names) in *only*."""
    rates = {c.name: statistics.median(s.rate for s in c.samples) for c in done if c.samples}
    out = []
    for broker, fn, title in (
        ("kafka", kb.latency, "bus → KafkaBridge → Kafka → KafkaBridge → bus"),
        ("rabbitmq", r.latency, "bus → RabbitMQBridge → RabbitMQ → bridge → bus"),
    ):
        if only and broker not in only and f"{broker}_latency" not in only:
            continue
        rate = _bridge_latency.pace(
            rates.get(f"{broker}_bridge_egress"), rates.get(f"{broker}_bridge_ingress")
        )
        scale = min(LATENCY_SCALE, rate * LATENCY_SECONDS / size.messages)
        out.append(_guard(Case(
            f"{broker}_latency", f"{title}, paced at {rate:,.0f}/s", "msg/s paced",
            functools.partial(fn, rate=rate), scale=scale,
        ), bound))
    return out


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The rate ratios and the latency percentiles (ms), from the rounds that completed
    (a case that failed in a later round still has its earlier ones)."""
    results = completed(results)
    out = _quotients(results, RATE_RATIOS)
    for case in LATENCY_CASES:
        broker = case.split("_")[0]
        for key in ("p50_ms", "p99_ms"):
            value = _median_extra(results, case, key)
            out[f"{broker}_latency_{key}"] = round(value, 3) if value is not None else None
    return out


def completed(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """*results* where a case with completed rounds counts, even if a later round failed."""
    return {
        name: {**case, "ok": True} if case.get("rounds") else case
        for name, case in results.items()
    }


def reference(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """confluent-kafka's median rates on the same broker in the same run."""
    def median(name: str) -> float | None:
        case = results.get(name)
        return round(case["median"], 1) if case and case["ok"] else None

    return {
        "confluent_produce_per_s": median("kafka_confluent_produce"),
        "confluent_consume_per_s": median("kafka_confluent_consume"),
    }


def run(
    size: Size = FULL,
    *,
    progress: bool = True,
    runtimes: Sequence[str] = (),
    only: Sequence[str] = (),
    bound: float | None = CASE_BOUND,
) -> dict[str, Any]:
    """Run the suite and return the report (see the module docstring); *runtimes*,
    *only* (raises :class:`UnknownCase`) and *bound*: see :func:`cases`."""
    from .local import quiet_logs

    started = time.perf_counter()
    all_cases = cases(runtimes, only, bound)
    n_latency = len([c for c in LATENCY_CASES if not only or c.split("_")[0] in only
                     or c in only])
    bar = Progress((len(all_cases) + n_latency) * size.rounds, enabled=progress)
    if bound is not None:
        preload(PRELOAD)
    checked = sorted({c.name.split("_")[0] for c in all_cases} | {
        c.split("_")[0] for c in LATENCY_CASES if c in only
    })
    before = _leftovers.bench_resources(checked)
    deleted: list[str] = []
    try:
        with quiet_logs():
            run_rounds(all_cases, size, bar)
            latency = latency_cases(all_cases, size, only, bound)
            run_rounds(latency, size, bar)
            all_cases += latency
    finally:
        deleted = kafka_cleanup()
    left = _leftovers.new_since(before, _leftovers.bench_resources(checked))
    if isinstance(left.get("kafka"), list):  # asked to go; the broker drops them shortly
        left["kafka"] = [t for t in left["kafka"] if t not in deleted]
    results = {c.name: c.result() for c in all_cases}
    values = ratios(results)
    extras = _quotients(results, {**EXTRA_RATIOS, **runtime_ratios(results)})
    return {
        "suite": "bridges",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {
            "kafka_messages": size.messages,
            "rabbitmq_messages": max(10, int(size.messages * RABBITMQ_SCALE)),
            "latency_messages": {
                c.name: c.samples[0].count for c in all_cases if "latency" in c.name and c.samples
            },
            "rounds": size.rounds,
        },
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": _machine(),
        "cases": results,
        "ratios": values,
        "extra_ratios": extras,
        "reference": reference(results),
        "targets": targets_json(TARGETS),
        "met": met({**values, **extras}, TARGETS),
        "kafka_topics_deleted": deleted,
        "case_bound_s": bound,
        "left_behind": left,
        "failures": [
            f"{c.name}: {c.error}" for c in all_cases if c.error and c.error.startswith("FAILED")
        ] + _leftovers.failures(left),
    }


def _machine() -> dict[str, Any]:
    from ._harness import _version

    info = machine_info()
    for dist in ("aiokafka", "aio-pika", "confluent-kafka", "faststream"):
        info["versions"][dist] = _version(dist)
    return info


def table(report: dict[str, Any]) -> str:
    """Rates, ratios and targets as text, then each ratio's two rates."""
    lines = [_table(report, TARGETS), "", f"{'ratio':<32} {'ours':>10} {'theirs':>10}"]
    cases = report["cases"]
    for name, (ours, theirs) in _pairs(cases).items():
        a, b = cases.get(ours, {}).get("median"), cases.get(theirs, {}).get("median")
        lines.append(f"{name:<32} {_rate(a):>10} {_rate(b):>10}")
    return "\n".join(lines)


def _pairs(cases: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {**RATE_RATIOS, **EXTRA_RATIOS, **runtime_ratios(cases)}


def _rate(value: float | None) -> str:
    from ._harness import human

    return "-" if not value else human(value)


def markdown(report: dict[str, Any]) -> str:
    """The case table, then every ratio beside the two medians it divides, as Markdown."""
    full = _markdown(report, TARGETS)
    cases_table = full[: full.index("\n\n| ratio |")]
    cases = report["cases"]
    lines = [
        cases_table, "",
        "| ratio | value | ours | theirs | target | met |", "|---|---:|---:|---:|---|---|",
    ]
    values = {**report["ratios"], **report.get("extra_ratios", {})}
    for name, (ours, theirs) in _pairs(cases).items():
        value = values.get(name)
        target = TARGETS.get(name)
        ok = report["met"].get(name)
        mark = "" if target is None else "n/a" if ok is None else "**yes**" if ok else "**no**"
        lines.append(
            f"| `{name}` | {'-' if value is None else f'{value:.3f}'} | "
            f"{_rate(cases.get(ours, {}).get('median'))} | "
            f"{_rate(cases.get(theirs, {}).get('median'))} | "
            f"{f'{target[0]} {target[1]:g}' if target else ''} | {mark} |"
        )
    for name, value in report["ratios"].items():
        if "latency" in name:
            lines.append(f"| `{name}` | {'-' if value is None else f'{value:.1f}'} | | | | |")
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    """``python -m benchmarks.bridges REPORT.json``: the report's tables as Markdown."""
    import json
    import sys

    if len(argv) != 1:
        print("usage: python -m benchmarks.bridges REPORT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print(markdown(json.load(f)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
