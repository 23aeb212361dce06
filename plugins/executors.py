"""benchsuite's own executors, registered through the ``benchsuite_executors`` hook like any
third-party one (a Ray or SLURM executor is a plugin of the same shape).

* ``local``: forked processes on this machine (:class:`benchsuite.execution.ForkExecutor`).
* ``dask``: a Dask distributed cluster (:mod:`benchsuite_plugins.dask_executor`); needs
  ``pip install 'benchsuite[dask]'``.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchsuite import hookimpl
from benchsuite.execution import Executor, default_executor


@dataclass(frozen=True)
class LocalExecutors:
    """Forked worker processes on this machine, one per core by default."""

    name: str = "local"
    description: str = "forked processes on this machine (-j workers, default one per core)"

    def create(self, *, workers: int | None = None, address: str | None = None) -> Executor:
        if address is not None:
            raise ValueError("the local executor runs on this machine and takes no scheduler "
                             "address; use --executor dask for a cluster")
        return default_executor(workers)


@dataclass(frozen=True)
class DaskExecutors:
    """A Dask distributed cluster: an existing one, or a local one started for the run."""

    name: str = "dask"
    description: str = ("a Dask cluster: --scheduler ADDRESS (or Dask's scheduler-address "
                        "setting), else a local cluster of -j workers")

    def create(self, *, workers: int | None = None, address: str | None = None) -> Executor:
        try:
            from benchsuite_plugins.dask_executor import DaskExecutor
        except ImportError as exc:
            raise ValueError(f"the dask executor needs Dask distributed ({exc}): pip install "
                             "'benchsuite[dask]'") from exc
        return DaskExecutor(address=address, workers=workers)


@hookimpl
def benchsuite_executors() -> list[object]:
    return [LocalExecutors(), DaskExecutors()]
