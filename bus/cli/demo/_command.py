"""``bus demo``: the shop of ``shop`` run on the memory bus, as a live trace.

This module is the command line around :func:`bus.cli.demo.shop.simulate`: its options,
the rendering of trace lines (coloured only when stdout is a terminal and ``NO_COLOR``
is unset) and of the closing summary. ``bus.cli`` imports it only for ``bus demo``
and calls :func:`add_arguments` and :func:`run`; ``--bridge URL`` mirrors the shop's
topics to a broker (``bridges.from_url``). It does not run actors itself.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import TextIO
from urllib.parse import urlsplit

import trio

from bus import BusError, ConfigurationError, TopicError
from bus.abc import validate_topic

from .messages import money
from .report import BridgeLine, Summary, TraceLine
from .shop import simulate

__all__ = ["add_arguments", "run"]

MAX_ORDERS = 10_000
EXIT_USAGE = 2
EXIT_UNSETTLED = 1

_TONES = {"ok": "32", "warn": "33", "fail": "31"}  # green, yellow, red
_TOPIC_WIDTH = 18
_KEY_WIDTH = 6


def _orders(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_ORDERS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_ORDERS}, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _prefix(text: str) -> str:
    try:
        return validate_topic(text)
    except TopicError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bus demo``."""
    parser.description = (
        "A small modular monolith on the memory bus: orders, inventory and payments as "
        "actors, a saga with a compensation, a request/reply and a poison message that "
        "ends in the dead-letter topic. Prints a live trace, then a summary."
    )
    parser.add_argument(
        "--orders", type=_orders, default=20, metavar="N", help="orders to place (default 20)"
    )
    parser.add_argument(
        "--failure-rate", type=_rate, default=0.2, metavar="F",
        help="probability that a payment is declined (default 0.2)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=1, metavar="S",
        help="random seed: the same seed gives the same orders and outcomes (default 1)",
    )
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    parser.add_argument(
        "--bridge", metavar="URL", default=None,
        help="mirror the shop's topics to the broker at URL (memory:// or the URL of any "
        "registered broker, as `bus tail --help` lists them)",
    )
    parser.add_argument(
        "--prefix", type=_prefix, default=None, metavar="P",
        help="put the shop's topics under P (P.order.placed, P.bus.dead_letter...), so "
        "several demos can share a broker (default: no prefix)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every order was confirmed or cancelled."""
    bridge, url = None, ""
    if args.bridge is not None:
        from bridges import from_url

        url = _without_credentials(args.bridge)
        try:
            bridge = from_url(args.bridge, name="demo")
        except ConfigurationError as exc:
            print(f"bus demo: error: --bridge: {exc}", file=sys.stderr)
            return EXIT_USAGE
    out = _Printer(sys.stdout)
    emit = (lambda line: None) if args.quiet else out.trace
    try:
        summary = trio.run(
            simulate, args.orders, args.failure_rate, args.seed, emit, bridge, url,
            args.prefix or "",
        )
    except BusError as exc:
        print(f"bus demo: error: {exc}", file=sys.stderr)
        return EXIT_UNSETTLED
    out.summary(summary)
    unsettled = summary.orders - summary.confirmed - summary.cancelled
    if unsettled:
        print(f"bus demo: error: {unsettled} orders never settled", file=sys.stderr)
        return EXIT_UNSETTLED
    return 0


def _without_credentials(url: str) -> str:
    """*url* as the summary shows it: no user or password."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{netloc}{parts.path}{query}"
    except ValueError:
        return url.split("://", 1)[0] + "://"


class _Printer:
    """Writes lines to *stream*; colour only on a terminal; quiet after a broken pipe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.color = stream.isatty() and not os.environ.get("NO_COLOR")
        self.broken = False

    def paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def write(self, text: str = "") -> None:
        if self.broken:
            return
        try:
            print(text, file=self.stream, flush=True)
        except BrokenPipeError:  # `bus demo | head`: stop writing, still exit cleanly
            self.broken = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())

    def trace(self, line: TraceLine) -> None:
        tone = _TONES.get(line.tone, "")
        self.write(
            f"{self.paint('2', f'{line.at:8.3f}s')}  "
            f"{self.paint('36', line.topic.ljust(_TOPIC_WIDTH))} "
            f"{self.paint('1', line.key.ljust(_KEY_WIDTH))}  "
            f"{self.paint(tone, line.text)}"
        )

    def summary(self, s: Summary) -> None:
        w, paint = self.write, self.paint
        w()
        w(paint("1", "summary") + f"  seed {s.seed}, {s.orders} orders, "
          f"payment failure rate {s.failure_rate:g}, {s.elapsed:.3f} s")
        w(f"  orders        {paint('32', f'{s.confirmed} confirmed')}, "
          f"{paint('31', f'{s.cancelled} cancelled')} ({s.declined} payment declined, "
          f"stock released; {s.dead_lettered} dead-lettered)")
        w(f"  revenue       {money(s.revenue_cents)}")
        stock = ", ".join(
            f"{sku} {before}→{s.stock_after[sku]}" for sku, before in s.stock_before.items()
        )
        w(f"  stock         {stock}; {s.released} released by compensation, {len(s.held)} shipped")
        w(f"  retries       {s.retries}")
        w(f"  dead letters  {len(s.dead_letters)}")
        for dead in s.dead_letters:
            w(f"    {dead.key}  {dead.original_topic} after {dead.attempts} attempts: {dead.error}")
        w()
        tw = max([20, *map(len, s.published)])  # a --prefix makes names longer
        w(f"  {'topic':<{tw}} {'published':>9}")
        for topic, count in s.published.items():
            w(f"  {topic:<{tw}} {count:>9}")
        w()
        w(f"  {'actor':<20} {'pattern':<16} {'group':<9} {'delivered':>9} {'failed':>6} "
          f"{'retried':>7} {'dead':>4}")
        for name, a in s.actors.items():
            w(f"  {name:<20} {a.pattern:<16} {a.group or '-':<9} {a.delivered:>9} {a.failed:>6} "
              f"{a.retried:>7} {a.dead_lettered:>4}")
        if s.bridge is not None:
            self.bridge(s.bridge)

    def bridge(self, b: BridgeLine) -> None:
        w, paint = self.write, self.paint
        handed = sum(b.exported.values())
        w()
        w(paint("1", "mirrored") + f"  to {b.url} (bridge {b.name!r}): {handed} messages "
          f"handed over, {paint('32', f'{b.confirmed} confirmed by the broker')}, "
          f"{paint('31' if b.refused else '', f'{b.refused} refused')}, "
          f"{b.retried} retries")
        tw = max([20, *map(len, b.exported)])
        w(f"  {'topic':<{tw}} {'exported':>9}")
        for topic, count in b.exported.items():
            w(f"  {topic:<{tw}} {count:>9}")
