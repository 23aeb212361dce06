"""Tasks as plain data: what a worker needs to run one shard of a cell, by name.

A cell's ``n_points`` trajectories are split into shards of ``shard_size`` consecutive rows
(the last one shorter): shard ``k`` holds trajectories ``k * shard_size`` up to the next
shard's first. Every shard draws the cell's initial points from the seed exactly as an
unsharded cell does and takes its own rows, so a trajectory starts from the same point
whatever the shard size or the number of workers; it is then integrated and classified on its
own (no quantity couples the rows of a batch), so results agree across shard sizes up to the
rounding of batched linear algebra, and are byte-identical across worker counts.

A :class:`Task` names its problem, its integrator and hyperparameters, its shard, the seed
scheme's inputs (``n_points``, ``seed``), the budgets, the recording, the certificate
setting, the array backend and device, and the versions and source digests of the code that the
client planned it with. It is plain, JSON-able data: it pickles to any process, forked or
remote. The worker resolves the names in *its own* plugin registry (:func:`resolve`), refuses
the task if its benchsuite or plugin code differs from the client's (:class:`TaskRefused`,
naming each difference: results would not be the client's), and regenerates the initial points
from the seed (:func:`run_task`), so they never travel. It resolves the backend in its own
process too (JAX is imported there, in float64), and refuses the task if it cannot run it (not
installed, no such device): that is the worker's lack, not the cell's fault.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from benchsuite import backends
from benchsuite.campaign import Campaign, Cell, initial_points
from benchsuite.execution import TaskRefused
from benchsuite.fingerprint import provenance
from benchsuite.harness import Budget, CellResult, Recording, landscape_grid, run_cell
from benchsuite.plugins import Registry, load_registry

__all__ = ["Task", "TaskRefused", "make_task", "resolve", "run_task", "shard_count",
           "shard_rows"]


@dataclass(frozen=True)
class Task:
    """One cell of a campaign, by name (see the module docstring)."""

    problem: str
    integrator: str
    params: dict[str, Any]
    n_points: int
    seed: int
    budget: dict[str, Any]
    recording: dict[str, Any]
    certificates: bool
    versions: dict[str, str | None] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)
    shard: int = 0
    shard_size: int | None = None  # None: the whole cell is one shard
    #: Set on the task that draws the 2-D landscape of a cell of several shards, once they
    #: are written: ``[lo0, lo1, hi0, hi1]`` (:func:`benchsuite.harness.landscape_frame`).
    landscape: list[float] | None = None
    backend: str = "numpy"
    device: str | None = None  # None: the backend's default
    #: The problem's gradient is JAX's (``Problem.autodiff``): the worker calls into JAX on
    #: every backend.
    autodiff: bool = False

    @property
    def rows(self) -> range:
        """The cell-wide indices of this shard's trajectories."""
        return shard_rows(self.n_points, self.shard_size, self.shard)

    @property
    def uses_jax(self) -> bool:
        """Whether the worker calls into JAX (the jax backend, or an autodiff gradient; a
        landscape is drawn with numpy): the local executor never forks such a worker from a
        process where JAX runs (:mod:`benchsuite.execution`)."""
        return self.landscape is None and (self.backend == "jax" or self.autodiff)


