"""One round of a benchmark case in a child process, under a time bound.

A broker case can hang: a server that ran out of memory keeps its socket open and
answers nothing, and a client waits on it for ever (the Pub/Sub emulator did, and a full
``bus bench bridges`` waited more than ten minutes). A hung round cannot be cancelled
from outside when it is blocked in a client library's thread, so each round runs in a
child forked from the harness: past the bound the child is killed with its threads and
sockets, the case is reported failed with the reason, and the run goes on.

The child is forked, not spawned: it inherits the modules the parent imported
(:func:`preload`), so a round does not pay for imports. What a round asks to clean up
later (Kafka topics, ``_brokers.kafka_delete_topic``) travels back with its sample.
This module measures nothing itself and knows nothing of trio or asyncio.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RoundTimeout", "preload", "run_bounded"]


class RoundTimeout(Exception):
    """A round did not finish within its bound; its child process was killed."""


def preload(modules: Sequence[str]) -> list[str]:
    """Import *modules* in this process (those not installed are skipped); return the
    ones imported. Children forked afterwards then start with them."""
    done = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        done.append(name)
    return done


def run_bounded(
    fn: Callable[[int], Any],
    n: int,
    bound: float,
    *,
    collect: Callable[[], Any] = lambda: None,
) -> tuple[Any, Any]:
    """``fn(n)`` in a forked child, killed after *bound* seconds.

    Returns ``(fn's result, collect())`` as the child computed them (both pickled);
    re-raises the child's exception (its type and message: a traceback does not cross);
    raises :class:`RoundTimeout` when the bound passes first.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the outcome, leave without running atexit hooks
        os.close(read_fd)
        status = 0
        try:
            os.setpgid(0, 0)  # its own group: killed with anything it started
            try:
                outcome: tuple[str, Any, Any] = ("ok", fn(n), collect())
            except BaseException as exc:
                outcome = ("raised", _portable(exc), collect())
            data = pickle.dumps(outcome)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        data = _read_until(read_fd, time.monotonic() + bound)
    finally:
        os.close(read_fd)
        if data is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if data is None:
        raise RoundTimeout(f"no result within {bound:g} s; the round was killed")
    if not data:
        raise RuntimeError(f"the round's process died without a result (status {status})")
    kind, value, collected = pickle.loads(data)
    if kind == "raised":
        raise value
    return value, collected


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None past *deadline*."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _portable(exc: BaseException) -> BaseException:
    """*exc* if it survives pickling, else a RuntimeError carrying its type and text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
