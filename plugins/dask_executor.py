"""Shards on a Dask distributed cluster, with the guarantees of the local executor.

Each task is shipped as plain data (:class:`benchsuite.tasks.Task`) to a worker, which runs
it in a child process of its own (:func:`benchsuite.execution.run_contained`): the hard time
limit holds, and a shard that hangs, crashes or exits costs that shard, never the worker and
the other shards it holds. A worker that dies (killed, out of memory, its machine lost) has
its shards rescheduled by Dask on the others, up to the scheduler's ``allowed-failures``
(``distributed.scheduler.allowed-failures``, 3 by default); a shard that outlives that many
workers is recorded as failed. Results come back one at a time, as shards finish, and are
released on the cluster once the campaign has them: the client never holds more than one.

Closing the run (Ctrl-C, an error) cancels every shard: queued ones at the scheduler, running
ones through a Dask :class:`~distributed.Event` that their workers poll once a second, which
kills the shard's child process. A cluster started here is torn down with the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask
from distributed import Client, Event, LocalCluster, as_completed
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from benchsuite.execution import ExecutorUnavailable, TaskFailure, run_contained


class DaskExecutor:
    """Run tasks on a Dask cluster (see the module docstring).

    Parameters
    ----------
    address : str, optional
        The scheduler's address (``tcp://host:8786``); default: Dask's ``scheduler-address``
        setting (``$DASK_SCHEDULER_ADDRESS``), else a local cluster started for the run.
    workers : int, optional
        Workers of a local cluster (default: one per core), each single-threaded.
    """

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address or dask.config.get("scheduler-address", None)
        self.workers = workers

    @contextlib.contextmanager
    def _client(self, tasks: int) -> Iterator[Client]:
        if self.address:
            try:
                # Dask's own connect timeout (30 s unless configured): an address that
                # answers nothing is an error, not a hang
                client = Client(self.address)
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad address
                raise ExecutorUnavailable(
                    f"cannot reach the Dask scheduler at {self.address} ({type(exc).__name__}: "
                    f"{exc}); is it running, and is the address right (tcp://HOST:PORT)?"
                ) from exc
            with client:
                yield client
            return
        # one single-threaded worker per core: a shard is one vectorized numpy loop, so
        # threads would only contend for the same core
        cluster = LocalCluster(n_workers=min(self.workers or os.cpu_count() or 1, tasks),
                               threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            yield client

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            time_limit: float | None = None) -> Iterator[tuple[int, Any]]:
        if not tasks:
            return
        token = uuid.uuid4().hex[:12]
        with self._client(len(tasks)) as client:
            cancel = Event(f"benchsuite-cancel-{token}", client=client)
            futures = {client.submit(_run_on_worker, fn, task, time_limit, cancel.name,
                                     key=f"benchsuite-{token}-{i:07d}", pure=False): i
                       for i, task in enumerate(tasks)}
            try:
                for future in as_completed(list(futures)):
                    i = futures.pop(future)
                    outcome = _outcome(future)
                    future.release()  # the result is the campaign's now: free the cluster
                    yield i, outcome
            finally:
                if futures:  # stopped early: nothing may go on computing for nobody
                    with contextlib.suppress(Exception):
                        cancel.set()
                        client.cancel(list(futures), force=True)


def _run_on_worker(fn: Callable[[Any], Any], task: Any, time_limit: float | None,
                   cancel: str) -> Any:
    """A worker's side of one task: run it contained, until done or cancelled."""
    event = Event(cancel)
    with _may_fork():
        return run_contained(fn, task, time_limit, stop=event.is_set)


@contextlib.contextmanager
def _may_fork() -> Iterator[None]:
    """Let this (daemonic) Dask worker start the shard's child process.

    multiprocessing refuses children to daemonic processes so that they are not orphaned at
    exit; ours cannot be: each dies with the thread that forked it (PR_SET_PDEATHSIG, see
    :mod:`benchsuite.execution`), and the worker waits for it or kills it.
    """
    import multiprocessing

    config = multiprocessing.current_process()._config  # private: there is no public switch
    daemon = config.pop("daemon", None)
    try:
        yield
    finally:
        if daemon is not None:
            config["daemon"] = daemon


def _outcome(future: Any) -> Any:
    """A finished future's result, or a :class:`TaskFailure` saying what the cluster did."""
    try:
        return future.result()
    except KilledWorker as exc:
        limit = dask.config.get("distributed.scheduler.allowed-failures", 3)
        return TaskFailure(f"its worker died while running it, {limit + 1} times on different "
                           "workers (killed, out of memory, machine lost?); Dask's "
                           f"distributed.scheduler.allowed-failures is {limit}: {exc}")
    except FutureCancelledError as exc:
        return TaskFailure(f"cancelled on the cluster: {exc}")
    except ImportError as exc:  # the worker cannot even unpickle the task: not our code
        return TaskFailure(f"the worker cannot import what the task needs ({exc}): install "
                           "benchsuite and the same plugins on every worker", refused=True)
    except Exception as exc:
        return TaskFailure(f"the cluster failed the task: {type(exc).__name__}: {exc}")
