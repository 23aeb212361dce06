"""Campaigns: which integrators run on which problems, from which seeded initial points.

Every integrator on a problem starts from the same initial points: one
:class:`numpy.random.SeedSequence` per (seed, problem, replicate), keyed by a stable hash of the
problem's name, so adding a problem or an integrator never changes anybody else's points, and a
run is reproduced exactly from its manifest.

Integrators are named by specs: ``euler`` (defaults), ``euler(h=0.1)``, or a grid
``euler(h=[0.1, 0.01])`` (the product over list-valued parameters). The text inside the
parentheses is a TOML inline table, parsed as data (``tomllib``), never evaluated.

A campaign file is TOML too::

    problems = ["mc2x2_example1"]
    integrators = ["euler(h=0.01)", "rk45", "proximal(tau=0.1)"]
    n_points = 4000
    seed = 0

    [budget]            # any of t_max, max_steps, max_evals, wall_time, extend
    t_max = 200.0

    [recording]         # per_octave, t_min
    per_octave = 2

Top-level keys also choose where shards run (``executor``) and the array library that runs
their trajectories, on which device (``backend = "jax"``, ``device = "gpu"``: see
:mod:`benchsuite.backends`).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import itertools
import math
import os
import platform
import re
import subprocess
import sys
import tomllib
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchsuite.backends import Backend, BackendError
from benchsuite.backends import resolve as resolve_backend
from benchsuite.backends import skip_reason as backend_skip_reason
from benchsuite.execution import (
    Executor,
    TaskFailure,
    TaskRefused,
    default_executor,
    run_contained,
)
from benchsuite.fingerprint import fingerprint
from benchsuite.harness import Budget, CellResult, Recording, failed_result, landscape_frame
from benchsuite.integrator import Integrator
from benchsuite.observer import Observers
from benchsuite.plugins import Registry
from benchsuite.problem import Problem
from benchsuite.results import CellWriteError, DamagedCellWarning, RunStore, cell_key
from benchsuite.schema import (
    DEFAULT_SHARD_SIZE,
    CampaignSchema,
    SchemaError,
    validate_campaign,
)

_SPEC = re.compile(r"^\s*([A-Za-z0-9_\-.*?\[\]]+)\s*(?:\((.*)\))?\s*$", re.DOTALL)
KEY_LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "pluggy", "array-api-compat")


#: The default campaign (every problem, every integrator) runs in a few minutes on a laptop,
#: on deterministic budgets only: its slowest cell takes about a quarter of the wall-time
#: safety net on an idle 2-core machine.
DEFAULT_CAMPAIGN_BUDGET = Budget(t_max=20.0, max_steps=10_000, wall_time=600.0)


class CampaignError(ValueError):
    """A campaign that cannot run as written; the message says what to change."""


class PluginWarning(UserWarning):
    """A plugin misbehaved at run time (a certificate with an unknown label, say); the
    message names the plugin and its distribution."""


class CampaignAborted(RuntimeError):
    """Strict mode stopped the campaign at its first fault (after writing that cell)."""


#: A cell holds its batch and a few dozen working copies of it; refuse campaigns whose largest
#: cell could not fit in this share of the machine's memory.
WORKING_COPIES = 40
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Campaign:
    """What to run.

    Parameters
    ----------
    problems : sequence of str
        Problem name globs (``"*"`` for all).
    integrators : sequence of str
        Integrator specs (see the module docstring); names may be globs.
    n_points : int
        Initial points (trajectories) per problem.
    seed : int
        Root seed of the initial points.
    budget : Budget
    recording : Recording
    certificates : bool
        Let problems' certificates decide where they speak; False classifies with the
        generic rules only (``--no-certificates``).
    shard_size : int
        Trajectories per shard: a cell of ``n_points`` trajectories runs as
        ``ceil(n_points / shard_size)`` independent tasks, each written (and resumed) on its
        own. Results do not depend on it beyond rounding (1e-12), nor on where shards run.
    executor : str
        Where shards run: ``local`` (forked processes on this machine), ``dask`` (a Dask
        cluster), or an executor a plugin adds (``benchsuite plugins`` lists them). Not part
        of the fingerprint: a run may be resumed on another executor.
    backend : str
        The array library that runs the trajectories: ``numpy`` (the default), ``jax`` (a
        compiled loop), or another of :data:`benchsuite.backends.BACKENDS`. Part of the
        fingerprint; cells of numpy-only plugins are skipped on any other backend.
    device : str or None
        Where the backend computes: ``cpu``, ``gpu``, ``gpu:1``, ``cuda`` (torch), ...; None
        is the backend's default (``cpu``; ``gpu`` for cupy). Its kind (``gpu``, not the
        index) is part of the fingerprint: a run may be resumed on another GPU.
    """

    problems: tuple[str, ...] = ("*",)
    integrators: tuple[str, ...] = ("*",)
    n_points: int = 16
    seed: int = 0
    budget: Budget = field(default_factory=lambda: DEFAULT_CAMPAIGN_BUDGET)
    recording: Recording = field(default_factory=Recording)
    certificates: bool = True
    shard_size: int = DEFAULT_SHARD_SIZE
    executor: str = "local"
    backend: str = "numpy"
    device: str | None = None

    def __post_init__(self) -> None:
        # Every way of building a campaign (a file, Python, the command line through
        # dataclasses.replace) goes through the same schema; values come back normalized
        # (tuples of names, Python scalars, floats where floats are due).
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("budget", "recording"):
            if is_dataclass(data[key]) and not isinstance(data[key], type):
                data[key] = asdict(data[key])
        try:
            valid = validate_campaign(data)
        except SchemaError as exc:
            raise CampaignError(f"campaign: {exc}") from exc
        for key, value in _runtime_fields(valid).items():
            object.__setattr__(self, key, value)


def _runtime_fields(valid: CampaignSchema) -> dict[str, Any]:
    """A validated campaign as Campaign's fields (Budget and Recording as runtime objects)."""
    values = {f.name: getattr(valid, f.name) for f in fields(Campaign)}
    values["budget"] = Budget(**valid.budget.model_dump())
    values["recording"] = Recording(**valid.recording.model_dump())
    return values


