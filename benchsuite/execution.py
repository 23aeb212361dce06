"""Where cells run: the execution interface, and two local engines.

An :class:`Executor` takes a list of tasks and a function, and yields ``(index, outcome)`` pairs
as tasks finish, in any order; ``outcome`` is the function's result or a :class:`TaskFailure`.
The campaign writes each result as it arrives, so any engine (a cluster scheduler, say) can
implement this interface without touching how results are stored.

:class:`ForkExecutor` (the default on Linux and macOS) runs each task in its own forked
process, at most ``workers`` at a time. Forking shares the parent's loaded plugins, so problems
need not be picklable, and a task that overruns its hard time limit (an oracle that never
returns) is killed without harming the others. Only results travel back, through a pipe.
Whatever a task does (raise, call ``sys.exit``, ``os._exit``, crash in native code, run out of
memory) becomes a :class:`TaskFailure` that says why; workers die with their parent, and
SIGINT, SIGTERM and SIGHUP stop the run as :class:`Interrupted`, with no worker left behind.
:class:`SerialExecutor` runs tasks in this process (no hard time limit).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: How often the parent polls its workers (seconds).
POLL = 0.02
#: How often a ``stop`` callback is polled (seconds): it may ask a remote scheduler.
STOP_POLL = 1.0
#: How long the parent waits for a worker to exit once its pipe has answered (seconds).
JOIN_GRACE = 5.0
#: The signals that stop a run: the parent acts on them, its workers ignore them.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised, was killed at its time limit, or whose worker died; or, with
    ``refused``, that its worker would not run (other code than the client's): the task's
    fault in the first case, the cluster's in the second."""

    message: str
    refused: bool = False


class ExecutorUnavailable(RuntimeError):
    """An executor cannot start (its cluster is unreachable, say); nothing was run. The
    message says what to do."""


class TaskRefused(RuntimeError):
    """A worker cannot run a task as the client planned it (other code, unknown names)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM or SIGHUP); ``signal`` is its name.

    A :class:`KeyboardInterrupt`, so code that handles Ctrl-C handles the others alike.
    """

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)  # args as given: pickles and copies round-trip
        self.signal = signal_name

    def __str__(self) -> str:
        return f"interrupted by {self.signal}"