def shard_count(n_points: int, shard_size: int | None) -> int:
    """How many shards a cell of ``n_points`` trajectories has."""
    return 1 if shard_size is None else max(1, -(-n_points // shard_size))


def shard_rows(n_points: int, shard_size: int | None, shard: int) -> range:
    """The cell-wide indices of the trajectories of shard ``shard``."""
    if shard_size is None:
        return range(n_points)
    return range(shard * shard_size, min(n_points, (shard + 1) * shard_size))


#: Why a worker may lack a plugin the client has (said when it refuses a task for it).
_AFRESH = ("a worker that starts afresh, on a cluster or on this machine for a task that calls "
          "into JAX once JAX runs in the client's process, sees the installed plugins (entry "
          "points), not those registered in the client's process only")


def make_task(cell: Cell, campaign: Campaign, registry: Registry, shard: int = 0) -> Task:
    """The task of shard ``shard`` of ``cell`` in ``campaign``, with the provenance of its
    code in ``registry``."""
    versions, code = provenance(registry, _names(cell.problem.name, cell.integrator.name))
    return Task(problem=cell.problem.name, integrator=cell.integrator.name,
                params=dict(cell.integrator.params), n_points=campaign.n_points,
                seed=campaign.seed, budget=asdict(campaign.budget),
                recording=asdict(campaign.recording), certificates=campaign.certificates,
                versions=versions, code=code, shard=shard, shard_size=campaign.shard_size,
                backend=campaign.backend, device=campaign.device,
                autodiff=cell.problem.autodiff)


def resolve(task: Task, registry: Registry) -> Cell:
    """The problem and integrator a task names, from this process's ``registry``.

    Raises
    ------
    TaskRefused
        When a name is unknown here, or the versions or source of benchsuite or of the
        plugins that provide them differ from the client's (each difference is named).
    """
    for kind, name, known in (("problem", task.problem, registry.problems),
                              ("integrator", task.integrator, registry.integrators)):
        if name not in known:
            raise TaskRefused(f"no {kind} named {name!r} is installed on this worker ({_AFRESH})")
    versions, code = provenance(registry, _names(task.problem, task.integrator))
    differ = [f"{what} {key}: client {mine.get(key)!r}, worker {theirs.get(key)!r}"
              for what, mine, theirs in (("version of", task.versions, versions),
                                         ("source of", task.code, code))
              for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
    if differ:
        raise TaskRefused("this worker's code differs from the client's, so its results would "
                          "not be the campaign's: " + "; ".join(differ)
                          + " (install the same versions on every worker)")
    integrator = registry.integrators[task.integrator].with_params(**task.params)
    return Cell(registry.problems[task.problem], integrator)


_REGISTRY: Registry | None = None


def provide_registry(registry: Registry) -> None:
    """Let workers forked from here resolve tasks in ``registry`` (no reload per worker);
    a process that was not given one loads its installed plugins on first use."""
    global _REGISTRY
    _REGISTRY = registry


def worker_registry() -> Registry:
    """The registry this process resolves tasks in."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry(strict=False)
    return _REGISTRY


def run_task(task: Task) -> CellResult:
    """Run one task in this process: resolve it, draw the cell's initial points from the seed,
    run the shard's rows (a worker's entry point; raises :class:`TaskRefused` as above).

    A cell of one shard draws its 2-D landscape too; a cell of several gets a task of its own
    for it (``task.landscape``, the frame), once every shard is written, so that the picture
    frames all its points whatever the shard size (drawn with numpy, on every backend).

    The result's ``info["backend"]`` says what ran it (:meth:`Backend.describe`, as this
    worker found it): the run folder records it as the cell's provenance."""
    cell = resolve(task, worker_registry())
    if task.landscape is not None:
        start = time.perf_counter()
        grid, why = landscape_grid(cell.problem, task.landscape, task.budget["wall_time"])
        return CellResult(pd.DataFrame(), pd.DataFrame(), wall_time=time.perf_counter() - start,
                          info={"landscape": why} if why else {}, landscape=grid)
    try:
        backend = backends.resolve(task.backend, task.device)
    except backends.BackendError as exc:
        raise TaskRefused(f"this worker cannot run the campaign's backend: {exc}") from None
    x0 = initial_points(cell.problem, task.n_points, task.seed)
    rows = task.rows
    result = run_cell(cell.problem, cell.integrator, x0[rows.start:rows.stop],
                      Budget(**task.budget), recording=Recording(**task.recording),
                      backend=backend, certificates=task.certificates, first=rows.start,
                      draw_landscape=shard_count(task.n_points, task.shard_size) == 1)
    result.info["backend"] = backend.describe()
    return result


def _names(problem: str, integrator: str) -> list[tuple[str, str]]:
    return [("problem", problem), ("integrator", integrator)]