@dataclass(frozen=True)
class Cell:
    """One (problem, integrator) pair of a campaign."""

    problem: Problem
    integrator: Integrator

    @property
    def key(self) -> str:
        return cell_key(self.problem.name, self.integrator.label)

    @property
    def labels(self) -> dict[str, Any]:
        return {"problem": self.problem.name, "integrator": self.integrator.label,
                "method": self.integrator.name}


PACKAGED = Path(__file__).parent / "campaigns"


def packaged_campaigns() -> list[str]:
    """Names of the campaign files shipped with benchsuite (``--campaign NAME``)."""
    return sorted(p.stem for p in PACKAGED.glob("*.toml"))


def load_campaign(path: str | Path) -> Campaign:
    """Read a campaign file (TOML, data only); errors name the file, and the line if TOML does.

    ``path`` may also be the name of a packaged campaign (see :func:`packaged_campaigns`).
    """
    path = Path(path)
    if not path.exists() and (PACKAGED / f"{path.name}.toml").exists():
        path = PACKAGED / f"{path.name}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CampaignError(f"cannot read campaign file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: not valid TOML: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise CampaignError(f"{path}: nested too deeply (or too large) to read: a campaign "
                            "file holds only flat lists and two tables") from exc
    return campaign_from_dict(data, source=str(path))


def campaign_from_dict(data: dict[str, Any], source: str = "campaign") -> Campaign:
    """Build and validate a Campaign from parsed TOML data (or a manifest's ``campaign``).

    The schema (:mod:`benchsuite.schema`) checks every key; errors start with ``source``.
    """
    try:
        valid = validate_campaign(data)
    except SchemaError as exc:
        raise CampaignError(f"{source}: {exc}") from exc
    return Campaign(**_runtime_fields(valid))


#: The most combinations one integrator spec may expand to (checked before any is built).
MAX_GRID = 100_000


