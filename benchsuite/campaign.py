"""Campaigns: which integrators run on which problems, from which seeded initial points.

Every integrator on a problem starts from the same initial points: one
:class:`numpy.random.SeedSequence` per (seed, problem, replicate), keyed by a stable hash of the
problem's name, so adding a problem or an integrator never changes anybody else's points, and a
run is reproduced exactly from its manifest.

Integrators are named by specs: ``euler`` (defaults), ``euler(h=0.1)``, or a grid
``euler(h=[0.1, 0.01])`` (the product over list-valued parameters). The text inside the
parentheses is a TOML inline table, parsed as data (``tomllib``), never evaluated.
"""

from __future__ import annotations

import fnmatch
import itertools
import platform
import re
import subprocess
import sys
import tomllib
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchsuite.harness import Budget, CellResult, Recording, run_cell
from benchsuite.integrator import Integrator
from benchsuite.observer import Observers
from benchsuite.plugins import Registry
from benchsuite.problem import Problem
from benchsuite.results import RunStore, cell_key

_SPEC = re.compile(r"^\s*([A-Za-z0-9_\-.*?\[\]]+)\s*(?:\((.*)\))?\s*$", re.DOTALL)
KEY_LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "pluggy", "array-api-compat")


class CampaignError(ValueError):
    """A campaign that cannot run as written; the message says what to change."""


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
    """

    problems: tuple[str, ...] = ("*",)
    integrators: tuple[str, ...] = ("*",)
    n_points: int = 64
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    recording: Recording = field(default_factory=Recording)

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
    import difflib

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
    """The cells of a campaign: every selected integrator on every selected problem."""
    problems = select_problems(registry, campaign.problems)
    integrators = select_integrators(registry, campaign.integrators)
    return [Cell(p, i) for p in problems for i in integrators]


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


def run_campaign(campaign: Campaign, registry: Registry, run_dir: str | Path,
                 observers: Sequence[Any] = ()) -> RunStore:
    """Run every cell not yet on disk, writing each as it finishes; return the store.

    Running the same campaign into the same folder again resumes it: finished cells are kept
    and skipped.
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
        name = cell.problem.name
        if name not in points:
            points[name] = initial_points(cell.problem, campaign.n_points, campaign.seed)
        result: CellResult = run_cell(cell.problem, cell.integrator, points[name],
                                      campaign.budget, recording=campaign.recording)
        store.write_cell(cell.key, cell.labels, result)
        notify("cell_finished", cell, result)
    notify("campaign_finished", store.path)
    return store
