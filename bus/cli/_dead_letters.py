"""``bus dead-letters list | count | replay URL [TOPIC]``: an operator's dead letters.

A dead letter (docs/service.md, "Dead letters") is a message of the bus's own on the
dead-letter topic (``bus.dead_letter`` unless the application chose another), carrying
why it failed: ``x-bus-error``, ``x-bus-error-type``, ``x-bus-original-topic``,
``x-bus-failed-subscriber``, ``x-bus-attempts``. Where the command reads them:

- **RabbitMQ**: a queue, read as it is (never declared nor bound): ``?queue=NAME`` in the
  URL, by default ``EXCHANGE.TOPIC`` (where ``bus bridge`` keeps them);
- **Kafka**: topic TOPIC. ``list`` shows every record the log keeps, read by a group of
  its own; ``count`` and ``replay`` work for a consumer group (``--group``, default
  ``bus-cli.dead-letters``) whose committed offsets say what was replayed already.

Kinesis and Pub/Sub are refused with the way to read them (``bus tail URL TOPIC
--from-beginning``): neither can say how many records a reader has yet to read.

- ``list`` reads without acknowledging anything (a RabbitMQ peek: what it read goes back
  to the queue when it ends; Kafka: a private group that commits nothing of use);
- ``count`` asks the broker: RabbitMQ's ready messages of the queue (those a consumer
  holds unacknowledged are not counted), Kafka's end offsets minus the group's committed
  ones (its beginning offsets where it committed none);
- ``replay`` publishes each dead letter's payload, key and headers (the ``x-bus-error*``
  and attempt headers taken off, ``x-bus-replayed`` set to the dead letter's id and
  ``x-bus-replays`` counting the replays) on its ``x-bus-original-topic``, waits for the
  broker to confirm that copy, and only then lets the dead letter be acknowledged
  (RabbitMQ) or committed (Kafka). A copy the broker refuses stops the replay: that dead
  letter stays where it was (exit 1). ``--dry-run`` says what it would replay and
  acknowledges nothing; a dead letter that a filter (``--original-topic``,
  ``--error-type``) or ``--limit`` leaves out is held, never acknowledged.

The reading runs on a local bus with the broker's bridge attached, as ``bus tail`` does;
payloads pass as raw bytes, so a replayed copy has exactly the bytes that failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from bus import Envelope, NotDeliveredError, open_bus
from bus.abc import RawCodec, get_logger, mask_url

from ._brokers import (
    AMQP_MAX_PREFETCH,
    EXIT_USAGE,
    LOCAL_DEAD_LETTERS,
    Failed,
    UsageError,
    _count,
    _plugin,
    _seconds,
)
from ._log import silence

__all__ = ["add_parser", "run"]

log = get_logger("bus.cli")

DEFAULT_TOPIC = "bus.dead_letter"
REPLAY_GROUP = "bus-cli.dead-letters"
H_REPLAYED = "x-bus-replayed"
H_REPLAYS = "x-bus-replays"
DEAD_LETTER_HEADERS = (
    "x-bus-error", "x-bus-error-type", "x-bus-original-topic", "x-bus-failed-subscriber",
    "x-bus-attempts", "x-bus-dead-letter-origin", "x-bus-origin",
)


def add_parser(commands: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``dead-letters`` (``list``, ``count``, ``replay``) to the ``bus`` subcommands."""
    parser = commands.add_parser(
        "dead-letters", parents=[parent], help="list, count or replay a broker's dead letters",
        description="List, count or replay the dead letters kept on a Kafka topic or a "
        "RabbitMQ queue (docs/cli.md).",
    )
    parser.add_argument("action", choices=("list", "count", "replay"))
    parser.add_argument(
        "url", metavar="URL",
        help="kafka://host:port, or amqp://user:password@host:port/vhost[?queue=NAME]",
    )
    parser.add_argument(
        "topic", metavar="TOPIC", nargs="?", default=DEFAULT_TOPIC,
        help=f"the dead-letter topic (default {DEFAULT_TOPIC}); RabbitMQ reads the queue "
        "?queue=NAME, by default EXCHANGE.TOPIC",
    )
    parser.add_argument("--limit", type=_count, metavar="N",
                        help="list or replay at most N dead letters")
    parser.add_argument("--dry-run", action="store_true",
                        help="replay: say what would be replayed, acknowledge nothing")
    parser.add_argument("--original-topic", metavar="T",
                        help="only dead letters whose original topic is T")
    parser.add_argument("--error-type", metavar="E",
                        help="only dead letters whose error type is E or ends with .E")
    parser.add_argument("--group", default=REPLAY_GROUP, metavar="G",
                        help=f"Kafka: the group whose commits mark what was replayed "
                        f"(default {REPLAY_GROUP})")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per line")
    parser.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                        help="give up connecting after S seconds (default 10)")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What ``list`` shows of one dead letter, read from its headers."""

    id: str
    key: str | None
    original_topic: str | None
    error: str | None
    error_type: str | None
    attempts: str | None
    failed_subscriber: str | None
    payload: bytes

    @classmethod
    def of(cls, env: Envelope[Any]) -> DeadLetter:
        h = env.headers
        return cls(
            env.id, env.key, h.get("x-bus-original-topic"), h.get("x-bus-error"),
            h.get("x-bus-error-type"), h.get("x-bus-attempts"),
            h.get("x-bus-failed-subscriber"), bytes(env.payload),
        )

    def shown_payload(self) -> Any:
        try:
            return json.loads(self.payload)
        except ValueError:
            return self.payload.decode("utf-8", "backslashreplace")

    def render(self, as_json: bool) -> str:
        fields = {
            "id": self.id, "original_topic": self.original_topic, "key": self.key,
            "attempts": self.attempts, "error_type": self.error_type, "error": self.error,
            "failed_subscriber": self.failed_subscriber, "payload": self.shown_payload(),
        }
        if as_json:
            return json.dumps(fields, ensure_ascii=False)
        payload = json.dumps(fields["payload"], ensure_ascii=False)
        return (
            f"{self.id}  {self.original_topic or '?'}  key={self.key or '-'}  "
            f"attempts={self.attempts or '?'}  {self.error_type or '?'}: {self.error or '?'}"
            f"  {payload}"
        )


def replay_headers(headers: dict[str, str], dead_letter_id: str) -> dict[str, str]:
    """The headers of a replayed copy: the dead letter's without the dead-letter and
    attempt headers (the copy starts afresh), plus the replay trace."""
    out = {k: v for k, v in headers.items() if k not in DEAD_LETTER_HEADERS}
    out[H_REPLAYED] = dead_letter_id
    previous = headers.get(H_REPLAYS, "0")
    out[H_REPLAYS] = str(int(previous) + 1 if previous.isdigit() else 1)
    return out


class _Filter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.topic, self.error_type = args.original_topic, args.error_type

    def __call__(self, dl: DeadLetter) -> bool:
        if self.topic is not None and dl.original_topic != self.topic:
            return False
        if self.error_type is not None:
            found = dl.error_type or ""
            return found == self.error_type or found.endswith("." + self.error_type)
        return True


# -- where the dead letters are --------------------------------------------------------


def _kind(url: str) -> str:
    plugin = _plugin(url)
    name = "memory" if plugin is None else plugin.name
    if name not in ("kafka", "rabbitmq"):
        raise UsageError(
            f"bus dead-letters reads Kafka and RabbitMQ; {name} cannot say how many records "
            f"a reader has yet to read: read its dead letters with `bus tail "
            f"{mask_url(url)} {DEFAULT_TOPIC} --from-beginning`"
        )
    return name


def _source_options(url: str, kind: str, topic: str, action: str, group: str,
                    fresh: str) -> dict[str, Any]:
    """Constructor options of the bridge that reads the dead letters."""
    from bridges import url_query

    if kind == "rabbitmq":
        query = url_query(url)
        options: dict[str, Any] = {"acknowledge": action == "replay"}
        if "queue" not in query:
            exchange = query.get("exchange") or "trio-bus"
            options.update(queue=f"{exchange}.{topic}", existing_queue=True)
        return options
    if action == "list":
        return {"group_id": fresh, "auto_offset_reset": "earliest"}
    return {"group_id": group, "auto_offset_reset": "earliest"}


async def _backlog(bridge: Any, kind: str, topic: str, action: str) -> tuple[int, str]:
    """How many dead letters the command has to read, and what that number means."""
    if kind == "rabbitmq":
        ready, consumers = await bridge.queue_counts()
        held = f"; {consumers} consumer(s) may hold more unacknowledged" if consumers else ""
        return ready, f"ready in queue {bridge.queue}{held}"
    kept, pending = await bridge.backlog(topic)
    if action == "list":
        return kept, f"kept on {topic}"
    return pending, (f"on {topic} not yet replayed by group {bridge.group_id} "
                     f"({kept} kept in the log)")


# -- the commands ----------------------------------------------------------------------


def run(args: argparse.Namespace, error: Callable[[str], None]) -> int:
    """Run ``bus dead-letters``; errors end as one line through *error*."""
    from ._brokers import run_trio

    if args.dry_run and args.action != "replay":
        error("--dry-run goes with replay only")
        return EXIT_USAGE
    return run_trio(_main, args, error)


async def _main(args: argparse.Namespace) -> int:
    import uuid

    from bridges import from_url

    kind = _kind(args.url)
    fresh = f"bus-dead-letters-{uuid.uuid4().hex[:12]}"
    options = _source_options(args.url, kind, args.topic, args.action, args.group, fresh)
    probe = from_url(args.url, name="bus-cli", **options)
    try:
        with trio.fail_after(args.timeout):
            await probe.open()
    except trio.TooSlowError:
        raise Failed(f"cannot reach {mask_url(args.url)} within {args.timeout:g} s") from None
    try:
        backlog, meaning = await _backlog(probe, kind, args.topic, args.action)
    finally:
        with trio.CancelScope(shield=True):
            await probe.aclose()
    if args.action == "count":
        print(f"{backlog} dead letter(s) {meaning}")
        return 0
    if backlog == 0:
        print(f"no dead letters {meaning}", file=sys.stderr)
        return 0
    if kind == "rabbitmq":  # read exactly what is there: the broker sends no more
        if backlog > AMQP_MAX_PREFETCH:
            # what is read and not acknowledged is held, and the broker holds back the
            # rest beyond the prefetch: one run reads at most that many
            print(f"bus dead-letters: {backlog} in the queue; this run reads the first "
                  f"{AMQP_MAX_PREFETCH} (AMQP's prefetch limit)", file=sys.stderr)
            backlog = AMQP_MAX_PREFETCH
        options["prefetch"] = backlog
    return await _read(args, kind, options, backlog, fresh)


async def _settle(bridge: Any, done: list[Any]) -> None:
    """Wait until the replayed dead letters are done, then, on Kafka, commit them now
    and wait for the answer (rather than the final commit's bound at close); RabbitMQ
    acknowledges them when its bridge closes."""
    for delivery in done:
        await delivery.wait()
    commit = getattr(bridge, "commit_done", None)
    if commit is not None and not await commit():
        print("bus dead-letters: Kafka refused the commit of the replayed dead letters: "
              "a later replay replays them again (at-least-once)", file=sys.stderr)


async def _read(args: argparse.Namespace, kind: str, options: dict[str, Any],
                backlog: int, fresh: str) -> int:
    from bridges import from_url

    from ._brokers import _cleanup

    wanted = _Filter(args)
    seen = shown = replayed = 0
    refused: list[str] = []
    egress: dict[str, Any] = {}
    done: list[Any] = []  # the replayed dead letters' deliveries
    finished = trio.Event()
    stopped_by = 0

    def hold(env: Envelope[Any]) -> None:
        if env.delivery is not None:
            env.delivery.hold()  # never released: never acknowledged nor committed

    async def replay(bus: Any, env: Envelope[Any], dl: DeadLetter) -> None:
        # *bus* is a second bus, with only the egress bridges: its publish waits for
        # the broker's confirmation and nothing else (no subscriber of the reading bus).
        nonlocal replayed
        target = dl.original_topic
        if target is None:
            print(f"bus dead-letters: {dl.id} has no x-bus-original-topic: left in place",
                  file=sys.stderr, flush=True)
            hold(env)
            return
        if target not in egress:
            bridge = from_url(args.url, name=f"bus-cli.replay.{len(egress)}")
            egress[target] = await bus.attach(bridge, export=[target],
                                              connect_timeout=args.timeout)
        try:
            await bus.publish(target, env.payload, key=env.key,
                              headers=replay_headers(env.headers, env.id), confirm=True)
        except NotDeliveredError as exc:
            refused.append(f"{dl.id} to {target}: {exc}")
            hold(env)
            finished.set()
            return
        replayed += 1
        if env.delivery is not None:
            done.append(env.delivery)
        print(f"replayed {dl.id} to {target}", flush=True)

    async def handle(out: Any, env: Envelope[Any]) -> None:
        nonlocal seen, shown
        if finished.is_set():
            hold(env)
            return
        seen += 1
        dl = DeadLetter.of(env)
        take = wanted(dl) and (args.limit is None or shown < args.limit)
        if take:
            shown += 1
            if args.action == "list":
                print(dl.render(args.json), flush=True)
            elif args.dry_run:
                print(f"would replay {dl.id} to {dl.original_topic or '?'}  "
                      f"({dl.error_type or '?'}: {dl.error or '?'})", flush=True)
            else:
                await replay(out, env, dl)
        if args.action != "replay" or args.dry_run or not take:
            hold(env)  # list and dry runs acknowledge nothing, nor does a left-out one
        if seen >= backlog or (args.limit is not None and shown >= args.limit):
            finished.set()

    async def on_signal(signals: Any) -> None:
        nonlocal stopped_by
        async for signum in signals:
            stopped_by = signum
            finished.set()

    bridge = from_url(args.url, name="bus-cli", **options)
    silence("message.dead_lettered")  # a refused copy is reported below
    try:
        with (
            trio.CancelScope() as scope,
            trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        ):
            async with (
                open_bus(name="bus-cli.replay", strict=False, drain_timeout=5,
                         dead_letter_topic=LOCAL_DEAD_LETTERS) as out,
                open_bus(name="bus-cli", strict=False, drain_timeout=5,
                         dead_letter_topic=LOCAL_DEAD_LETTERS) as bus,
            ):
                for each in (out, bus):
                    each.declare_pattern("#", RawCodec())  # payloads: the bytes they are

                async def each_dead_letter(env: Envelope[Any]) -> None:
                    await handle(out, env)

                bus.subscribe("#", each_dead_letter, name="dead-letters")
                # RabbitMQ: the queue as it is (patterns only filter); Kafka: the topic
                imported = ["#"] if kind == "rabbitmq" else [args.topic]
                await bus.attach(bridge, import_=imported, connect_timeout=args.timeout)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(on_signal, signals)
                    await finished.wait()
                    nursery.cancel_scope.cancel()
                if done and not stopped_by:
                    await _settle(bridge, done)
                silence("bus.undelivered")  # held ones: they stay with the broker
                scope.cancel()
    finally:
        await _cleanup(bridge, args.url, args.topic, fresh if kind == "kafka" else "")
    if args.action == "replay" and not args.dry_run:
        print(f"{replayed} replayed", file=sys.stderr)
    if refused:
        raise Failed(f"the broker refused a replayed copy, {refused[0]}; that dead letter "
                     f"stays where it was ({replayed} replayed before it)")
    return 128 + stopped_by if stopped_by else 0