def parse_spec(spec: str) -> tuple[str, list[dict[str, Any]]]:
    """``"euler(h=[0.1, 0.01])"`` -> ``("euler", [{"h": 0.1}, {"h": 0.01}])``."""
    match = _SPEC.match(spec)
    if match is None:
        raise CampaignError(f"cannot read integrator spec {spec!r}: write NAME or "
                            "NAME(key=value, key=[v1, v2])")
    name, inside = match.group(1), match.group(2)
    if not inside or not inside.strip():
        return name, [{}]
    try:
        params = tomllib.loads(f"p = {{{inside}}}")["p"]
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"cannot read the parameters of {spec!r}: {exc}; write them as "
                            "key = value pairs separated by commas") from exc
    except (RecursionError, MemoryError) as exc:
        shown = repr(spec if len(spec) <= 60 else spec[:57] + "...")
        raise CampaignError(f"cannot read the parameters of {shown}: nested too deeply (or too "
                            "large); write key = value or key = [v1, v2]") from exc
    keys = list(params)
    grids = [v if isinstance(v, list) else [v] for v in params.values()]
    empty = [k for k, grid in zip(keys, grids, strict=True) if not grid]
    if empty:
        raise CampaignError(f"integrator spec {spec!r}: the grid of {empty[0]} is empty; give "
                            "at least one value")
    size = math.prod(len(grid) for grid in grids)
    if size > MAX_GRID:
        raise CampaignError(f"integrator spec {spec!r} is a grid of {size} combinations, more "
                            f"than {MAX_GRID}: split it, or use fewer values")
    return name, [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grids)]


def _unknown(kind: str, pattern: str, known: Sequence[str]) -> CampaignError:
    close = difflib.get_close_matches(pattern, known, n=3, cutoff=0.5)
    lister = "plugins" if kind == "executor" else "list"
    hint = f"; did you mean {', '.join(close)}?" if close else f"; 'benchsuite {lister}' shows them"
    return CampaignError(f"no {kind} matches {pattern!r}{hint}")


def select_problems(registry: Registry, patterns: Sequence[str]) -> list[Problem]:
    """Problems matching any of the glob patterns, in name order."""
    names = list(registry.problems)
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise _unknown("problem", pattern, names)
        chosen += [h for h in hits if h not in chosen]
    return [registry.problems[n] for n in sorted(chosen)]


def select_integrators(registry: Registry, specs: Sequence[str]) -> list[Integrator]:
    """Integrator instances for the specs (globs expand; grids multiply)."""
    names = list(registry.integrators)
    chosen: dict[str, Integrator] = {}
    for spec in specs:
        pattern, grid = parse_spec(spec)
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise _unknown("integrator", pattern, names)
        for name in hits:
            for params in grid:
                try:
                    integrator = registry.integrators[name].with_params(**params)
                except (TypeError, ValueError) as exc:
                    raise CampaignError(f"integrator spec {spec!r}: {exc}") from exc
                chosen.setdefault(integrator.label, integrator)
    return list(chosen.values())


def plan(registry: Registry, campaign: Campaign) -> list[Cell]:
    """The cells of a campaign: every selected integrator on every selected problem.

    Raises CampaignError before any work starts if a name is unknown or a cell is too big.
    """
    problems = select_problems(registry, campaign.problems)
    integrators = select_integrators(registry, campaign.integrators)
    _check_memory(problems, campaign.n_points)
    cells = [Cell(p, i) for p in problems for i in integrators]
    if not cells:
        raise CampaignError("the campaign has no cells; check the problem globs and "
                            "integrator specs")
    seen: dict[str, Cell] = {}
    for cell in cells:  # two cells in one file would lose one of them
        other = seen.setdefault(cell.key, cell)
        if other is not cell:
            raise CampaignError(f"cells {other.problem.name} x {other.integrator.label} and "
                                f"{cell.problem.name} x {cell.integrator.label} would share "
                                f"the file name {cell.key}; rename one of the problems")
    return cells


def _check_memory(problems: Sequence[Problem], n_points: int) -> None:
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    for p in problems:
        need = n_points * p.n * 8 * WORKING_COPIES
        if need > MEMORY_SHARE * available:
            most = int(MEMORY_SHARE * available / (p.n * 8 * WORKING_COPIES))
            raise CampaignError(
                f"{n_points} points of {p.name} (dimension {p.n}) need about "
                f"{need / 2**30:.0f} GiB, more than half of this machine's "
                f"{available / 2**30:.0f} GiB; use at most about {most} points (-n)")


