"""Results on disk: ``results/<run-id>/``, one campaign per folder, every cell checksummed.

Layout::

    results/<run-id>/
        manifest.json                  the campaign, its fingerprint, and every invocation
                                       (command, versions, git commit, machine), appended
        cells/<cell>.json              the record of a finished cell: SHA-256 of each of its
                                       files, the campaign fingerprint, the versions and the
                                       array backend (library, device, version, platform)
                                       that produced it; written last, so it marks it done
        shards/<cell>.<k>.json         the record of shard k of an unfinished cell (cells of
                                       more than ``shard_size`` trajectories), merged into the
                                       cell's record when its last shard is written
        trajectories/<cell>.parquet    one row per trajectory (<cell>.<k>.parquet per shard
                                       when the cell has several: readers concatenate them)
        checkpoints/<cell>.parquet     long form, one row per trajectory and checkpoint
        landscapes/<cell>.parquet      2-D problems only: f on a grid around the cell's
                                       trajectories (the report's contours, so that the
                                       report never calls a plugin)
        skipped/<cell>.json            cells whose integrator does not apply, with the reason
        timings/<cell>.json            wall time of each cell (kept out of the tables, so that
                                       a cell's tables are byte-identical between runs)
        quarantine/<cell>-<time>/      damaged cells moved aside by a resume, with why.txt
        .lock                          held by the one process writing the folder

Each file is written atomically (a temporary file in the same folder, then ``os.replace``) and
hashed as written; the cell's record comes last. A killed run therefore never leaves a cell that
looks finished, and a file changed afterwards (a truncated copy, flipped bits) no longer matches
its record: resume recomputes such a cell, readers leave it out and say so, and
:func:`verify_run` names it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchsuite import jsonio
from benchsuite.fingerprint import differences, digest
from benchsuite.harness import CellResult

TRAJECTORIES, CHECKPOINTS, SKIPPED, TIMINGS = "trajectories", "checkpoints", "skipped", "timings"
LANDSCAPES = "landscapes"
CELLS, SHARDS, QUARANTINE, MANIFEST = "cells", "shards", "quarantine", "manifest.json"
LOCK, HOLDER = ".lock", ".lock.holder"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,+\-]")
#: Constant columns a cell's tables get (:meth:`RunStore.write_cell`).
_LABELS = ("problem", "integrator", "method")
_DATA = (CHECKPOINTS, TRAJECTORIES, LANDSCAPES, SKIPPED, TIMINGS)
#: What a run folder may hold before its manifest is written (see :meth:`RunStore.lock`).
_BEFORE_MANIFEST = re.compile(r"^(\.lock|\.lock\.holder|\.(manifest\.json|\.lock\.holder)\..*\.tmp"
                              r"|\.write-test-\d+)$")
_KEY = re.compile(r"^[A-Za-z0-9_=,+\-][A-Za-z0-9_.=,+\-]{0,200}$")
#: Entries of a result's ``info`` that say what produced it (the array backend, as the worker
#: found it: :func:`benchsuite.tasks.run_task`): kept in the cell's record, beside the
#: versions, rather than in its timings.
PROVENANCE = ("backend",)


class FolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


class CampaignMismatch(ValueError):
    """The run folder holds another campaign (or is not a run folder at all)."""


class StoreWriteError(OSError):
    """The disk refused a write (full, read-only, permission denied)."""


class CellWriteError(ValueError):
    """A cell's tables cannot be cast to the declared schema (complex numbers, objects)."""


class DamagedCellWarning(UserWarning):
    """A cell's files do not match their record; readers leave the cell out."""


def cell_key(problem: str, integrator_label: str) -> str:
    """A file name for a cell: readable, safe (no separators or '..'), and unique."""
    raw = f"{problem}__{integrator_label}"
    safe = _UNSAFE.sub("_", raw).strip(".")[:120]
    sha = hashlib.sha256(raw.encode()).hexdigest()[:16]  # 64 bits: no birthday collisions
    return f"{safe}-{sha}"


