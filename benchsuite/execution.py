"""Where cells run: the execution interface, and two local engines.

An :class:`Executor` takes a list of tasks and a function, and yields ``(index, outcome)`` pairs
as tasks finish, in any order; ``outcome`` is the function's result or a :class:`TaskFailure`.
The campaign writes each result as it arrives, so any engine (a cluster scheduler, say) can
implement this interface without touching how results are stored.

:class:`ForkExecutor` (the default on Linux and macOS) runs each task in its own forked
process, at most ``workers`` at a time. Forking shares the parent's loaded plugins, so problems
need not be picklable, and a task that overruns its hard time limit (an oracle that never
returns) is killed without harming the others. Only results travel back, through a pipe.
:class:`SerialExecutor` runs tasks in this process (no hard time limit).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: How often the parent polls its workers (seconds).
POLL = 0.02


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised, was killed at its time limit, or whose worker died."""

    message: str


class Executor(Protocol):
    """Runs tasks and yields (index, result or TaskFailure) as they finish."""

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            time_limit: float | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``fn(task)`` for each task; ``time_limit`` is a hard limit per task (seconds)."""


class SerialExecutor:
    """Runs tasks one after the other in this process."""

    def run(self, fn, tasks, time_limit=None):
        for i, task in enumerate(tasks):
            try:
                yield i, fn(task)
            except Exception as exc:
                yield i, TaskFailure(f"{type(exc).__name__}: {exc}")


def _child(fn, task, conn) -> None:
    # Ctrl-C reaches the whole process group. Only the parent may act on it: it kills its
    # workers and records nothing for their cells, which a rerun then computes. A worker that
    # caught it would report its cell as failed, and a resumed run would skip that cell.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = fn(task)
        conn.send(("ok", result))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"))
    finally:
        conn.close()


class ForkExecutor:
    """One forked process per task, ``workers`` at a time, each with a hard time limit."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._ctx = mp.get_context("fork")

    def run(self, fn, tasks, time_limit=None):
        pending = list(range(len(tasks)))[::-1]
        running: dict[int, tuple[Any, Any, float]] = {}  # index -> (process, conn, start)
        # A Ctrl-C that lands while os.fork runs the at-fork hooks (logging registers one)
        # raises inside the hook, where CPython prints "Exception ignored" and drops it: the
        # run would go on. So the handler only records the interrupt, and the loop raises it.
        interrupted = []
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        try:
            while pending or running:
                if interrupted:
                    raise KeyboardInterrupt
                while pending and len(running) < self.workers:
                    i = pending.pop()
                    receive, send = self._ctx.Pipe(duplex=False)
                    proc = self._ctx.Process(target=_child, args=(fn, tasks[i], send),
                                             daemon=True)
                    proc.start()
                    send.close()
                    running[i] = (proc, receive, time.monotonic())
                finished = []
                for i, (proc, conn, start) in running.items():
                    if conn.poll():
                        try:
                            status, payload = conn.recv()
                        except (EOFError, OSError) as exc:
                            status, payload = "error", f"worker died: {exc}"
                        proc.join()
                        finished.append(i)
                        yield i, payload if status == "ok" else TaskFailure(payload)
                    elif not proc.is_alive():
                        proc.join()
                        finished.append(i)
                        yield i, TaskFailure(f"worker died with exit code {proc.exitcode}")
                    elif time_limit is not None and time.monotonic() - start > time_limit:
                        proc.kill()
                        proc.join()
                        finished.append(i)
                        yield i, TaskFailure(
                            f"killed after the hard time limit of {time_limit:g} s (an oracle "
                            "that never returns?); raise --wall-time if the cell is just slow")
                for i in finished:
                    running.pop(i)[1].close()
                if running and not finished:
                    time.sleep(POLL)
        finally:  # the caller stopped early (Ctrl-C, an error): leave no orphan behind
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            for proc, conn, _ in running.values():
                proc.kill()
                proc.join()
                conn.close()


def default_executor(workers: int | None = None) -> Executor:
    """Forked workers where fork exists, else serial."""
    if "fork" in mp.get_all_start_methods() and (workers is None or workers > 1):
        return ForkExecutor(workers)
    return SerialExecutor()
