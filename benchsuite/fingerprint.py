"""A campaign's fingerprint: everything that changes its results, so a run folder is one campaign.

Two invocations may write into the same run folder only if their fingerprints are equal: the
same cells (problems, and integrators with their hyperparameters, after globs and grids are
expanded), the same initial points (count, seed), shards, budgets, recording and certificate
setting, the same array backend and kind of device (``jax`` on ``gpu``), the same versions of
benchsuite and of every plugin distribution that contributes a cell, and the same source code
of those packages (an editable install changes without a new version).
Anything else (worker count, executor, which GPU of a kind, progress bar, the spelling of a
glob) may change freely.

A key added after run folders were written is left out while it has the value that every older
folder implicitly had (:data:`IMPLIED`): a campaign that does not use it keeps its fingerprint,
and an older folder is still told apart by what really differs (new code, say) rather than by
a key it never had.

Like a lock file of a package manager, the fingerprint is plain JSON kept in the manifest; its
SHA-256 names it in each cell's record, so a cell written under another campaign is caught.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchsuite.backends import DEVICE_KINDS

if TYPE_CHECKING:
    from benchsuite.campaign import Campaign, Cell
    from benchsuite.plugins import Registry

#: Keys added to the fingerprint later, and the value every folder written before them had
#: (see the module docstring): such a key is written only when it differs.
IMPLIED: dict[str, Any] = {"backend": "numpy", "device": "cpu"}


def provenance(registry: Registry, names: list[tuple[str, str]]
               ) -> tuple[dict[str, str | None], dict[str, str]]:
    """The versions of benchsuite and of the plugin distributions that provide ``names``
    (``("problem", name)`` or ``("integrator", name)`` pairs), and the source digests of their
    packages: what must match for two processes to compute the same results."""
    versions = {"benchsuite": _version("benchsuite")}
    packages = {"benchsuite"}
    for kind, name in names:
        origin = registry.source.get((kind, name))
        if origin is not None:
            versions[origin.distribution] = origin.version
            packages.add(origin.module.split(":")[0].split(".")[0])
    # a version number does not change with every edit of an editable install
    code = {p: sha for p in sorted(packages) if (sha := source_digest(p)) is not None}
    return dict(sorted(versions.items())), code


def fingerprint(campaign: Campaign, registry: Registry, cells: list[Cell]) -> dict[str, Any]:
    """The fingerprint of a planned campaign (JSON-serialisable)."""
    versions, code = provenance(registry, [pair for c in cells for pair in (
        ("problem", c.problem.name), ("integrator", c.integrator.name))])
    return {
        "cells": sorted(f"{c.problem.name} x {c.integrator.label}" for c in cells),
        "n_points": campaign.n_points,
        "seed": campaign.seed,
        "budget": asdict(campaign.budget),
        "recording": asdict(campaign.recording),
        "certificates": campaign.certificates,
        # the shards are the files: resuming with another size would mix two layouts (a
        # size of n_points or more is one shard per cell, whatever the number)
        "shard_size": min(campaign.shard_size, campaign.n_points),
        "versions": versions,
        "code": code,
        **_backend(campaign),
    }


def _backend(campaign: Campaign) -> dict[str, str]:
    """The backend's entries: its name and the kind of its device (``gpu`` of ``gpu:1``: the
    arithmetic is the kind's, so a run may be resumed on another GPU), those not implied."""
    device = campaign.device or DEVICE_KINDS.get(campaign.backend, ("cpu",))[0]
    found = {"backend": campaign.backend, "device": device.lower().partition(":")[0]}
    return {key: value for key, value in found.items() if value != IMPLIED[key]}


@functools.cache
def source_digest(package: str) -> str | None:
    """SHA-256 (16 hex digits) of the Python source of an importable top-level package or
    module, or None if it has no source files on disk."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        files = sorted(f for root in spec.submodule_search_locations
                       for f in Path(root).rglob("*.py"))
    elif spec.origin and spec.origin.endswith(".py"):
        files = [Path(spec.origin)]
    else:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16] if files else None


def digest(print_: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of a fingerprint."""
    blob = json.dumps(print_, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def differences(recorded: dict[str, Any], wanted: dict[str, Any], limit: int = 6) -> list[str]:
    """What differs between the folder's fingerprint and this invocation's, one line each."""
    lines = []
    for key in sorted(set(recorded) | set(wanted)):
        old, new = recorded.get(key, IMPLIED.get(key)), wanted.get(key, IMPLIED.get(key))
        if old == new:
            continue
        if key == "cells":
            gone = sorted(set(old or ()) - set(new or ()))
            added = sorted(set(new or ()) - set(old or ()))
            if gone:
                lines.append(f"cells only in the folder: {_some(gone, limit)}")
            if added:
                lines.append(f"cells only in this run: {_some(added, limit)}")
        elif isinstance(old, dict) and isinstance(new, dict):
            lines += [f"{key}.{k}: folder has {old.get(k)!r}, this run {new.get(k)!r}"
                      for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        else:
            lines.append(f"{key}: folder has {old!r}, this run {new!r}")
    return lines


def _some(items: list[str], limit: int) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
