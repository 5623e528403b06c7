"""``bus tail``, ``bus publish`` and ``bus topics``: a broker's topics from a shell.

Every command takes a broker URL (``bridges.from_url``: ``memory://`` or a scheme of a
registered broker, ``bus.abc.brokers()``) and runs a local bus with that broker's bridge
attached, so what it shows is what an application on the bus would see:

- ``tail URL TOPIC``: imports TOPIC (a pattern is fine) and prints each message, decoded,
  as it arrives, with its key and headers (``--json``: one JSON object per line). It reads
  as a consumer group of its own, from what arrives from now on, or with
  ``--from-beginning`` from what the broker kept: Kafka's log and Kinesis' stream from
  their start; RabbitMQ's and Pub/Sub's CLI queue (``bus-cli``, ``bridges._urls.KEEP_GROUP``), which
  ``bus topics URL create TOPIC`` makes and which keeps every message published since.
  ``--count N`` stops after N messages; only those N are acknowledged. A tail never
  creates a topic: one the broker does not have is refused (where the broker lists its
  topics). How a broker tails (a private group, queue or subscription, and how it is
  removed) is its plugin's ``tail_options`` and ``tail_cleanup``.
- ``publish URL TOPIC``: one JSON value per line of stdin, each published with
  ``confirm=True``, so the command returns once the broker confirmed every one (or
  reports those it refused); prints the count.
- ``topics URL [list | create NAME... | delete NAME...]``.

``memory://`` is an in-process broker, so a command has only itself to talk to: ``tail``
appends the JSON lines of its stdin to that broker as another producer would, and prints
them as they come back through the bridge; ``publish`` and ``topics`` work, and nothing
they do outlives the process.

Errors end as one line on stderr: exit 2 for a usage error (bad URL, bad input line),
1 when the broker cannot be reached or refused messages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any, TextIO

import msgspec
import trio

from bus import Bus, BusError, ConfigurationError, Envelope, NotDeliveredError, open_bus
from bus.abc import BrokerPlugin, Pattern, brokers, get_logger, is_pattern, mask_url

from ._log import silence

__all__ = ["add_parsers", "run"]

log = get_logger("bus.cli")

EXIT_USAGE = 2
EXIT_FAILED = 1
_PUBLISH_WINDOW = 512  # confirmations awaited at once; below the export mailbox's room
PEEK_LIMIT = 1000
"""What a tail of a RabbitMQ queue shows without ``--count`` or ``--consume``: a peek
holds every message it showed unacknowledged (the broker sends no more than that)."""
AMQP_MAX_PREFETCH = 65535  # basic.qos prefetch_count is a 16-bit field
LOCAL_DEAD_LETTERS = "bus-cli.dead_letter"
"""The dead-letter topic of the commands' own bus: never imported nor exported, so a
broker's ``bus.dead_letter`` is read as any other topic."""


class UsageError(Exception):
    """A mistake of the caller: exit 2."""


class Failed(Exception):
    """The broker refused or could not be reached: exit 1."""


