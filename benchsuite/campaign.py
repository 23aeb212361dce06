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
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import os
import platform
import re
import subprocess
import sys
import tomllib
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchsuite.execution import Executor, TaskFailure, default_executor
from benchsuite.harness import Budget, CellResult, Recording, failed_result, run_cell
from benchsuite.integrator import Integrator
from benchsuite.observer import Observers
from benchsuite.plugins import Registry
from benchsuite.problem import Problem
from benchsuite.results import RunStore, cell_key

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
    """

    problems: tuple[str, ...] = ("*",)
    integrators: tuple[str, ...] = ("*",)
    n_points: int = 16
    seed: int = 0
    budget: Budget = field(default_factory=lambda: DEFAULT_CAMPAIGN_BUDGET)
    recording: Recording = field(default_factory=Recording)
    certificates: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.n_points <= 10_000_000:
            raise CampaignError(f"n_points must be between 1 and 10^7, got {self.n_points}")
        if self.seed < 0:
            raise CampaignError(f"seed must be >= 0, got {self.seed}")


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


_SECTIONS = {"budget": Budget, "recording": Recording}
_TOP_LEVEL = {"problems", "integrators", "n_points", "seed", "certificates", *_SECTIONS}


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
    return campaign_from_dict(data, source=str(path))


def campaign_from_dict(data: dict[str, Any], source: str = "campaign") -> Campaign:
    """Build and validate a Campaign from parsed TOML data."""
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        raise CampaignError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: "
                            f"{sorted(_TOP_LEVEL)}")
    kwargs: dict[str, Any] = {}
    for key in ("problems", "integrators"):
        if key in data:
            value = data[key]
            if isinstance(value, str):
                value = [value]
            if not (isinstance(value, list | tuple) and value
                    and all(isinstance(v, str) for v in value)):
                raise CampaignError(f"{source}: {key} must be a non-empty list of strings")
            kwargs[key] = tuple(value)
    for key in ("n_points", "seed"):
        if key in data:
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise CampaignError(f"{source}: {key} must be an integer, got {data[key]!r}")
            kwargs[key] = data[key]
    if "certificates" in data:
        if not isinstance(data["certificates"], bool):
            raise CampaignError(f"{source}: certificates must be true or false, got "
                                f"{data['certificates']!r}")
        kwargs["certificates"] = data["certificates"]
    for key, cls in _SECTIONS.items():
        if key in data:
            section = data[key]
            allowed = {f.name for f in fields(cls)}
            if not isinstance(section, dict) or set(section) - allowed:
                raise CampaignError(f"{source}: [{key}] accepts only {sorted(allowed)}")
            try:
                kwargs[key] = cls(**section)
            except (TypeError, ValueError) as exc:
                raise CampaignError(f"{source}: [{key}]: {exc}") from exc
    try:
        return Campaign(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CampaignError(f"{source}: {exc}") from exc


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
    keys = list(params)
    grids = [v if isinstance(v, list) else [v] for v in params.values()]
    return name, [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grids)]


def _unknown(kind: str, pattern: str, known: Sequence[str]) -> CampaignError:
    close = difflib.get_close_matches(pattern, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; 'benchsuite list' shows them"
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
    return [Cell(p, i) for p in problems for i in integrators]


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
    """The seeded initial points of a problem, shape (n_points, n), shared by all integrators."""
    key = zlib.crc32(problem.name.encode())
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, replicate)))
    x0 = np.asarray(problem.sample(rng, n_points), dtype=np.float64)
    if x0.shape != (n_points, problem.n):
        raise CampaignError(f"problem {problem.name}: its sampler returned shape {x0.shape}, "
                            f"expected {(n_points, problem.n)}")
    return x0


def manifest(campaign: Campaign, registry: Registry, cells: list[Cell]) -> dict[str, Any]:
    """Everything needed to reproduce a run: command, campaign, versions, commit, machine."""
    versions = {}
    for lib in ("benchsuite", *KEY_LIBRARIES):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "campaign": asdict(campaign),
        "cells": [{**c.labels, "key": c.key, "params": c.integrator.params} for c in cells],
        "problems": {c.problem.name: c.problem.details() for c in cells},
        "seed_scheme": "SeedSequence(seed, spawn_key=(crc32(problem name), replicate))",
        "versions": versions,
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                     "status": p.status} for p in registry.plugins],
        "git_commit": _git_commit(),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "processor": platform.processor(), "node": platform.node()},
    }


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


def _run_one(task: tuple[Cell, np.ndarray, Campaign]) -> CellResult:
    cell, x0, campaign = task
    return run_cell(cell.problem, cell.integrator, x0, campaign.budget,
                    recording=campaign.recording, certificates=campaign.certificates)


#: Hard time limit of a cell: its wall-time budget (checked between steps) plus this grace.
HARD_LIMIT_FACTOR, HARD_LIMIT_GRACE = 2.0, 60.0


def run_campaign(campaign: Campaign, registry: Registry, run_dir: str | Path,
                 observers: Sequence[Any] = (), executor: Executor | None = None,
                 hard_limit: float | None = None, strict: bool = False) -> RunStore:
    """Run every cell not yet on disk, writing each as it finishes; return the store.

    Running the same campaign into the same folder again resumes it: finished cells are kept
    and skipped. A cell whose worker raises, dies or overruns its hard time limit (default:
    twice the wall-time budget plus a minute) is written as failed trajectories with the
    message, and the campaign goes on; with ``strict``, the campaign stops there instead
    (:class:`CampaignAborted`), that cell written.
    """
    cells = plan(registry, campaign)
    store = RunStore(run_dir)
    store.ensure_writable()
    store.write_manifest(manifest(campaign, registry, cells))
    todo = [c for c in cells if not store.done(c.key)]
    notify = Observers([*registry.observers, *observers]).notify
    notify("campaign_started", campaign, todo)
    points: dict[str, np.ndarray] = {}
    for cell in todo:
        if cell.problem.name not in points:
            points[cell.problem.name] = initial_points(cell.problem, campaign.n_points,
                                                       campaign.seed)
    tasks = [(c, points[c.problem.name], campaign) for c in todo]
    executor = executor or default_executor()
    if hard_limit is None:
        hard_limit = campaign.budget.wall_time * HARD_LIMIT_FACTOR + HARD_LIMIT_GRACE
    for i, result in executor.run(_run_one, tasks, time_limit=hard_limit):
        cell = todo[i]
        if isinstance(result, TaskFailure):
            result = failed_result(cell.problem, tasks[i][1], result.message)
        store.write_cell(cell.key, cell.labels, result)
        for message in result.info.get("warnings", ()):
            origin = registry.source.get(("problem", cell.problem.name))
            who = f"plugin {origin.name} ({origin.distribution})" if origin else "a plugin"
            warnings.warn(f"{who}: {message}", PluginWarning, stacklevel=2)
        notify("cell_finished", cell, result)
        if strict and _first_fault(result) is not None:
            raise CampaignAborted(f"strict mode: {cell.problem.name} x {cell.integrator.label}: "
                                  f"{_first_fault(result)}")
    notify("campaign_finished", store.path)
    return store