class Executor(Protocol):
    """Runs tasks and yields (index, result or TaskFailure) as they finish.

    The contract every engine keeps (the campaign relies on it): a task's fault (it raises,
    exits, crashes, overruns ``time_limit``, loses its worker for good) is a
    :class:`TaskFailure` for that task alone; a task a worker refuses (:class:`TaskRefused`)
    is a ``TaskFailure(refused=True)``; nothing is left running once the generator is closed
    (a KeyboardInterrupt, the campaign's error); results travel one at a time.
    """

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            time_limit: float | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``fn(task)`` for each task; ``time_limit`` is a hard limit per task (seconds)."""


class ExecutorPlugin(Protocol):
    """What the ``benchsuite_executors`` hook returns: a named way to build an executor."""

    name: str
    description: str

    def create(self, *, workers: int | None = None, address: str | None = None) -> Executor:
        """An executor with ``workers`` workers (None: the engine's default), on the cluster
        at ``address`` where the engine has one (None: its own configuration, or a local
        cluster); raise ValueError, saying what to do, when it cannot be built."""


class SerialExecutor:
    """Runs tasks one after the other in this process."""

    def run(self, fn, tasks, time_limit=None):
        for i, task in enumerate(tasks):
            try:
                yield i, fn(task)
            except Exception as exc:
                yield i, TaskFailure(f"{type(exc).__name__}: {exc}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _die_with_parent(parent: int) -> None:
    """Make this worker die when its parent does, so that a parent killed by SIGKILL (which
    runs no cleanup) leaves no worker computing cells that nobody will record."""
    if sys.platform.startswith("linux"):
        # The kernel sends us SIGKILL when the thread that forked us exits: ForkExecutor.run
        # forks from the thread that consumes its results, which outlives the workers.
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            ok = False
        if ok:
            if os.getppid() != parent:  # the parent died before prctl: nobody to signal us
                os._exit(1)
            return

    def watch() -> None:  # no prctl (macOS, ...): poll; an orphan is adopted by another pid
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="benchsuite-parent-watch", daemon=True).start()


#: glibc's mallopt parameters, and the values a shard process gets (see _numeric_malloc).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD, MMAP_THRESHOLD = 256 << 20, 32 << 20


def _numeric_malloc() -> None:
    """Give a shard process glibc's large allocation thresholds back.

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory
    back to the system), which also fixes glibc's mmap threshold: every numpy temporary of a
    batch is then mapped and unmapped again, and a batched loop runs 6 times slower, in the
    kernel (measured: 11 s instead of 1.7 s for 5000 Euler trajectories). A shard process
    lives for one shard and returns all its memory when it exits, so it needs no trimming.
    """
    if not sys.platform.startswith("linux") or not any(
            name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


def _child(fn, task, conn, parent: int) -> None:
    _die_with_parent(parent)
    _numeric_malloc()
    # A process group of its own: whatever the cell's code starts (a subprocess, a pool) is
    # killed with the worker (_kill), not left running with our ignored signals.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # Ctrl-C reaches the whole process group, and a service manager or a closing terminal may
    # signal it all too. Only the parent may act on these: it kills its workers and records
    # nothing for their cells, which a rerun then computes. A worker that caught one would
    # report its cell as failed, and a resumed run would skip that cell.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    try:
        try:  # BaseException: a sys.exit or KeyboardInterrupt in a cell is that cell's failure
            message = ("ok", fn(task))
        except TaskRefused as exc:
            message = ("refused", str(exc))
        except SystemExit as exc:
            message = ("error", f"the cell called sys.exit({exc.code!r})\n"
                                f"{traceback.format_exc(limit=5)}")
        except KeyboardInterrupt:  # workers ignore SIGINT: the cell's own code raised it
            message = ("error", "the cell raised KeyboardInterrupt\n"
                                f"{traceback.format_exc(limit=5)}")
        except BaseException as exc:
            message = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        try:
            conn.send(message)
        except Exception as exc:  # a result that cannot be pickled: pickling precedes writing
            conn.send(("error", f"could not send the result back: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def describe_exit(exitcode: int | None) -> str:
    """Why a worker ended without returning a result, from its exit code (negative: signal)."""
    if exitcode is None:
        return "worker closed its result pipe without a result and did not exit; killed"
    if exitcode >= 0:
        return (f"worker exited with code {exitcode} before returning a result "
                "(os._exit in the cell's code?)")
    signum = -exitcode
    hint = {signal.SIGKILL: ": out of memory? (the kernel's OOM killer sends SIGKILL)",
            signal.SIGSEGV: ": a crash in native code (a C extension, ctypes)?",
            signal.SIGBUS: ": a crash in native code (a C extension, ctypes)?",
            signal.SIGILL: ": a crash in native code (a C extension, ctypes)?",
            signal.SIGFPE: ": a crash in native code (a C extension, ctypes)?",
            signal.SIGABRT: ": an abort in native code (a failed C assertion?)"}.get(signum, "")
    return f"worker killed by signal {_signal_name(signum)} ({signum}){hint}"


def _kill(proc) -> None:
    """Kill a worker and every process its cell started (its process group), then join it."""
    with contextlib.suppress(OSError):  # no such group: the worker has not set it up yet
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.join()


def _collect(proc, conn) -> Any:
    """The result of a worker whose pipe answered or that ended; the worker is joined."""
    outcome = None
    if conn.poll():  # true on EOF as well: the worker died without sending anything
        try:
            status, payload = conn.recv()
            outcome = payload if status == "ok" else TaskFailure(payload, status == "refused")
        except Exception:  # EOF, or cut short: say how the worker ended instead
            pass
    proc.join(JOIN_GRACE)
    lingered = proc.exitcode is None  # a non-daemon thread of the cell's code?
    exitcode = proc.exitcode
    _kill(proc)  # also what the cell left running in the background
    if lingered and outcome is None:
        return TaskFailure(describe_exit(None))
    return outcome if outcome is not None else TaskFailure(describe_exit(exitcode))


class ForkExecutor:
    """One forked process per task, ``workers`` at a time, each with a hard time limit."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._ctx = mp.get_context("fork")

    def run(self, fn, tasks, time_limit=None, stop: Callable[[], bool] | None = None):
        """As :meth:`Executor.run`; ``stop`` is polled about once a second, and when it says
        so every worker is killed and :class:`Interrupted` raised (a cancelled remote task)."""
        pending = list(range(len(tasks)))[::-1]
        next_stop_check = time.monotonic() + STOP_POLL
        running: dict[int, tuple[Any, Any, float]] = {}  # index -> (process, conn, start)
        # A Ctrl-C that lands while os.fork runs the at-fork hooks (logging registers one)
        # raises inside the hook, where CPython prints "Exception ignored" and drops it: the
        # run would go on. So the handlers only record the signal, and the loop raises it.
        interrupted: list[int] = []
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                previous[signum] = signal.signal(signum, lambda s, _: interrupted.append(s))
        try:
            while True:
                if interrupted:  # checked once more after the last result: a signal that
                    raise Interrupted(_signal_name(interrupted[0]))  # came then still stops
                if not (pending or running):
                    break
                if stop is not None and time.monotonic() >= next_stop_check:
                    if stop():
                        raise Interrupted("cancelled")
                    next_stop_check = time.monotonic() + STOP_POLL
                while pending and len(running) < self.workers:
                    i = pending.pop()
                    receive, send = self._ctx.Pipe(duplex=False)
                    proc = self._ctx.Process(target=_child,
                                             args=(fn, tasks[i], send, os.getpid()), daemon=True)
                    proc.start()
                    send.close()
                    running[i] = (proc, receive, time.monotonic())
                finished = []
                for i, (proc, conn, start) in running.items():
                    # A worker that sent its result and exited between the poll and is_alive
                    # has its result in the pipe: _collect polls again once it has ended.
                    if conn.poll() or not proc.is_alive():
                        finished.append(i)
                        yield i, _collect(proc, conn)
                    elif time_limit is not None and time.monotonic() - start > time_limit:
                        _kill(proc)
                        finished.append(i)
                        yield i, TaskFailure(
                            f"killed after the hard time limit of {time_limit:g} s (an oracle "
                            "that never returns?); raise --wall-time if the cell is just slow")
                for i in finished:
                    running.pop(i)[1].close()
                if running and not finished:
                    time.sleep(POLL)
        finally:  # the caller stopped early (a signal, an error): leave no orphan behind
            for proc, conn, _ in running.values():
                _kill(proc)
                conn.close()
            # only now: a second Ctrl-C must not cut the cleanup above short
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)


def run_contained(fn: Callable[[Any], Any], task: Any, time_limit: float | None = None,
                  stop: Callable[[], bool] | None = None) -> Any:
    """Run ``fn(task)`` in a forked child of this process, with the local executor's
    guarantees: the result, or a :class:`TaskFailure` saying why there is none (a fault, the
    hard time limit); ``stop`` as in :meth:`ForkExecutor.run`. What a remote worker calls,
    so that a shard that hangs or crashes costs that shard, never the worker and the other
    shards it holds."""
    if "fork" not in mp.get_all_start_methods():
        return next(SerialExecutor().run(fn, [task]))[1]
    for _, outcome in ForkExecutor(1).run(fn, [task], time_limit=time_limit, stop=stop):
        return outcome
    raise AssertionError("unreachable: one task yields one outcome")


def default_executor(workers: int | None = None) -> Executor:
    """Forked workers where fork exists (one worker included: every cell contained, with its
    hard time limit), else serial."""
    if "fork" in mp.get_all_start_methods():
        return ForkExecutor(workers)
    return SerialExecutor()