# -- arguments -------------------------------------------------------------------------


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``tail``, ``publish`` and ``topics`` to the ``bus`` subcommands."""
    url_help = f"broker URL: {_forms()}"
    tail = commands.add_parser(
        "tail", parents=[parent], help="print a topic's messages as they arrive",
        description="Print the messages of TOPIC (or a */# pattern) as they arrive, "
        "decoded, one per line with key and headers.",
    )
    tail.add_argument("url", metavar="URL", help=url_help + "; amqp://...?queue=NAME reads "
                      "that existing queue as it is, a peek unless --consume")
    tail.add_argument("topic", metavar="TOPIC", nargs="?",
                      help="topic or */# pattern (with ?queue=: a filter, default #)")
    tail.add_argument(
        "--from-beginning", action="store_true",
        help="start from what the broker kept (Kafka, Kinesis: the whole log; RabbitMQ, "
        "Pub/Sub: the bus-cli queue that `bus topics URL create TOPIC` made)",
    )
    tail.add_argument("--count", type=_count, metavar="N", help="stop after N messages")
    tail.add_argument("--json", action="store_true", help="one JSON object per message")
    tail.add_argument(
        "--consume", action="store_true",
        help="with ?queue=NAME: acknowledge what is shown, taking it off the queue (without "
        f"it a tail of a queue peeks: it shows at most --count, default {PEEK_LIMIT}, "
        "and they all stay in the queue)",
    )
    tail.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                      help="give up connecting after S seconds (default 10)")

    publish = commands.add_parser(
        "publish", parents=[parent], help="publish JSON lines from stdin, confirmed",
        description="Publish each line of stdin (one JSON value) to TOPIC and wait until "
        "the broker confirmed every one; print how many.",
    )
    publish.add_argument("url", metavar="URL", help=url_help)
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("--key", metavar="K", help="ordering key of every message")
    publish.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                         help="give up connecting after S seconds (default 10)")

    topics = commands.add_parser(
        "topics", parents=[parent], help="list, create or delete a broker's topics",
        description="List the broker's topics, or create or delete one. create also makes "
        "the bus-cli queue (RabbitMQ) or subscription (Pub/Sub) that keeps the topic's "
        "messages for `bus tail --from-beginning`.",
    )
    topics.add_argument("url", metavar="URL", help=url_help)
    topics.add_argument("action", nargs="?", choices=("list", "create", "delete"),
                        default="list")
    topics.add_argument("names", nargs="*", metavar="NAME", help="the topics (create, delete)")
    topics.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                        help="give up connecting after S seconds (default 10)")


def run(args: argparse.Namespace, error: Callable[[str], None]) -> int:
    """Run ``args.command``; errors end as one line through *error*."""
    try:
        if args.command == "topics" and args.action != "list" and not args.names:
            raise UsageError(f"topics {args.action} needs a NAME")
        if args.command == "topics" and args.action == "list" and args.names:
            raise UsageError(f"topics list takes no NAME (got {' '.join(args.names)})")
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    commands = {"tail": _tail, "publish": _publish, "topics": _topics}
    return run_trio(commands[args.command], args, error)


def run_trio(command: Callable[[argparse.Namespace], Any], args: argparse.Namespace,
             error: Callable[[str], None]) -> int:
    """``trio.run(command, args)``: its errors end as one line through *error*, exit 2
    for the caller's mistakes, 1 for the broker's refusals and failures."""
    try:
        try:
            return int(trio.run(command, args))
        except BaseExceptionGroup as group:
            raise _single(group) from None
    except (UsageError, ConfigurationError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except (Failed, BusError) as exc:
        error(str(exc))
        return EXIT_FAILED


def _single(group: BaseExceptionGroup[Any]) -> BaseException:
    """The error to report from a group (what a nursery wraps): a usage error first, then
    a bus error; the group itself if it holds neither (a bug: let it show)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kinds in ((UsageError, ConfigurationError), (Failed, BusError)):
        for leaf in leaves:
            if isinstance(leaf, kinds):
                return leaf
    return group


# -- bridges for the commands ----------------------------------------------------------


def _forms() -> str:
    """The accepted URL forms, for ``--help``: ``memory://`` and every registered broker's
    (a plugin that fails to load is reported when a command uses the registry)."""
    try:
        return ", ".join(("memory://", *(f for p in brokers().values() for f in p.url_forms)))
    except BusError:
        return "memory:// or a registered broker's URL"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _plugin(url: str) -> BrokerPlugin | None:
    """The registered broker of *url*'s scheme (None for ``memory://``; ``_bridge`` has
    refused an unknown scheme before this is asked)."""
    scheme = _scheme(url)
    return next((p for p in brokers().values() if scheme in p.schemes), None)


def _bridge(url: str, **options: Any) -> Any:
    from bridges import from_url

    return from_url(url, name="bus-cli", **options)


def _tail_options(url: str, topic: str, from_beginning: bool) -> tuple[dict[str, Any], str]:
    """Constructor options for a tailing bridge, and the private queue/group to remove:
    the broker's own (its plugin's ``tail_options``), else a group of the tail's own."""
    plugin, fresh = _plugin(url), f"bus-tail-{uuid.uuid4().hex[:12]}"
    if plugin is not None and plugin.tail_options is not None:
        return plugin.tail_options(topic, from_beginning, fresh)
    return {"group": fresh}, ""


