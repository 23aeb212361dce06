"""Results on disk: ``results/<run-id>/`` with a manifest and per-cell parquet tables.

Layout::

    results/<run-id>/
        manifest.json                  command, campaign, seeds, versions, git commit, machine
        trajectories/<cell>.parquet    one row per trajectory
        checkpoints/<cell>.parquet     long form, one row per trajectory and checkpoint
        skipped/<cell>.json            cells whose integrator does not apply, with the reason
        timings/<cell>.json            wall time of each cell (kept out of the tables, so that
                                       a cell's tables are byte-identical between runs)

Each cell is written on its own and atomically (a temporary file in the same folder, then
``os.replace``), checkpoints first and trajectories last: a cell counts as done exactly when its
trajectory file exists, so a killed run never leaves a half-written cell that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchsuite.harness import CellResult

TRAJECTORIES, CHECKPOINTS, SKIPPED, TIMINGS = "trajectories", "checkpoints", "skipped", "timings"
MANIFEST = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,+\-]")


def cell_key(problem: str, integrator_label: str) -> str:
    """A file name for a cell: readable, safe (no separators or '..'), and unique."""
    raw = f"{problem}__{integrator_label}"
    safe = _UNSAFE.sub("_", raw).strip(".")[:120]
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    return f"{safe}-{digest}"


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` to a temporary file, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """One run directory: write cells as they finish, know which are done, read tables back."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def ensure_writable(self) -> None:
        """Create the run directory, or raise an error that says what to do."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(
                f"cannot write results to {self.path}: {exc.strerror or exc}; choose another "
                "folder with --results-dir"
            ) from exc

    # -- manifest ---------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        _atomic_write(self.path / MANIFEST, lambda tmp: Path(tmp).write_text(text))

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text())

    # -- cells --------------------------------------------------------------------------------
    def done(self, key: str) -> bool:
        return (self.path / TRAJECTORIES / f"{key}.parquet").exists() or (
            self.path / SKIPPED / f"{key}.json").exists()

    def write_cell(self, key: str, labels: dict[str, Any], result: CellResult) -> None:
        """Write one cell's tables, with constant label columns (problem, integrator, ...)."""
        if result.skipped is not None:
            text = json.dumps({**labels, "reason": result.skipped}, default=str)
            _atomic_write(self.path / SKIPPED / f"{key}.json",
                          lambda tmp: Path(tmp).write_text(text))
            return
        timing = json.dumps({**labels, "wall_time": result.wall_time, **result.info},
                            default=str)
        _atomic_write(self.path / TIMINGS / f"{key}.json", lambda tmp: Path(tmp).write_text(timing))
        for kind, table in ((CHECKPOINTS, result.checkpoints), (TRAJECTORIES, result.trajectories)):
            labelled = _labelled(table, labels)
            _atomic_write(self.path / kind / f"{key}.parquet",
                          lambda tmp, t=labelled: write_parquet(t, tmp))

    def table(self, kind: str) -> pd.DataFrame:
        """All finished cells' rows of ``kind`` ('trajectories' or 'checkpoints')."""
        files = sorted((self.path / kind).glob("*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([read_parquet(f) for f in files], ignore_index=True)

    def sidecars(self, kind: str) -> pd.DataFrame:
        """The JSON records of ``kind`` ('skipped' or 'timings'), one row per cell."""
        files = sorted((self.path / kind).glob("*.json"))
        return pd.DataFrame([json.loads(f.read_text()) for f in files])


def write_parquet(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write through pyarrow without pandas' schema metadata: pandas 3 cannot read its own
    metadata back for nested Arrow types (the point columns are lists of doubles)."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata(None), path)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`write_parquet`; list columns stay Arrow-backed."""
    arrow = pq.read_table(path)

    def mapper(dtype: pa.DataType) -> pd.ArrowDtype | None:
        return pd.ArrowDtype(dtype) if pa.types.is_list(dtype) else None

    return arrow.to_pandas(types_mapper=mapper)


def _labelled(table: pd.DataFrame, labels: dict[str, Any]) -> pd.DataFrame:
    """Prepend constant columns to a table (strings as categoricals: they repeat on every row)."""
    front = pd.DataFrame({k: pd.Categorical([v] * len(table)) if isinstance(v, str)
                          else [v] * len(table) for k, v in labels.items()}, index=table.index)
    return pd.concat([front, table], axis=1)


def load_results(run: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """The tables of a run as pandas DataFrames.

    Parameters
    ----------
    run : path
        A run directory (``results/<run-id>``).

    Returns
    -------
    dict
        ``{"trajectories": ..., "checkpoints": ..., "skipped": ..., "timings": ...}``.
    """
    store = RunStore(run)
    if not (store.path / MANIFEST).exists():
        raise FileNotFoundError(f"{store.path} is not a benchsuite run (no {MANIFEST}); "
                                "pass a folder created by 'benchsuite run'")
    return {TRAJECTORIES: store.table(TRAJECTORIES), CHECKPOINTS: store.table(CHECKPOINTS),
            SKIPPED: store.sidecars(SKIPPED), TIMINGS: store.sidecars(TIMINGS)}
