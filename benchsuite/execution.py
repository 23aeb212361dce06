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

One exception to forking: once JAX has started its runtime in this process
(:func:`jax_running`), a forked child that calls into JAX deadlocks, as JAX's thread pools do
not survive a fork. A task that may call into JAX (its ``uses_jax`` attribute, true when
absent) is then run in a fresh interpreter instead (:class:`FreshWorker`), a child of this
process like a forked one, with the same guarantees; its function and task must pickle, and
it sees the plugins installed here (entry points), not ones registered in this process only.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
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
#: JAX's at-fork warning (a RuntimeWarning): silenced for the forks of workers that never
#: call into JAX, the only ones :class:`ForkExecutor` makes once JAX runs here.
JAX_FORK_WARNING = r"os\.fork\(\) was called"


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


def jax_running() -> bool:
    """Whether JAX has started its runtime in this process (a backend, with its thread pools),
    found without importing JAX; an imported JAX whose state this cannot read counts as
    started."""
    if sys.modules.get("jax") is None:
        return False
    started = getattr(sys.modules.get("jax._src.xla_bridge"), "backends_are_initialized", None)
    return True if started is None else bool(started())


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
    if hasattr(signal, "pthread_sigmask"):  # blocked since _start: now they are ignored
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
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


class Unsendable(ValueError):
    """A task, or its function, that cannot be pickled to a fresh interpreter."""


#: What a fresh worker runs: the parent's import path first, so that the task's function
#: unpickles there as it would here, then the task (:func:`_fresh_child`).
_FRESH = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
          "from benchsuite.execution import _fresh_child; _fresh_child(sys.stdin.buffer)")


class FreshWorker:
    """A task in a fresh interpreter, a child of this process, shaped like the
    :class:`multiprocessing.Process` of a forked worker.

    Unlike multiprocessing's ``spawn``, it never runs the parent's ``__main__`` again: a script
    that runs a campaign need not guard its top level. The function and task travel pickled
    through the worker's stdin, with the parent's warning filters (a forked worker has them
    too: a warning that is an error here is one there); raises :class:`Unsendable` when they
    cannot.
    """

    def __init__(self, fn: Callable[[Any], Any], task: Any, send: Any, parent: int) -> None:
        self._fd = send.fileno()
        try:
            self._payload = b"".join(pickle.dumps(part) for part in (
                sys.path, (self._fd, parent), pickle.dumps(warnings.filters), (fn, task)))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise Unsendable(f"could not send the task to a fresh worker "
                             f"({type(exc).__name__}: {exc})") from exc
        self._popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()  # negative: the signal that killed it, as multiprocessing

    def start(self) -> None:
        # the parent's -O, -X, ... as multiprocessing passes them (its helper is subprocess's)
        flags = subprocess._args_from_interpreter_flags()
        self._popen = subprocess.Popen([sys.executable, *flags, "-c", _FRESH],
                                       stdin=subprocess.PIPE, pass_fds=(self._fd,))
        with contextlib.suppress(BrokenPipeError):  # it died at once: its exit code says why
            self._popen.stdin.write(self._payload)
        with contextlib.suppress(BrokenPipeError):
            self._popen.stdin.close()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    def kill(self) -> None:
        self._popen.kill()


def _fresh_child(stdin: Any) -> None:
    """A fresh worker's side (:data:`_FRESH`): load the task, then run it as a forked one."""
    from multiprocessing.connection import Connection

    fd, parent = pickle.load(stdin)
    conn = Connection(fd, readable=False)
    filters = pickle.load(stdin)
    try:
        fn, task = pickle.load(stdin)
    except BaseException as exc:  # the function lives in the parent's __main__, say
        conn.send(("refused", f"a fresh worker cannot load the task ({type(exc).__name__}: "
                              f"{exc}): its function must be importable, not defined in a "
                              "script or notebook"))
        conn.close()
        return
    _use_warning_filters(filters)  # after the imports, which the parent made long before
    _child(fn, task, conn, parent)


def _use_warning_filters(pickled: bytes) -> None:
    """Install the parent's warning filters (:data:`warnings.filters`, pickled), in order; if
    they cannot load here (a category defined in the parent's ``__main__``), the defaults."""
    try:
        filters = pickle.loads(pickled)
    except Exception:
        return
    warnings.resetwarnings()
    for action, message, category, module, lineno in reversed(filters):  # each goes first
        warnings.filterwarnings(action, getattr(message, "pattern", ""), category,
                                getattr(module, "pattern", ""), lineno)


def _worker(fn: Callable[[Any], Any], task: Any, send: Any, jax_here: bool) -> Any:
    """The process that will run ``task`` (not started): forked, or a :class:`FreshWorker`
    for a task that may call into JAX (``task.uses_jax``, true when absent) once JAX runs
    here."""
    if jax_here and getattr(task, "uses_jax", True):
        return FreshWorker(fn, task, send, os.getpid())
    return mp.get_context("fork").Process(target=_child, args=(fn, task, send, os.getpid()),
                                          daemon=True)


def _start(proc, quiet_jax: bool) -> None:
    """Start a worker with the stop signals blocked: it inherits them blocked (through a fork,
    or a fresh interpreter's start-up and imports, which take a second), so that none kills
    it before it ignores them (:func:`_child`); the parent receives them once it unblocks.
    ``quiet_jax`` silences JAX's at-fork warning (a worker that never calls into JAX)."""
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        if quiet_jax:  # (catch_warnings is process-wide: only when JAX runs here)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", JAX_FORK_WARNING, RuntimeWarning)
                proc.start()
        else:
            proc.start()
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


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
    """One forked process per task, ``workers`` at a time, each with a hard time limit; a
    fresh one (:class:`FreshWorker`) for a task that may call into JAX once JAX runs in this
    process (see the module docstring)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

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
                    receive, send = mp.Pipe(duplex=False)
                    jax_here = jax_running()
                    try:
                        _start(proc := _worker(fn, tasks[i], send, jax_here), quiet_jax=jax_here)
                    except Unsendable as exc:
                        receive.close()
                        yield i, TaskFailure(str(exc))
                        continue
                    finally:
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
    """Run ``fn(task)`` in a child of this process (forked, or fresh as in
    :class:`ForkExecutor`), with the local executor's guarantees: the result, or a
    :class:`TaskFailure` saying why there is none (a fault, the hard time limit); ``stop`` as
    in :meth:`ForkExecutor.run`. What a remote worker calls, so that a shard that hangs or
    crashes costs that shard, never the worker and the other shards it holds."""
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