def initial_points(problem: Problem, n_points: int, seed: int, replicate: int = 0) -> np.ndarray:
    """The seeded initial points of a problem, shape (n_points, n), shared by all integrators.

    A sampler that raises, or returns the wrong shape or a non-real dtype, is reported as a
    :class:`CampaignError` naming the problem (its cells fail; the campaign goes on).
    """
    key = zlib.crc32(problem.name.encode())
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, replicate)))
    try:
        drawn = problem.sample(rng, n_points)
    except Exception as exc:
        raise CampaignError(f"problem {problem.name}: its sampler raised "
                            f"{type(exc).__name__}: {exc}") from exc
    kind = np.asarray(drawn).dtype.kind
    if kind not in "iuf":
        raise CampaignError(f"problem {problem.name}: its sampler returned dtype "
                            f"{np.asarray(drawn).dtype}; initial points must be real numbers")
    x0 = np.asarray(drawn, dtype=np.float64)
    if x0.shape != (n_points, problem.n):
        raise CampaignError(f"problem {problem.name}: its sampler returned shape {x0.shape}, "
                            f"expected {(n_points, problem.n)}")
    return x0


def manifest(campaign: Campaign, cells: list[Cell]) -> dict[str, Any]:
    """The part of a run's manifest fixed by its campaign: what runs, from which points."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "campaign": asdict(campaign),
        "cells": [{**c.labels, "key": c.key, "params": c.integrator.params,
                   "defaults": c.integrator.defaults} for c in cells],
        "problems": {c.problem.name: c.problem.details() for c in cells},
        "seed_scheme": "SeedSequence(seed, spawn_key=(crc32(problem name), replicate))",
    }


def invocation(registry: Registry, backend: dict[str, str] | None = None) -> dict[str, Any]:
    """One invocation of a run (appended to its manifest): command, versions, commit, machine,
    and the array ``backend`` as this machine has it (:func:`check_backend`)."""
    versions = {}
    for lib in ("benchsuite", *KEY_LIBRARIES):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "versions": versions,
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                     "status": p.status} for p in registry.plugins],
        "git_commit": _git_commit(),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "processor": platform.processor(), "node": platform.node()},
        "backend": backend,
    }


#: Seconds the backend probe may take (importing JAX and finding its devices takes about one).
BACKEND_PROBE_LIMIT = 120.0


def check_backend(name: str, device: str | None = None) -> dict[str, str]:
    """What runs a campaign's arithmetic on this machine (:meth:`Backend.describe`), checked
    before any work.

    numpy is resolved in this process. Any other library is resolved in a child process
    (:func:`~benchsuite.execution.run_contained`) that reports what it found and exits: this
    process need not start it (nor switch JAX to float64 here), and a library that crashes
    while starting costs the child only. Each worker resolves the backend itself.

    Parameters
    ----------
    name : str
        A backend of :data:`benchsuite.backends.BACKENDS`.
    device : str or None
        ``cpu``, ``gpu``, ``gpu:1``, ...; None for the backend's default.

    Returns
    -------
    dict
        ``{"backend", "device", "version"}``, and ``"platform"`` where the library says
        which hardware it found (JAX, torch on CUDA).

    Raises
    ------
    BackendError
        As :func:`benchsuite.backends.resolve`: an unknown name, a library that is not
        installed (with the pip command), a device this machine does not have (with those
        it has); or a library that crashed while starting.
    """
    return dict(_checked_backend(name, device))


@functools.cache  # once per process: a run checks before the CLI's check and its own
def _checked_backend(name: str, device: str | None) -> tuple[tuple[str, str], ...]:
    if name == "numpy":
        return tuple(resolve_backend(name, device).describe().items())
    outcome = run_contained(_probe_backend, (name, device), time_limit=BACKEND_PROBE_LIMIT)
    if isinstance(outcome, TaskFailure):
        if outcome.refused:  # the probe's BackendError, as resolve worded it
            raise BackendError(outcome.message)
        raise BackendError(f"backend {name} failed to start on this machine: "
                           f"{outcome.message.splitlines()[0]}")
    return tuple(outcome.items())


def _probe_backend(spec: tuple[str, str | None]) -> dict[str, str]:
    """Resolve and describe a backend (in the probe's child process)."""
    try:
        return resolve_backend(*spec).describe()
    except BackendError as exc:  # a refusal travels back as its message alone
        raise TaskRefused(str(exc)) from None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _first_fault(result: CellResult) -> str | None:
    """The message of the first trajectory that raised, if any."""
    traj = result.trajectories
    if result.skipped is not None or traj.empty:
        return None
    errors = traj[traj["stop"] == "error"]
    return None if errors.empty else str(errors["message"].iloc[0])


#: A cell is killed at twice its wall-time safety net plus a grace (see :func:`hard_limit_for`).
HARD_LIMIT_FACTOR, HARD_LIMIT_GRACE = 2.0, 60.0


def hard_limit_for(budget: Budget) -> float:
    """Hard time limit of a cell: twice its wall-time safety net (checked between steps) plus
    a grace of a minute, or of the net itself when that is shorter."""
    return budget.wall_time * HARD_LIMIT_FACTOR + min(HARD_LIMIT_GRACE, budget.wall_time)


def run_campaign(campaign: Campaign, registry: Registry, run_dir: str | Path,
                 observers: Sequence[Any] = (), executor: Executor | None = None,
                 hard_limit: float | None = None, strict: bool = False,
                 wait: bool = False) -> RunStore:
    """Run every cell not yet on disk, writing each as it finishes; return the store.

    The campaign's backend is checked first (:func:`check_backend`; a
    :class:`~benchsuite.backends.BackendError` before the folder is created). The folder is
    locked for the whole run (:class:`~benchsuite.results.FolderBusy` if another
    process holds it, unless ``wait``) and bound to this campaign's fingerprint
    (:class:`~benchsuite.results.CampaignMismatch` before any work if it holds another one).
    Running the same campaign into the same folder again resumes it: intact finished cells
    are kept; damaged ones are moved aside (with a :class:`DamagedCellWarning`) and
    recomputed. A cell whose worker raises, dies, overruns its hard time limit (default:
    :func:`hard_limit_for`) or returns tables that do not fit the schema is written as failed
    trajectories with the message, and the campaign goes on; with ``strict``, the campaign
    stops there instead (:class:`CampaignAborted`), that cell written.
    """
    # before the folder is created: a backend this machine cannot run writes nothing
    backend = check_backend(campaign.backend, campaign.device)
    cells = plan(registry, campaign)
    store = RunStore(run_dir)
    with store.lock(wait=wait):
        store.open(fingerprint(campaign, registry, cells), manifest(campaign, cells),
                   invocation(registry, backend))
        for key in store.strays({c.key for c in cells}):
            where = store.quarantine(key, "a cell record that is not part of the campaign")
            warnings.warn(f"a stray cell record {key} was moved to {where}",
                          DamagedCellWarning, stacklevel=2)
        todo = _unfinished(cells, store)
        _run_cells(todo, campaign, registry, store, observers, executor, hard_limit, strict)
    return store


def _unfinished(cells: list[Cell], store: RunStore) -> list[tuple[Cell, list[int]]]:
    """The cells still to run, each with its shards still to run; damaged cells and shards
    are moved aside (and said so), a cell whose shards are all written is finished."""
    todo = []
    count = store.shard_count()
    for cell in cells:
        check = store.check(cell.key)
        if check.status == "damaged":
            where = store.quarantine(cell.key, check.detail)
            warnings.warn(f"cell {cell.problem.name} x {cell.integrator.label} is damaged "
                          f"({check.detail}): moved to {where} and recomputed",
                          DamagedCellWarning, stacklevel=3)
        if check.status == "ok":
            continue
        if count == 1:
            todo.append((cell, [0]))
            continue
        shards = []
        for shard in range(count):  # (a damaged cell's shards went aside with it)
            found = store.check_shard(cell.key, shard)
            if found.status == "damaged":
                where = store.quarantine(cell.key, found.detail, shard=shard)
                warnings.warn(f"shard {shard} of {cell.problem.name} x {cell.integrator.label}"
                              f" is damaged ({found.detail}): moved to {where} and recomputed",
                              DamagedCellWarning, stacklevel=3)
            if found.status != "ok":
                shards.append(shard)
        if shards or _draws_landscape(cell, store):  # (none: a landscape still to draw)
            todo.append((cell, shards))
        else:  # killed between its last shard and its record
            store.finish_cell(cell.key, cell.labels)
    return todo


def _draws_landscape(cell: Cell, store: RunStore) -> bool:
    """Whether the cell's 2-D landscape is drawn once its shards are written (it has
    several), rather than by the cell itself."""
    return cell.problem.n == 2 and store.shard_count() > 1


def make_executor(registry: Registry, name: str, workers: int | None = None,
                  address: str | None = None) -> Executor:
    """The executor ``name`` from the installed executor plugins.

    Raises
    ------
    CampaignError
        When no plugin provides ``name``, or it cannot be built as asked (the message says
        what to do).
    """
    plugin = registry.executors.get(name)
    if plugin is None and name == "local":  # a registry built by hand still runs here
        return default_executor(workers)
    if plugin is None:
        raise _unknown("executor", name, list(registry.executors))
    try:
        return plugin.create(workers=workers, address=address)
    except ValueError as exc:
        raise CampaignError(f"executor {name}: {exc}") from exc


class WorkersRefused(RuntimeError):
    """A worker refused a task: its code differs from the client's (or cannot import it)."""


def _run_cells(todo, campaign, registry, store, observers, executor, hard_limit, strict) -> None:
    notify = Observers([*registry.observers, *observers]).notify
    notify("campaign_started", campaign, [cell for cell, _ in todo])
    if hard_limit is None:
        hard_limit = hard_limit_for(campaign.budget)
    # tasks are plain data, resolved and seeded in the worker: a sampler that raises, hangs
    # or crashes fails its shard only, and the parent never holds every problem's points
    from benchsuite.tasks import make_task, provide_registry, run_task  # builds on this module

    provide_registry(registry)  # forked workers inherit it instead of loading the plugins
    pieces, left, skipped, drawing = [], {}, [], []
    for cell, shards in todo:
        if not shards:  # every shard written by an earlier run: the landscape is left
            drawing.append((cell, None))
            continue
        reason = _skip_reason(cell, campaign.backend) if len(shards) > 1 else None
        if reason is not None:  # known here: no need to ship every shard to learn it
            skipped.append((cell, reason))
            continue
        pieces += [(cell, shard) for shard in shards]
        left[cell.key] = len(shards)
    notify("shards_planned", len(pieces) + len(skipped))
    for cell, reason in skipped:
        _finish_skipped(store, cell, reason, notify)
    if executor is None and (pieces or drawing):
        executor = make_executor(registry, campaign.executor)
    tasks = [make_task(cell, campaign, registry, shard) for cell, shard in pieces]
    outcomes = _outcomes(executor, run_task, tasks, hard_limit)
    try:
        for i, result in outcomes:
            cell, shard = pieces[i]
            if cell.key not in left:  # a skipped cell, written whole already
                continue
            if isinstance(result, TaskFailure):
                if result.refused:  # the cluster's fault, not the cell's: record nothing
                    raise WorkersRefused(f"a worker refused {cell.problem.name} x "
                                         f"{cell.integrator.label}: {result.message}")
                result = _failed(cell, campaign, shard, result.message)
            if result.skipped is not None and store.shard_count() > 1:
                _finish_skipped(store, cell, result.skipped, notify, shard)
                del left[cell.key]
                continue
            try:
                store.write_shard(cell.key, cell.labels, shard, result)
            except CellWriteError as exc:
                result = _failed(cell, campaign, shard, str(exc))
                store.write_shard(cell.key, cell.labels, shard, result)
            for message in result.info.get("warnings", ()):
                origin = registry.source.get(("problem", cell.problem.name))
                who = f"plugin {origin.name} ({origin.distribution})" if origin else "a plugin"
                warnings.warn(f"{who}: {message}", PluginWarning, stacklevel=3)
            notify("shard_finished", cell, shard, result)
            left[cell.key] -= 1
            if not left[cell.key]:
                del left[cell.key]
                if _draws_landscape(cell, store):
                    drawing.append((cell, result))
                else:
                    store.finish_cell(cell.key, cell.labels)
                    notify("cell_finished", cell, result)
            if strict and _first_fault(result) is not None:
                raise CampaignAborted(f"strict mode: {cell.problem.name} x "
                                      f"{cell.integrator.label}: {_first_fault(result)}")
    finally:  # stop every engine's workers now, not when the generator is collected
        outcomes.close()
    if drawing:
        _draw_landscapes(drawing, campaign, registry, store, executor, hard_limit, notify)
    notify("campaign_finished", store.path)


def _outcomes(executor: Executor | None, fn: Any, tasks: list[Any], hard_limit: float
              ) -> Iterator[tuple[int, Any]]:
    """``executor.run`` over ``tasks`` (none: nothing, and no executor needed); closing it
    closes the executor's run, which stops its workers."""
    if tasks:
        yield from executor.run(fn, tasks, time_limit=hard_limit)


def _draw_landscapes(drawing, campaign, registry, store, executor, hard_limit, notify) -> None:
    """The landscapes of 2-D cells of several shards, framing every point their shards wrote
    (as a cell of one shard does its own: the picture never depends on the shard size); then
    the cells are finished."""
    from benchsuite.tasks import make_task, run_task

    tasks, owners = [], []
    for cell, last in drawing:
        frame = landscape_frame(store.shard_points(cell.key))
        if frame is None:
            empty = CellResult(pd.DataFrame(), pd.DataFrame(),
                               info={"landscape": "no finite point to frame the landscape"})
            _finish_drawn(store, cell, last, store.write_landscape(cell.key, cell.labels, empty),
                          notify)
            continue
        tasks.append(replace(make_task(cell, campaign, registry), landscape=frame))
        owners.append((cell, last))
    outcomes = _outcomes(executor, run_task, tasks, hard_limit)
    try:
        for i, result in outcomes:
            cell, last = owners[i]
            if isinstance(result, TaskFailure):
                if result.refused:
                    raise WorkersRefused(f"a worker refused the landscape of "
                                         f"{cell.problem.name}: {result.message}")
                result = CellResult(pd.DataFrame(), pd.DataFrame(), info={
                    "landscape": f"not recorded: {result.message.splitlines()[0]}"})
            _finish_drawn(store, cell, last,
                          store.write_landscape(cell.key, cell.labels, result), notify)
    finally:
        outcomes.close()


def _finish_drawn(store, cell, last, files, notify) -> None:
    store.finish_cell(cell.key, cell.labels, files)
    if last is not None:  # (a cell whose shards an earlier run wrote: nothing run now)
        notify("cell_finished", cell, last)


def _skip_reason(cell: Cell, backend: str) -> str | None:
    """Why the cell is skipped as :func:`~benchsuite.harness.run_cell` would skip it: numpy-only
    code on another ``backend``, or an integrator that does not apply (None: it runs, or
    skip() raised: the workers will report that)."""
    on = Backend(name=backend, device="cpu", compiled=False)  # only its name matters here
    try:
        return (backend_skip_reason(on, cell.problem) or backend_skip_reason(on, cell.integrator)
                or cell.integrator.skip(cell.problem))
    except Exception:
        return None


def _finish_skipped(store: RunStore, cell: Cell, reason: str, notify: Any, shard: int = 0
                    ) -> None:
    """Write a cell whose integrator does not apply, whole (one piece of progress)."""
    result = CellResult(pd.DataFrame(), pd.DataFrame(), skipped=reason)
    store.write_cell(cell.key, cell.labels, result)
    notify("shard_finished", cell, shard, result)
    notify("cell_finished", cell, result)


def _failed(cell: Cell, campaign: Campaign, shard: int, message: str) -> CellResult:
    """A failed shard's rows; its initial points are unknown here (the worker drew them)."""
    from benchsuite.tasks import shard_rows

    rows = shard_rows(campaign.n_points, campaign.shard_size, shard)
    return failed_result(cell.problem, np.full((len(rows), cell.problem.n), np.nan), message,
                         first=rows.start)