def _file_mode() -> int:
    """What ``open`` would give a new file under this process's umask (mkstemp gives 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[str], Any], mode: int) -> str:
    """Write through ``write(tmp_path)`` to a temporary file, rename it over ``path``; return
    the SHA-256 of what was written. Disk errors become :class:`StoreWriteError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise StoreWriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        sha = _sha256(Path(tmp))
        os.replace(tmp, path)
        return sha
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreWriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(data: Any) -> str:
    """Strict JSON (no bare NaN/Infinity: other tools' parsers reject them)."""
    return jsonio.dumps(data, indent=2, sort_keys=True)


@dataclass(frozen=True)
class CellCheck:
    """The state of one cell of a run folder: ``ok``, ``missing`` or ``damaged`` (with why)."""

    key: str
    status: str
    detail: str = ""
    problem: str = ""
    integrator: str = ""


class RunStore:
    """One run folder: lock it, bind it to one campaign, write checksummed cells, read back.

    Parameters
    ----------
    path : path-like
        The run folder (``results/<run-id>``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mode = _file_mode()
        self._fingerprint: str | None = None
        self._versions: dict[str, Any] = {}
        self._shards: int | None = None
        self._recorded: dict[str, list[str]] = {}  # cell -> its files, as read by recorded()

    def ensure_writable(self) -> None:
        """Create the run directory, or raise an error that says what to do."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreWriteError(
                exc.errno, f"cannot write results to {self.path}: {exc.strerror or exc}; "
                "choose another folder with --results-dir") from exc

    # -- one writer ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the folder's lock (an OS file lock: it dies with its process) while writing.

        Raises :class:`FolderBusy`, naming the holder, if another process has it and ``wait``
        is false; with ``wait``, blocks until it is free.
        """
        self._refuse_foreign()
        self.ensure_writable()
        lock_path = self.path / LOCK
        if lock_path.is_symlink() or (lock_path.exists() and not lock_path.is_file()):
            raise CampaignMismatch(f"{lock_path} is not a plain file, so the folder cannot be "
                                   "locked; remove it, or choose another --run-id")
        lock = filelock.FileLock(lock_path, thread_local=False)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            raise FolderBusy(f"{self.path} is being written by {self._holder()}; wait for it "
                             "(--wait), or choose another --run-id") from None
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"cannot lock {lock_path}: "
                                  f"{exc.strerror or exc}") from exc
        try:
            holder = {"pid": os.getpid(), "host": platform.node(), "command": sys.argv,
                      "since": datetime.now(UTC).isoformat(timespec="seconds")}
            self._write_text(self.path / HOLDER, _json(holder))
            self._remove_stale_temporaries()
            yield
        finally:
            (self.path / HOLDER).unlink(missing_ok=True)
            lock.release()

    def _refuse_foreign(self) -> None:
        """Never write into (or clean up) a folder that is someone else's: a run folder has a
        benchsuite manifest, or holds nothing but our lock and temporary files."""
        if not self.path.is_dir():
            return
        if (self.path / MANIFEST).exists():
            self.manifest()  # raises CampaignMismatch unless it is a benchsuite manifest
            return
        foreign = sorted(p.name for p in self.path.iterdir() if not _BEFORE_MANIFEST.match(p.name))
        if foreign:
            raise CampaignMismatch(
                f"{self.path} is not empty and has no manifest (it holds "
                f"{', '.join(foreign[:5])}): it is not a benchsuite run folder, or its "
                "manifest was deleted; choose another --run-id or --results-dir")

    def _holder(self) -> str:
        try:
            h = json.loads((self.path / HOLDER).read_text())
            return (f"process {h['pid']} on {h['host']} since {h['since']} "
                    f"({' '.join(map(str, h['command']))[:200]})")
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writers that were killed mid-write (only under the lock: a
        live writer's temporary file must not vanish)."""
        for folder in (self.path, *(self.path / d for d in (*_DATA, CELLS, SHARDS))):
            for tmp in folder.glob(".*.tmp"):
                if folder != self.path or _BEFORE_MANIFEST.match(tmp.name):
                    tmp.unlink(missing_ok=True)

    # -- one campaign -------------------------------------------------------------------------
    def open(self, print_: dict[str, Any], static: dict[str, Any],
             invocation: dict[str, Any]) -> None:
        """Bind this folder to the campaign with fingerprint ``print_`` and record this
        invocation; refuse (:class:`CampaignMismatch`) a folder holding anything else.

        ``static`` is the part of the manifest fixed by the campaign (written when the folder
        is created); ``invocation`` is appended to the manifest's history.
        """
        wanted = digest(print_)
        path = self.path / MANIFEST
        if path.exists():
            recorded = self.manifest()
            old = recorded["fingerprint"]
            if recorded["fingerprint_sha256"] != wanted:
                try:
                    lines = differences(old, print_)
                except (TypeError, ValueError, AttributeError):  # a hand-edited fingerprint
                    lines = []
                lines = lines or ["the fingerprints differ"]
                changed = ({k for k in set(old) | set(print_) if old.get(k) != print_.get(k)}
                           if isinstance(old, dict) else {"?"})
                if changed and changed <= {"versions", "code"}:  # the same campaign, new code
                    exc = CampaignMismatch(
                        f"{self.path} was made by other code (versions/source differ: "
                        + "; ".join(lines) + "); a run folder holds one campaign and one "
                        "version of the code, so nothing was run")
                    exc.hint = ("start a new run: the same command without --resume (a new "
                                "run id follows the fingerprint), or --run-id NAME")
                    raise exc
                raise CampaignMismatch(
                    f"{self.path} holds another campaign:\n  " + "\n  ".join(lines)
                    + "\nnothing was run. To run this campaign, choose a new --run-id (or "
                    "leave it out: the default id follows the campaign); to finish the "
                    f"folder's own campaign, use --resume {self.path} with no other options")
            manifest = {**recorded, "invocations": [*recorded.get("invocations", []),
                                                    invocation]}
        else:
            manifest = {**static, "fingerprint": print_, "fingerprint_sha256": wanted,
                        "invocations": [invocation]}
        self._write_text(path, _json(manifest))
        self._fingerprint, self._versions = wanted, print_["versions"]

    def manifest(self) -> dict[str, Any]:
        """The manifest, checked for the structure benchsuite writes (a campaign, a
        fingerprint that matches its SHA-256, cells with safe keys); otherwise a
        :class:`CampaignMismatch` saying why it cannot be trusted."""
        path = self.path / MANIFEST
        try:
            data = _read_json(path)
        except FileNotFoundError:
            raise CampaignMismatch(f"{self.path} is not a benchsuite run (no {MANIFEST}); pass "
                                   "a folder created by 'benchsuite run'") from None
        except (OSError, ValueError) as exc:
            raise CampaignMismatch(f"{path} is unreadable ({exc}); the cells cannot be "
                                   "checked against their campaign") from exc
        if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), dict):
            raise CampaignMismatch(f"{path} is not a benchsuite manifest with a campaign "
                                   "fingerprint (another program's file, or one written by "
                                   "benchsuite < 0.2): choose another --run-id")
        try:
            consistent = digest(data["fingerprint"]) == data.get("fingerprint_sha256")
        except (TypeError, ValueError):
            consistent = False
        cells = data.get("cells")
        if not (consistent and isinstance(data.get("campaign"), dict)
                and isinstance(cells, list)
                and all(isinstance(c, dict) and isinstance(c.get("key"), str)
                        and _KEY.match(c["key"]) for c in cells)):
            raise CampaignMismatch(f"{path} is damaged or was edited: its fingerprint, "
                                   "campaign or cell list is inconsistent, so no cell can be "
                                   "trusted; start a new run with another --run-id")
        return data

    # -- cells --------------------------------------------------------------------------------
    def _files(self, name: str) -> list[Path]:
        """Every file of cell ``name``, whole or in shards, with its shard records (or of one
        shard, ``<key>.<shard>``)."""
        pattern = f"{glob.escape(name)}.*"
        return [p for kind in (*_DATA, SHARDS) for p in sorted((self.path / kind).glob(pattern))
                if p.name.split(".")[-1] in ("json", "parquet")]

    def check(self, key: str, fingerprint_sha: str | None = None, hash_files: bool = True
              ) -> CellCheck:
        """Whether cell ``key`` is finished and intact (its files match its record).

        ``hash_files=False`` checks everything but the checksums (a quick listing: a record
        that is unreadable, of another campaign, or whose files are gone)."""
        record_path = self.path / CELLS / f"{key}.json"
        if not record_path.exists():
            count = self.shard_count()
            written = self.shards_written(key) if count > 1 else 0
            return CellCheck(key, "missing", f"{written} of its {count} shards written"
                             if written else "")
        try:
            record = _read_json(record_path)
        except (OSError, ValueError) as exc:
            return CellCheck(key, "damaged", f"its record is unreadable ({exc})")
        files = record.get("files") if isinstance(record, dict) else None
        if not isinstance(files, dict):
            return CellCheck(key, "damaged", "its record lists no files")
        found = CellCheck(key, "ok")
        expected = fingerprint_sha or self._fingerprint
        if expected is not None and record.get("fingerprint") != expected:
            return _with(found, "damaged", "it was written under another campaign")
        count = self.shard_count()
        if files.keys() != {_rel(SKIPPED, key)} and not _lists_shards(files, key, count):
            return _with(found, "damaged", "its record does not list the cell's files"
                         + (f" (of its {count} shards)" if count > 1 else ""))
        return self._check_files(found, files, hash_files)

    def _check_files(self, found: CellCheck, files: dict[str, Any], hash_files: bool
                     ) -> CellCheck:
        for rel, sha in files.items():
            path = self.path / rel
            if not stat.S_ISREG(_lstat_mode(path)):  # a FIFO or a device would hang the hash
                return _with(found, "damaged", f"{rel} is missing or not a regular file")
            if not hash_files:
                continue
            try:
                actual = _sha256(path)
            except OSError:
                return _with(found, "damaged", f"{rel} is unreadable")
            if actual != sha:
                return _with(found, "damaged", f"{rel} does not match its checksum")
        return found

    def shard_count(self) -> int:
        """Shards per cell in this run (1 for runs written before shards existed)."""
        if self._shards is None:
            campaign = self.manifest()["campaign"]
            size, n = campaign.get("shard_size"), campaign.get("n_points")
            valid = all(isinstance(v, int) and v > 0 for v in (size, n))
            self._shards = -(-n // size) if valid else 1
        return self._shards

    def check_shard(self, key: str, shard: int) -> CellCheck:
        """Whether shard ``shard`` of an unfinished cell ``key`` is written and intact."""
        path = self.path / SHARDS / f"{key}.{shard:05d}.json"
        if not path.exists():
            return CellCheck(key, "missing")
        try:
            record = _read_json(path)
            files = record["files"]
            ok = (record["fingerprint"] == self._fingerprint
                  and files.keys() == set(_shard_files(key, shard, self.shard_count())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return CellCheck(key, "damaged", f"the record of shard {shard} is unreadable ({exc})")
        if not ok:
            return CellCheck(key, "damaged", f"the record of shard {shard} is of another "
                             "campaign or does not list its files")
        return self._check_files(CellCheck(key, "ok"), files, True)

    def shards_written(self, key: str) -> int:
        """How many shard records an unfinished cell has (nothing hashed)."""
        return sum(1 for _ in (self.path / SHARDS).glob(f"{glob.escape(key)}.*.json"))

    def strays(self, keys: set[str]) -> list[str]:
        """Cell records in the folder that are not among ``keys`` (copies, leftovers)."""
        return sorted(p.stem for p in (self.path / CELLS).glob("*.json") if p.stem not in keys)

    def quarantine(self, key: str, why: str, shard: int | None = None) -> Path:
        """Move a damaged cell's (or shard's) record and files aside (never delete: they may
        be evidence)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = key if shard is None else f"{key}.{shard:05d}"
        dest = self.path / QUARANTINE / f"{name}-{stamp}"
        record = [self.path / CELLS / f"{key}.json"] if shard is None else []
        self._recorded.pop(key, None)
        try:
            dest.mkdir(parents=True)
            for path in (*record, *self._files(name)):
                if path.exists():
                    shutil.move(path, dest / f"{path.parent.name}-{path.name}")
            (dest / "why.txt").write_text(why + "\n")
        except OSError as exc:
            raise StoreWriteError(exc.errno, f"cannot move the damaged cell {key} aside: "
                                  f"{exc.strerror or exc}") from exc
        return dest

    def write_cell(self, key: str, labels: dict[str, Any], result: CellResult) -> None:
        """Write one whole cell's tables, then its record (the cell counts as done from then
        on); a skipped cell, or a cell of one shard.

        The tables get constant label columns (problem, integrator, ...) and are cast to the
        declared schema first: a value that does not fit raises :class:`CellWriteError` before
        anything is written. Disk errors raise :class:`StoreWriteError`.
        """
        files = self._write_tables(key, labels, result)
        self._write_record(self.path / CELLS / f"{key}.json", key, labels, files,
                           **_provenance(result))

    def write_shard(self, key: str, labels: dict[str, Any], shard: int,
                    result: CellResult) -> None:
        """Write shard ``shard`` of cell ``key`` (of :meth:`shard_count` shards), then its
        record; as :meth:`write_cell` for a cell of one shard. Then call :meth:`finish_cell`
        once every shard is written."""
        if self.shard_count() == 1:
            return self.write_cell(key, labels, result)
        if result.skipped is not None:
            raise ValueError("a skipped cell is written whole (write_cell), not by shards")
        files = self._write_tables(f"{key}.{shard:05d}", labels, result)
        self._write_record(self.path / SHARDS / f"{key}.{shard:05d}.json", key, labels,
                           files, suffix=f".{shard:05d}", shard=shard, **_provenance(result))

    def shard_files(self, key: str, kind: str) -> list[Path]:
        """The files of ``kind`` of an unfinished cell's written shards, in shard order."""
        paths = []
        for shard in range(self.shard_count()):
            record = _read_json(self.path / SHARDS / f"{key}.{shard:05d}.json")
            paths += [self.path / rel for rel in record["files"] if rel.startswith(f"{kind}/")]
        return paths

    def shard_points(self, key: str) -> np.ndarray:
        """The points of a 2-D unfinished cell's written shards, shape (N, 2): every initial
        point, and every recorded checkpoint's point (what its landscape must frame)."""
        parts = []
        for path in self.shard_files(key, TRAJECTORIES):
            column = pq.read_table(path, columns=["x0"])["x0"].combine_chunks()
            parts.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, 2))
        for path in self.shard_files(key, CHECKPOINTS):
            if {"x0", "x1"} <= set(pq.read_schema(path).names):
                table = pq.read_table(path, columns=["x0", "x1"])
                parts.append(np.column_stack([table[c].to_numpy() for c in ("x0", "x1")]))
        return np.concatenate(parts) if parts else np.empty((0, 2))

    def write_landscape(self, key: str, labels: dict[str, Any], result: CellResult
                        ) -> dict[str, str]:
        """Write the landscape of a cell of several shards (``landscapes/<key>.parquet``
        when there is one, and ``timings/<key>.landscape.json``, its time and any reason it
        is missing); return their checksums, for :meth:`finish_cell`."""
        timings = _rel(TIMINGS, f"{key}.landscape")
        written = {timings: self._write_text(self.path / timings, _json(
            {**labels, "wall_time": result.wall_time, **result.info}))}
        if len(result.landscape):
            arrow = to_arrow(_labelled(result.landscape, labels), LANDSCAPES)
            written[_rel(LANDSCAPES, key)] = _atomic_write(
                self.path / _rel(LANDSCAPES, key), lambda tmp: pq.write_table(arrow, tmp),
                self._mode)
        return written

    def finish_cell(self, key: str, labels: dict[str, Any],
                    landscape: dict[str, str] | None = None) -> None:
        """Merge the records of a cell's shards, and the files of its ``landscape``
        (:meth:`write_landscape`), into its record (the cell is done), and remove the shard
        records. Every shard must be written and intact."""
        count = self.shard_count()
        if count == 1:
            return
        files: dict[str, str] = dict(landscape or {})
        found: dict[str, list[Any]] = {name: [] for name in PROVENANCE}
        for shard in range(count):
            part = _read_json(self.path / SHARDS / f"{key}.{shard:05d}.json")
            files.update(part["files"])
            for name, seen in found.items():
                if name in part and part[name] not in seen:
                    seen.append(part[name])
        # one entry when every shard agrees; each distinct one when shards ran on
        # different workers (another GPU model, say)
        merged = {name: seen[0] if len(seen) == 1 else seen
                  for name, seen in found.items() if seen}
        record = self._record(key, labels, {}, shards=count, **merged)
        record["files"] = dict(sorted(files.items()))
        self._write_text(self.path / CELLS / f"{key}.json", _json(record))
        for shard in range(count):  # a leftover would only be ignored: the record says done
            (self.path / SHARDS / f"{key}.{shard:05d}.json").unlink(missing_ok=True)

    def _write_tables(self, name: str, labels: dict[str, Any], result: CellResult
                      ) -> dict[str, str]:
        """Write a cell's (or shard's) files as ``<kind>/<name>.*``; return kind -> SHA-256."""
        if self._fingerprint is None:
            raise RuntimeError("RunStore.open() must bind the folder to a campaign first")
        tables = {}
        if result.skipped is None:
            for kind, table in ((CHECKPOINTS, result.checkpoints),
                                (TRAJECTORIES, result.trajectories)):
                tables[kind] = to_arrow(_labelled(table, labels), kind)
            if len(result.landscape):
                tables[LANDSCAPES] = to_arrow(_labelled(result.landscape, labels), LANDSCAPES)
        files = {}
        if result.skipped is not None:
            files[SKIPPED] = self._write_text(self.path / SKIPPED / f"{name}.json",
                                              _json({**labels, "reason": result.skipped}))
        else:
            timings = {k: v for k, v in result.info.items() if k not in PROVENANCE}
            files[TIMINGS] = self._write_text(
                self.path / TIMINGS / f"{name}.json",
                _json({**labels, "wall_time": result.wall_time, **timings}))
            for kind, arrow in tables.items():
                files[kind] = _atomic_write(self.path / kind / f"{name}.parquet",
                                            lambda tmp, a=arrow: pq.write_table(a, tmp),
                                            self._mode)
        return files

    def _record(self, key: str, labels: dict[str, Any], files: dict[str, str], suffix: str = "",
                **extra: Any) -> dict[str, Any]:
        return {"key": key, "labels": labels, "fingerprint": self._fingerprint,
                "versions": self._versions, **extra,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": {_rel(kind, key + suffix): sha for kind, sha in files.items()}}

    def _write_record(self, path: Path, key: str, labels: dict[str, Any],
                      files: dict[str, str], suffix: str = "", **extra: Any) -> None:
        self._write_text(path, _json(self._record(key, labels, files, suffix, **extra)))

    def _write_text(self, path: Path, text: str) -> str:
        self._recorded.clear()  # a record may change: read them again
        return _atomic_write(path, lambda tmp: Path(tmp).write_text(text), self._mode)

    # -- reading --------------------------------------------------------------------------------
    def recorded(self, kind: str, keys: list[str]) -> list[Path]:
        """The files of ``kind`` of the given finished cells, shard by shard, from their
        records (a cell is one table, in however many shards it was written)."""
        paths = []
        for key in sorted(keys):
            if key not in self._recorded:  # a reader asks for each kind: read records once
                try:
                    files = _read_json(self.path / CELLS / f"{key}.json")["files"]
                    self._recorded[key] = sorted(files, key=_shard_order)
                except (OSError, ValueError, KeyError, TypeError):
                    self._recorded[key] = []
            paths += [self.path / rel for rel in self._recorded[key]
                      if rel.startswith(f"{kind}/")]
        return paths

    def table(self, kind: str, keys: list[str]) -> pd.DataFrame:
        """Rows of ``kind`` ('trajectories', 'checkpoints' or 'landscapes') of the given
        cells."""
        files = [p for p in self.recorded(kind, keys) if p.exists()]
        if not files:
            return pd.DataFrame()
        # one Arrow concatenation and one conversion: 3x faster than a pandas concat of
        # per-cell frames; columns absent from some cells (x0, x1, drift) are filled with nulls
        arrow = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        frame = _to_pandas(arrow)
        for column in _LABELS:  # label columns stay plain strings, as with one cell
            if column in frame and isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(str)
        return frame

    def sidecars(self, kind: str, keys: list[str]) -> pd.DataFrame:
        """The JSON records of ``kind`` ('skipped' or 'timings') of the given cells, one row
        per cell: a sharded cell's timings are summed (``wall_time``: seconds of work) and
        their notes joined."""
        rows = []
        for key in sorted(keys):
            paths = [p for p in self.recorded(kind, [key]) if p.exists()]
            if len(paths) > 1:
                shards = sum(not p.name.endswith(".landscape.json") for p in paths)
                rows.append(_merged([json.loads(p.read_text()) for p in paths], shards))
            elif paths:
                rows.append(json.loads(paths[0].read_text()))
        return pd.DataFrame(rows)


def _provenance(result: CellResult) -> dict[str, Any]:
    """The entries of ``result.info`` that go into its record (:data:`PROVENANCE`)."""
    return {name: result.info[name] for name in PROVENANCE if name in result.info}


def _rel(kind: str, name: str) -> str:
    """Where a cell's (or shard's) file of ``kind`` lives, relative to the run folder."""
    return f"{kind}/{name}.{'json' if kind in (SKIPPED, TIMINGS) else 'parquet'}"


def _shard_order(rel: str) -> tuple[str, int]:
    """Sort key of a cell's files: by kind, then by shard number (``.100000`` after
    ``.99999``: zero-padding to five digits does not bound the number of shards)."""
    stem, _, _ = rel.rpartition(".")
    head, _, shard = stem.rpartition(".")
    return (head, int(shard)) if shard.isdigit() and head else (stem, -1)


def _shard_files(key: str, shard: int, count: int, landscape: bool = False) -> list[str]:
    """The files a shard writes (a cell of one shard: the cell's own names)."""
    name = key if count == 1 else f"{key}.{shard:05d}"
    return [_rel(kind, name) for kind in (TIMINGS, CHECKPOINTS, TRAJECTORIES)] + (
        [_rel(LANDSCAPES, name)] if landscape else [])


def _lists_shards(files: dict[str, Any], key: str, count: int) -> bool:
    """Whether a cell record lists exactly the files of its ``count`` shards, and those of
    its 2-D landscape where it has one (drawn by the cell itself, or, for several shards,
    once they are written: :meth:`RunStore.write_landscape`)."""
    needed = {rel for shard in range(count) for rel in _shard_files(key, shard, count)}
    if count == 1:
        return files.keys() in (needed, needed | set(_shard_files(key, 0, 1, True)))
    landscape = {_rel(TIMINGS, f"{key}.landscape"), _rel(LANDSCAPES, key)}
    return needed <= files.keys() <= needed | landscape


def _merged(parts: list[dict[str, Any]], shards: int) -> dict[str, Any]:
    """One cell's timings from its shards' (and its landscape's)."""
    merged: dict[str, Any] = {"shards": shards}
    for part in parts:
        for name, value in part.items():
            if name == "wall_time":
                merged[name] = merged.get(name, 0.0) + value
            elif name == "warnings":
                merged[name] = list(dict.fromkeys([*merged.get(name, []), *value]))
            elif name not in merged:
                merged[name] = value
            elif name == "failure" and value not in merged[name]:
                merged[name] = f"{merged[name]}; {value}"
    return merged


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def _read_json(path: Path) -> Any:
    """JSON from a regular file; nesting too deep for the parser is a ValueError."""
    if not stat.S_ISREG(_lstat_mode(path)) and path.exists():
        raise ValueError("not a regular file")
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _with(check: CellCheck, status: str, detail: str) -> CellCheck:
    return CellCheck(check.key, status, detail, check.problem, check.integrator)


#: Columns with a declared type; every other column is float64, and list columns (points)
#: are lists of float64. A value that does not cast safely fails the cell, not the run.
TEXT_COLUMNS = frozenset({"problem", "integrator", "method", "stop", "message", "outcome",
                          "reason", "generic_outcome", "certificate"})
INTEGER_COLUMNS = frozenset({"traj", "steps", "step", "nfev", "ngev", "nprox", "extensions"})


def to_arrow(table: pd.DataFrame, kind: str = "") -> pa.Table:
    """A cell table as Arrow, cast to the declared schema; :class:`CellWriteError` if it does
    not fit (no pandas schema metadata: pandas 3 cannot read its own back for list columns)."""
    try:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        fields = []
        for f in arrow.schema:
            if pa.types.is_list(f.type):
                fields.append(pa.field(f.name, pa.list_(pa.float64())))
            elif f.name in TEXT_COLUMNS:
                fields.append(f if pa.types.is_dictionary(f.type) else
                              pa.field(f.name, pa.large_string()))
            elif f.name in INTEGER_COLUMNS:
                fields.append(pa.field(f.name, pa.int64()))
            else:
                fields.append(pa.field(f.name, pa.float64()))
        return arrow.cast(pa.schema(fields), safe=True).replace_schema_metadata(None)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise CellWriteError(f"the cell's {kind or 'table'} cannot be stored as declared "
                             f"(text, int64, float64 or lists of float64): "
                             f"{type(exc).__name__}: {exc}") from exc


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a cell table written by :meth:`RunStore.write_cell`; list columns stay
    Arrow-backed."""
    return _to_pandas(pq.read_table(path))


def _to_pandas(arrow: pa.Table) -> pd.DataFrame:
    def mapper(dtype: pa.DataType) -> pd.ArrowDtype | None:
        return pd.ArrowDtype(dtype) if pa.types.is_list(dtype) else None

    return arrow.to_pandas(types_mapper=mapper)


def _labelled(table: pd.DataFrame, labels: dict[str, Any]) -> pd.DataFrame:
    """Prepend constant columns to a table (strings as categoricals: they repeat on every row)."""
    front = pd.DataFrame({k: pd.Categorical([v] * len(table)) if isinstance(v, str)
                          else [v] * len(table) for k, v in labels.items()}, index=table.index)
    return pd.concat([front, table], axis=1)


def verify_run(run: str | os.PathLike[str]) -> list[CellCheck]:
    """Check every cell of a run folder against its record and the campaign's fingerprint.

    Returns one :class:`CellCheck` per cell of the manifest (``ok``, ``missing`` or
    ``damaged``), plus a ``damaged`` entry for each record that is not one of them. Raises
    :class:`CampaignMismatch` if the manifest itself is missing or unreadable.
    """
    store = RunStore(run)
    manifest = store.manifest()
    sha = manifest["fingerprint_sha256"]
    planned = {cell["key"]: cell for cell in manifest["cells"]}
    checks = []
    for key, cell in sorted(planned.items()):
        found = store.check(key, sha)
        checks.append(CellCheck(key, found.status, found.detail, str(cell.get("problem", "")),
                                str(cell.get("integrator", ""))))
    checks += [CellCheck(key, "damaged", "a cell record that is not part of this run's "
                         "campaign") for key in store.strays(set(planned))]
    return checks


def load_results(run: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """The tables of a run as pandas DataFrames, from its intact cells only.

    Damaged cells (files that do not match their record) are left out with a
    :class:`DamagedCellWarning`; ``cells`` lists every cell with its state.

    Parameters
    ----------
    run : path
        A run directory (``results/<run-id>``).

    Returns
    -------
    dict
        ``{"trajectories", "checkpoints", "landscapes", "skipped", "timings", "cells"}``
        DataFrames.
    """
    checks = verify_run(run)
    damaged = [c for c in checks if c.status == "damaged"]
    if damaged:
        warnings.warn(f"{len(damaged)} damaged cell(s) left out of {run}: "
                      + "; ".join(f"{c.key}: {c.detail}" for c in damaged[:5])
                      + " (benchsuite verify lists them; a resume recomputes them)",
                      DamagedCellWarning, stacklevel=2)
    ok = [c.key for c in checks if c.status == "ok"]
    store = RunStore(run)
    return {TRAJECTORIES: store.table(TRAJECTORIES, ok),
            CHECKPOINTS: store.table(CHECKPOINTS, ok), LANDSCAPES: store.table(LANDSCAPES, ok),
            SKIPPED: store.sidecars(SKIPPED, ok), TIMINGS: store.sidecars(TIMINGS, ok),
            CELLS: pd.DataFrame([vars(c) for c in checks],
                                columns=["key", "status", "detail", "problem", "integrator"])}


def disk_full(exc: OSError) -> bool:
    """Whether an OSError means the disk (or quota) is full."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