def _lists_topics(url: str) -> bool:
    """Do the broker's topics exist as things of their own, listed by ``topics list``?
    (AMQP has only routing keys: a tail binds its queue to one, whether anyone publishes
    there or not.) ``memory://`` has no topics before a message arrives."""
    plugin = _plugin(url)
    return plugin is not None and plugin.lists_topics


async def _check_tailed(url: str, topic: str, connect_within: float) -> None:
    """Refuse to tail a topic the broker does not have; say so once if nothing matches a
    pattern yet. Subscribing to a missing Kafka topic by name would create it (aiokafka
    asks for metadata with auto-creation on) and then wait in silence, as would a tail on
    a missing Kinesis stream or Pub/Sub topic."""
    if not _lists_topics(url):
        return
    bridge = _bridge(url)
    try:
        with trio.fail_after(connect_within):
            await bridge.open()
    except trio.TooSlowError:
        raise Failed(f"cannot reach {mask_url(url)} within {connect_within:g} s") from None
    try:
        topics = await bridge.list_topics()
    finally:
        with trio.CancelScope(shield=True):
            await bridge.aclose()
    if not is_pattern(topic):
        if topic not in topics:
            raise UsageError(
                f"topic {topic!r} does not exist on {mask_url(url)} (a tail never creates "
                f"one): check the name, or create it first with `bus topics {mask_url(url)} "
                f"create {topic}`"
            )
        return
    pattern = Pattern(topic)
    if not any(pattern.matches(t) for t in topics):
        print(f"bus tail: no topic matches {topic!r} yet; waiting for one to be created",
              file=sys.stderr, flush=True)


async def _cleanup(bridge: Any, url: str, topic: str, private: str) -> None:
    """Remove the private queue or subscription a tail made (its plugin's
    ``tail_cleanup``: RabbitMQ's queue, Pub/Sub's subscriptions)."""
    plugin = _plugin(url)
    if not private or plugin is None or plugin.tail_cleanup is None:
        return
    with trio.move_on_after(5) as scope:
        scope.shield = True
        try:
            await bridge.open()
            await plugin.tail_cleanup(bridge, private)
        except BusError:
            pass  # best effort: the broker went away meanwhile
        finally:
            await bridge.aclose()


# -- tail ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value, str_keys=True)


def _render(env: Envelope[Any], as_json: bool) -> str:
    # x-bus-origin names the bridge the message came in through: this tail's own
    headers = {k: v for k, v in env.headers.items() if k != "x-bus-origin"}
    if as_json:
        return json.dumps({
            "topic": env.topic, "key": env.key, "headers": headers,
            "payload": _jsonable(env.payload), "id": env.id, "time": env.time,
            "source": env.source,
        }, ensure_ascii=False)
    payload = json.dumps(_jsonable(env.payload), ensure_ascii=False)
    line = f"{env.topic}  key={env.key if env.key is not None else '-'}  {payload}"
    if headers:
        line += "  " + " ".join(f"{k}={v}" for k, v in sorted(headers.items()))
    return line


class _Out:
    """stdout, one flushed line at a time; a closed pipe (``| head``) ends the command."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = trio.Event()

    def line(self, text: str) -> None:
        if self.closed.is_set():
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.closed.set()


def _named_queue(url: str) -> str | None:
    """The queue an ``amqp://`` URL names (``?queue=NAME``), if it names one."""
    from bridges import url_query

    if _scheme(url) not in ("amqp", "amqps"):
        return None
    return url_query(url).get("queue")


async def _check_queue(url: str, connect_within: float) -> None:
    """Refuse a queue that does not exist (one clear line, nothing declared)."""
    bridge = _bridge(url)
    try:
        with trio.fail_after(connect_within):
            await bridge.open()
    except trio.TooSlowError:
        raise Failed(f"cannot reach {mask_url(url)} within {connect_within:g} s") from None
    try:
        await bridge.queue_counts()
    finally:
        with trio.CancelScope(shield=True):
            await bridge.aclose()


