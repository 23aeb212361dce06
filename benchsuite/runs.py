"""Run folders at a glance: the runs under a results folder, and the summary of one run.

:func:`list_runs` reads each folder's manifest and counts its cell records against the
manifest's cells: no file is hashed, so listing stays fast on large runs. It catches what can
be seen without hashing (records of cells the campaign does not have, unreadable records,
records written under another campaign, listed files that are gone); ``verify=True`` checks
every checksum too (:func:`~benchsuite.results.verify_run`).

:func:`summarize_run` counts the cells and trajectories of one run folder by state and
outcome: what ``benchsuite run`` prints at its end.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchsuite.results import CELLS, HOLDER, MANIFEST, CampaignMismatch, RunStore, verify_run
from benchsuite.vocabulary import OUTCOMES, Outcome, Stop


@dataclass(frozen=True)
class RunInfo:
    """One run folder, as listed by ``benchsuite runs``."""

    path: Path
    created: str | None
    last_invocation: str | None
    invocations: int
    problems: tuple[str, ...]  # the campaign's globs
    integrators: tuple[str, ...]  # the campaign's specs
    n_problems: int  # distinct problems among the cells
    n_integrators: int  # distinct integrators among the cells
    n_points: int | None
    total: int
    done: int  # finished and intact (as far as checked)
    missing: int
    damaged: int
    verified: bool  # every checksum checked (else: records counted only)
    running: str | None = None  # who holds the folder's lock, when a live process does
    details: tuple[str, ...] = ()  # why cells count as damaged (the first few)
    sort_key: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """``running``, ``damaged``, ``incomplete`` or ``complete``."""
        if self.running:
            return "running"
        if self.damaged:
            return "damaged"
        if self.missing:
            return "incomplete"
        return "complete"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": str(self.path), "status": self.status,
                "created": self.created, "last_invocation": self.last_invocation,
                "invocations": self.invocations,
                "campaign": {"problems": list(self.problems),
                             "integrators": list(self.integrators),
                             "n_points": self.n_points, "n_problems": self.n_problems,
                             "n_integrators": self.n_integrators},
                "cells": {"total": self.total, "done": self.done, "missing": self.missing,
                          "damaged": self.damaged},
                "verified": self.verified, "running": self.running,
                "damage": list(self.details)}


@dataclass(frozen=True)
class NotARun:
    """A folder under the results folder that is not a readable run folder, and why."""

    path: Path
    reason: str

    @property
    def id(self) -> str:
        return self.path.name

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": str(self.path), "reason": self.reason}


def scan_run(path: str | os.PathLike[str], verify: bool = False) -> RunInfo:
    """What a run folder holds; :class:`~benchsuite.results.CampaignMismatch` if it is not
    a run folder (no manifest, or one that cannot be trusted)."""
    path = Path(path)
    manifest = RunStore(path).manifest()
    planned = {c["key"]: c for c in manifest["cells"]}
    details: list[str] = []
    if verify:
        checks = verify_run(path)
        done = sum(c.status == "ok" for c in checks)
        missing = sum(c.status == "missing" for c in checks)
        damaged = sum(c.status == "damaged" for c in checks)
        details = [f"{c.key}: {c.detail}" for c in checks if c.status == "damaged"]
    else:
        store = RunStore(path)
        records = {p.stem for p in (path / CELLS).glob("*.json")}
        details = [f"{key}: a cell record that is not part of this run's campaign"
                   for key in sorted(records - set(planned))]
        checks = [store.check(key, manifest["fingerprint_sha256"], hash_files=False)
                  for key in sorted(records & set(planned))]
        details += [f"{c.key}: {c.detail}" for c in checks if c.status != "ok"]
        done = sum(c.status == "ok" for c in checks)
        damaged = len(details)
        missing = len(planned) - len(checks)
    campaign = manifest.get("campaign", {})
    invocations = manifest.get("invocations") or []
    last = invocations[-1].get("started") if invocations and isinstance(invocations[-1],
                                                                          dict) else None
    try:
        mtime = (path / MANIFEST).stat().st_mtime_ns
    except OSError:
        mtime = 0
    cells = list(planned.values())
    return RunInfo(
        path=path, created=_text(manifest.get("created")), last_invocation=_text(last),
        invocations=len(invocations),
        problems=tuple(map(str, campaign.get("problems") or ())),
        integrators=tuple(map(str, campaign.get("integrators") or ())),
        n_problems=len({c.get("problem") for c in cells}),
        n_integrators=len({c.get("integrator") for c in cells}),
        n_points=campaign.get("n_points") if isinstance(campaign.get("n_points"), int) else None,
        total=len(planned), done=done, missing=missing, damaged=damaged, verified=verify,
        running=writer(path), details=tuple(details[:5]),
        sort_key=(_timestamp(_text(last) or _text(manifest.get("created"))), mtime, path.name))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timestamp(value: str | None) -> float:
    try:
        return datetime.fromisoformat(value).timestamp() if value else 0.0
    except ValueError:
        return 0.0


def writer(path: str | os.PathLike[str]) -> str | None:
    """Who is writing the run folder now (a live process holding its lock, as ``process
    PID since ...``), or None: a report of it covers the cells finished so far."""
    path = Path(path)
    try:
        holder = json.loads((path / HOLDER).read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != platform.node():
        return f"process {pid} on {host} (not checked)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a writer killed without cleaning up: the lock died with it
    except OSError:
        pass  # alive, owned by another user
    return f"process {pid} since {holder.get('since', '?')}"


def list_runs(results_dir: str | os.PathLike[str], verify: bool = False
              ) -> tuple[list[RunInfo], list[NotARun]]:
    """The run folders directly under ``results_dir``, least recently run first (by the
    start of their last invocation), and the folders that are not runs."""
    root = Path(results_dir)
    runs, others = [], []
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return [], []
    for entry in entries:
        try:
            runs.append(scan_run(entry, verify=verify))
        except CampaignMismatch as exc:
            others.append(NotARun(entry, str(exc).splitlines()[0]))
        except OSError as exc:
            others.append(NotARun(entry, f"unreadable: {exc.strerror or exc}"))
    runs.sort(key=lambda r: r.sort_key)
    return runs, others


def latest_run(results_dir: str | os.PathLike[str]) -> RunInfo | None:
    """The run folder under ``results_dir`` whose last invocation started last, or None."""
    runs, _ = list_runs(results_dir)
    return runs[-1] if runs else None


def local_time(stamp: str | None) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` in local time (``-`` when absent)."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp[:16]


@dataclass(frozen=True)
class RunSummary:
    """Cells of one run by state, and its trajectories by outcome."""

    path: Path
    campaign_sha256: str
    total: int
    finished: int  # intact cell records (skipped cells included)
    missing: int
    damaged: int
    skipped: int  # finished cells whose integrator does not apply to the problem
    with_errors: int  # finished cells with at least one trajectory that raised
    trajectories: int
    outcomes: dict[str, int]
    wall_time_cut: int  # trajectories stopped by the wall-time safety net
    skip_reasons: dict[str, int]
    run_now: int | None = None  # set by the caller that ran the campaign
    already_done: int | None = None

    @property
    def undetermined(self) -> int:
        return self.outcomes.get(str(Outcome.UNDETERMINED), 0)

    @property
    def undetermined_share(self) -> float | None:
        return self.undetermined / self.trajectories if self.trajectories else None

    @property
    def intact(self) -> bool:
        """Every cell finished, none damaged, no trajectory raised."""
        return not (self.missing or self.damaged or self.with_errors)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.path), "run_id": self.path.name,
                "campaign_sha256": self.campaign_sha256,
                "cells": {"total": self.total, "finished": self.finished,
                          "run_now": self.run_now, "already_done": self.already_done,
                          "skipped": self.skipped, "with_errors": self.with_errors,
                          "missing": self.missing, "damaged": self.damaged},
                "trajectories": self.trajectories, "outcomes": self.outcomes,
                "undetermined_share": self.undetermined_share,
                "wall_time_cut": self.wall_time_cut, "intact": self.intact}


def summarize_run(path: str | os.PathLike[str], tables: dict[str, pd.DataFrame]) -> RunSummary:
    """Count the cells and trajectories of a run folder, from its manifest and its tables
    (:func:`~benchsuite.results.load_results`)."""
    manifest = RunStore(path).manifest()
    cells = tables["cells"]
    status = Counter(cells["status"]) if len(cells) else Counter()
    traj, skipped = tables["trajectories"], tables["skipped"]
    outcomes: dict[str, int] = {}
    errors = wall = 0
    if len(traj):
        counts = Counter(traj["outcome"].astype(str))
        order = {name: i for i, name in enumerate(OUTCOMES)}
        outcomes = {k: counts[k] for k in sorted(counts, key=lambda k: (order.get(k, 99), k))}
        stop = traj["stop"].astype(str)
        errors = int(traj.loc[stop == Stop.ERROR, ["problem", "integrator"]].astype(str)
                     .drop_duplicates().shape[0])
        wall = int((stop == Stop.WALL_TIME).sum())
    reasons = Counter(skipped["reason"].astype(str)) if "reason" in skipped else Counter()
    return RunSummary(path=Path(path), campaign_sha256=str(manifest["fingerprint_sha256"]),
                      total=len(manifest["cells"]),
                      finished=status.get("ok", 0), missing=status.get("missing", 0),
                      damaged=status.get("damaged", 0), skipped=len(skipped),
                      with_errors=errors, trajectories=len(traj), outcomes=outcomes,
                      wall_time_cut=wall, skip_reasons=dict(reasons))
