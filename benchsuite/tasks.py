"""Tasks as plain data: what a worker needs to run one cell, by name.

A :class:`Task` names its problem, its integrator and hyperparameters, the seed scheme's
inputs (``n_points``, ``seed``), the budgets, the recording and the certificate setting, and
the versions and source digests of the code that the client planned it with. It is plain,
JSON-able data: it pickles to any process, forked or remote. The worker resolves the names
in *its own* plugin registry (:func:`resolve`), refuses the task if its benchsuite or plugin
code differs from the client's (:class:`TaskRefused`, naming each difference: results would
not be the client's), and regenerates the initial points from the seed (:func:`run_task`), so
they never travel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchsuite.campaign import Campaign, Cell, initial_points
from benchsuite.fingerprint import provenance
from benchsuite.harness import Budget, CellResult, Recording, run_cell
from benchsuite.plugins import Registry, load_registry


class TaskRefused(RuntimeError):
    """A worker cannot run a task as the client planned it (other code, unknown names)."""


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


def make_task(cell: Cell, campaign: Campaign, registry: Registry) -> Task:
    """The task of ``cell`` in ``campaign``, with the provenance of its code in ``registry``."""
    versions, code = provenance(registry, _names(cell.problem.name, cell.integrator.name))
    return Task(problem=cell.problem.name, integrator=cell.integrator.name,
                params=dict(cell.integrator.params), n_points=campaign.n_points,
                seed=campaign.seed, budget=asdict(campaign.budget),
                recording=asdict(campaign.recording), certificates=campaign.certificates,
                versions=versions, code=code)


def resolve(task: Task, registry: Registry) -> Cell:
    """The problem and integrator a task names, from this process's ``registry``.

    Raises
    ------
    TaskRefused
        When a name is unknown here, or the versions or source of benchsuite or of the
        plugins that provide them differ from the client's (each difference is named).
    """
    if task.problem not in registry.problems:
        raise TaskRefused(f"no problem named {task.problem!r} is installed on this worker")
    if task.integrator not in registry.integrators:
        raise TaskRefused(f"no integrator named {task.integrator!r} is installed on this worker")
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
    """Run one task in this process: resolve it, draw its initial points from the seed, run
    the cell (a worker's entry point; raises :class:`TaskRefused` as above)."""
    cell = resolve(task, worker_registry())
    x0 = initial_points(cell.problem, task.n_points, task.seed)
    return run_cell(cell.problem, cell.integrator, x0, Budget(**task.budget),
                    recording=Recording(**task.recording), certificates=task.certificates)


def _names(problem: str, integrator: str) -> list[tuple[str, str]]:
    return [("problem", problem), ("integrator", integrator)]