async def _queue_tail_options(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """A tail of a named queue: what it imports, and how it acknowledges (a peek holds
    what it shows, so it reads at most --count: the broker's prefetch)."""
    if args.consume and args.topic is not None:
        raise UsageError("--consume with a TOPIC filter would take off the queue messages "
                         "it does not show: drop the TOPIC, or peek without --consume")
    if args.from_beginning:
        raise UsageError("a queue is read from its head: --from-beginning means nothing here")
    await _check_queue(args.url, args.timeout)
    if args.consume:
        return {"acknowledge": True}, ["#"]
    if args.count is not None and args.count > AMQP_MAX_PREFETCH:
        raise UsageError(f"a peek shows at most {AMQP_MAX_PREFETCH} messages (--count); "
                         f"--consume reads any number")
    return {"acknowledge": False, "prefetch": args.count or PEEK_LIMIT}, ["#"]


async def _tail(args: argparse.Namespace) -> int:
    queue = _named_queue(args.url)
    peek_limit = None
    if queue is not None:
        options, imported = await _queue_tail_options(args)
        private = ""
        peek_limit = None if args.consume else args.count or PEEK_LIMIT
        topic = args.topic or "#"
    else:
        if args.topic is None:
            raise UsageError("tail needs a TOPIC (or an amqp:// URL naming a queue: "
                             "?queue=NAME)")
        if args.consume:
            raise UsageError("--consume goes with an amqp:// URL naming a queue (?queue=NAME):"
                             " a tail of a topic reads through a queue or group of its own")
        topic = args.topic
        await _check_tailed(args.url, topic, args.timeout)
        options, private = _tail_options(args.url, topic, args.from_beginning)
        imported = [topic]
    bridge = _bridge(args.url, **options)
    memory = _scheme(args.url) == "memory"
    out = _Out(sys.stdout)
    printed = 0
    enough = trio.Event()
    everything_read = trio.Event()  # memory:// only: stdin ended, all appended
    appended = [0]

    async def show(env: Envelope[Any]) -> None:
        nonlocal printed
        if enough.is_set():
            await trio.sleep_forever()  # past --count: never done, so never acknowledged
        out.line(_render(env, args.json))
        printed += 1
        if peek_limit is not None and printed >= peek_limit:
            if args.count is None:
                print(f"bus tail: showed {printed} messages of queue {queue!r}, the most a "
                      f"peek shows without --count; they all stay in the queue",
                      file=sys.stderr, flush=True)
            enough.set()
        elif (args.count is not None and printed >= args.count) or out.closed.is_set():
            enough.set()
        elif everything_read.is_set() and printed >= appended[0]:
            enough.set()

    async def undecodable(env: Envelope[Any]) -> None:
        print(f"bus tail: skipped a message on {env.headers.get('x-bus-original-topic', '?')}: "
              f"{env.headers.get('x-bus-error', '?')}", file=sys.stderr, flush=True)

    stopped_by = 0  # the signal that ended the tail, if one did

    async def on_signal(signals: Any) -> None:
        # Ctrl-C (SIGINT) and SIGTERM end a tail the same way, between two messages:
        # received here rather than as KeyboardInterrupt, which could land inside a
        # handler and leave the message it was printing reported as undelivered.
        nonlocal stopped_by
        async for signum in signals:
            stopped_by = signum
            enough.set()

    try:
        with (
            trio.CancelScope() as scope,
            trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        ):
            async with open_bus(name="bus-cli", strict=False, drain_timeout=5,
                                dead_letter_topic=LOCAL_DEAD_LETTERS) as bus:
                bus.subscribe(topic, show, name="tail")
                bus.subscribe(bus.dead_letter_topic, undecodable, name="tail.skipped")
                await bus.attach(bridge, import_=imported, connect_timeout=args.timeout)
                log.info("tail.started", url=mask_url(args.url), topic=topic,
                         from_beginning=args.from_beginning, count=args.count)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(on_signal, signals)
                    if memory:
                        nursery.start_soon(
                            _feed_memory, bridge, topic, appended, everything_read,
                            lambda: printed, enough,
                        )
                    await enough.wait()
                    nursery.cancel_scope.cancel()
                silence("bus.undelivered")  # by design: they go back to the broker
                scope.cancel()  # stop at once: what is queued is not done, not acknowledged
    finally:
        await _cleanup(bridge, args.url, topic, private)
    return 128 + stopped_by if stopped_by else 0


async def _feed_memory(
    bridge: Any, topic: str, appended: list[int], everything_read: trio.Event,
    printed: Callable[[], int], enough: trio.Event,
) -> None:
    """memory://: the JSON lines of stdin, appended to the in-process broker."""
    from bus.testing import LoopbackRecord

    if any(c in topic for c in "*#"):
        raise UsageError("tail memory:// reads stdin into one topic: give a topic, not a pattern")
    async for number, raw in _lines(sys.stdin.fileno()):
        _decode_line(number, raw)  # a bad line is a usage error, as for publish
        record_id = f"stdin-{number}"
        bridge.broker.append(LoopbackRecord(topic, raw, record_id, None, {}, 0.0))
        appended[0] += 1
    everything_read.set()
    if printed() >= appended[0]:
        enough.set()


# -- publish ---------------------------------------------------------------------------


async def _lines(fd: int) -> AsyncGenerator[tuple[int, bytes], None]:
    """Non-empty lines read from file descriptor *fd*, numbered from 1.

    Read with ``os.read`` in a worker thread that is abandoned on cancellation (a tail
    stopped while stdin is still open): not through ``sys.stdin.buffer``, whose lock a
    thread blocked in it would still hold when the interpreter shuts down, which aborts
    the process.
    """
    buffer, number = b"", 0
    while True:
        chunk = await trio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            number += 1
            if line.strip():
                yield number, line.strip()
    if buffer.strip():
        yield number + 1, buffer.strip()


def _decode_line(number: int, raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        shown = raw[:60].decode("utf-8", "replace")
        raise UsageError(f"stdin line {number} is not JSON ({exc}): {shown!r}") from None


class _Progress:
    """``published N`` on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.last = 0.0

    def show(self, count: int, final: bool = False) -> None:
        if not self.on:
            return
        now = trio.current_time()
        if final or now - self.last > 0.2:
            self.last = now
            end = "\n" if final else ""
            print(f"\r{self.label} {count}", end=end, file=sys.stderr, flush=True)


async def _publish(args: argparse.Namespace) -> int:
    """One rule for a line that is not JSON: every line before it is published and its
    confirmation awaited, nothing after it is read, and the one error line says so."""
    if any(c in args.topic for c in "*#"):
        raise UsageError(f"publish needs a topic, not a pattern: {args.topic!r}")
    bridge = _bridge(args.url)
    confirmed, refused = 0, []
    window = trio.Semaphore(_PUBLISH_WINDOW)
    progress = _Progress("confirmed")
    bad_line: UsageError | None = None

    async def one(bus: Bus, payload: Any, number: int, task_status: Any) -> None:
        nonlocal confirmed
        async with window:
            task_status.started()
            # publish() takes the message before its first schedule point (the export
            # mailbox has room: the window is smaller), so messages leave in line order
            try:
                await bus.publish(args.topic, payload, key=args.key, confirm=True)
            except NotDeliveredError as exc:
                refused.append((number, exc))
            else:
                confirmed += 1
                progress.show(confirmed)

    sent, stopped_by = 0, 0

    async def on_signal(signals: Any, reading: trio.CancelScope,
                        everything: trio.CancelScope) -> None:
        # SIGINT or SIGTERM: read no more, wait for what was sent to be confirmed, and say
        # how far it got; a second one: stop waiting.
        nonlocal stopped_by
        async for signum in signals:
            if stopped_by:
                everything.cancel()
                return
            stopped_by = signum
            reading.cancel()

    silence("message.dead_lettered")  # refusals are reported below, with the first reason
    with (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        trio.CancelScope() as everything,
    ):
        async with open_bus(name="bus-cli", strict=False) as bus:
            bus.topic(args.topic, object)
            await bus.attach(bridge, export=[args.topic], connect_timeout=args.timeout)
            async with trio.open_nursery() as watching:
                reading = trio.CancelScope()
                watching.start_soon(on_signal, signals, reading, everything)
                async with trio.open_nursery() as nursery:
                    with reading:
                        async with contextlib.aclosing(_lines(sys.stdin.fileno())) as lines:
                            async for number, raw in lines:
                                try:
                                    payload = _decode_line(number, raw)
                                except UsageError as problem:
                                    bad_line = problem  # the lines before it still go
                                    break
                                # returns once the message is taken (waiting while the
                                # window is full)
                                await nursery.start(one, bus, payload, number)
                                sent += 1
                watching.cancel_scope.cancel()
    progress.show(confirmed, final=True)
    print(f"{confirmed} published to {args.topic}")
    if stopped_by:
        unconfirmed = sent - confirmed - len(refused)
        print(
            f"bus: {signal.Signals(stopped_by).name}: stopped reading after {sent} "
            f"message(s): {confirmed} published (confirmed)"
            + (f", {len(refused)} refused" if refused else "")
            + (f", {unconfirmed} not confirmed (they may still reach the broker)"
               if unconfirmed else "")
            + "; nothing after them was read",
            file=sys.stderr, flush=True,
        )
        return 128 + stopped_by
    first_refusal = ""
    if refused:
        number, exc = min(refused, key=lambda r: r[0])
        hint = ""
        if "unroutable" in str(exc):
            hint = (f"; nothing reads {args.topic} on this exchange: `bus topics URL create "
                    f"{args.topic}` binds a queue that keeps its messages")
        first_refusal = f"the first (line {number}): {exc}{hint}"
    if bad_line is not None:
        raise UsageError(f"{bad_line}; {_before(confirmed, refused, first_refusal)}")
    if refused:
        raise Failed(f"{len(refused)} message(s) refused, {first_refusal}")
    return 0


def _before(confirmed: int, refused: list[Any], first_refusal: str) -> str:
    """What happened to the lines before a line that is not JSON, in words."""
    earlier = confirmed + len(refused)
    if earlier == 0:
        return "nothing was published"
    lines = "line" if earlier == 1 else "lines"
    if not refused:
        return (f"the {earlier} {lines} before it {'was' if earlier == 1 else 'were'} "
                f"published (confirmed); nothing after it was sent")
    return (f"of the {earlier} {lines} before it, {confirmed} published and {len(refused)} "
            f"refused ({first_refusal}); nothing after it was sent")


# -- topics ----------------------------------------------------------------------------


async def _topics(args: argparse.Namespace) -> int:
    from bridges import create_kept_topic, delete_kept_topic

    bridge = _bridge(args.url)
    plugin = _plugin(args.url)
    listed = plugin is None or plugin.lists_topics
    if args.action == "list" and not listed:
        assert plugin is not None
        raise UsageError(
            f"{plugin.title} cannot list topics: its broker has no call that lists them "
            f"(the {plugin.name} plugin says lists_topics=False; see docs/bridges.md)"
        )
    try:
        with trio.fail_after(args.timeout):
            await bridge.open()
    except trio.TooSlowError:
        raise Failed(f"cannot reach {mask_url(args.url)} within {args.timeout:g} s") from None
    try:
        if args.action == "list":
            for name in await bridge.list_topics():
                print(name)
        elif args.action == "create":
            for name in args.names:
                await create_kept_topic(bridge, name)
                print(f"created {name}")
        else:
            for name in args.names:
                await delete_kept_topic(bridge, name)
                if listed:  # listed until the deletion is done
                    with trio.move_on_after(args.timeout):
                        await _until_unlisted(bridge, name)
                print(f"deleted {name}")
    finally:
        with trio.CancelScope(shield=True):
            await bridge.aclose()
    return 0


async def _until_unlisted(bridge: Any, name: str) -> None:
    """Wait until the broker stops listing *name*: Kafka accepts a deletion before its
    brokers have carried it out."""
    while name in await bridge.list_topics():  # noqa: ASYNC110 - the broker's state
        await trio.sleep(0.05)
