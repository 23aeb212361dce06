"""Run folders that cannot lie: one campaign per folder, checksummed cells, one writer.

Each test does what a careless or hostile user did to a run folder (reuse its id with another
campaign, damage a file, start a second run on it, point the run id elsewhere) and checks that
the folder is either refused before any work or repaired, never silently mixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_same_tables

from benchsuite import hookimpl
from benchsuite.campaign import Campaign, run_campaign
from benchsuite.cli import main
from benchsuite.execution import SerialExecutor
from benchsuite.fingerprint import digest
from benchsuite.harness import Budget, CellResult
from benchsuite.plugins import load_registry
from benchsuite.results import (
    CampaignMismatch,
    CellWriteError,
    DamagedCellWarning,
    FolderBusy,
    RunStore,
    load_results,
    to_arrow,
    verify_run,
)
from benchsuite_problems.factorization import xy_minus_one

SMALL = ["-p", "xy_minus_one", "-p", "remark3_rational_1d", "-i", "euler(h=[0.1, 0.05])",
         "-n", "4", "--t-max", "2", "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def run(tmp_path, run_id="r", *extra: str):
    return invoke("run", *SMALL, "--results-dir", str(tmp_path), "--run-id", run_id, "-j", "1",
                  *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished small run (and an identical twin), made once; tests work on copies."""
    base = tmp_path_factory.mktemp("finished")
    assert run(base, "r").exit_code == 0
    shutil.copytree(base / "r", base / "clean")
    return base


@pytest.fixture
def done(tmp_path, finished):
    """``tmp_path`` holding copies of the finished run ``r`` and its twin ``clean``."""
    for name in ("r", "clean"):
        shutil.copytree(finished / name, tmp_path / name)
    return tmp_path


def snapshot(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


# -- a run folder is one campaign ---


@pytest.mark.parametrize("change", [["-n", "5"], ["--seed", "7"], ["--t-max", "3"],
                                    ["-p", "xy_minus_one"], ["--no-certificates"]])
def test_reusing_a_run_id_with_another_campaign_is_refused_before_any_work(done, change):
    tmp_path = done
    before = snapshot(tmp_path / "r")
    args = [*SMALL, *change] if change[0] != "-p" else \
        ["-p", "xy_minus_one", *SMALL[4:]]
    out = invoke("run", *args, "--results-dir", str(tmp_path), "--run-id", "r", "-j", "1")
    assert out.exit_code == 2, out.output
    assert "holds another campaign" in out.output and "--run-id" in out.output
    assert snapshot(tmp_path / "r") == before  # not even the manifest was touched


def test_resume_with_a_changed_option_is_refused_and_names_the_difference(done):
    tmp_path = done
    out = invoke("run", "--resume", str(tmp_path / "r"), "-n", "100", "--no-progress")
    assert out.exit_code == 2 and "n_points: folder has 4, this run 100" in out.output


def test_a_new_version_of_benchsuite_or_a_plugin_does_not_resume_an_old_folder(done):
    tmp_path = done
    path = tmp_path / "r" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fingerprint"]["versions"]["benchsuite"] = "0.0.1"  # as if written by an old one
    path.write_text(json.dumps({**manifest, "fingerprint_sha256": digest(manifest["fingerprint"])}))
    out = run(tmp_path)
    assert out.exit_code == 2
    assert "versions.benchsuite: folder has '0.0.1'" in out.output
    path.write_text(json.dumps(manifest))  # edited by hand: the fingerprint no longer matches
    assert run(tmp_path).exit_code == 2
    out = invoke("verify", str(tmp_path / "r"))
    assert out.exit_code == 2 and "damaged or was edited" in out.output


def test_every_invocation_is_appended_to_the_manifest(tmp_path):
    for _ in range(3):
        assert run(tmp_path).exit_code == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest["invocations"]) == 3
    assert all("versions" in i and "command" in i for i in manifest["invocations"])
    record = json.loads(next((tmp_path / "r" / "cells").glob("*.json")).read_text())
    assert record["versions"]["benchsuite"] and record["fingerprint"] == \
        manifest["fingerprint_sha256"]


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    out = run(tmp_path, "mine")
    assert out.exit_code == 2 and "not a benchsuite run folder" in out.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


# -- integrity: checksums, verify, repair on resume ---


def damage(path, how: str, rng) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # 64 garbled bytes inside the file, as a bad disk or a careless edit would leave
        start = int(rng.integers(8, len(data) - 72))
        data[start:start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(("kind", "how"), [("trajectories", "truncate"),
                                           ("trajectories", "garble"),
                                           ("checkpoints", "garble"),
                                           ("timings", "truncate")])
def test_a_damaged_cell_is_named_by_verify_and_recomputed_by_resume(done, kind, how):
    tmp_path = done
    assert invoke("verify", str(tmp_path / "r")).exit_code == 0
    victim = sorted((tmp_path / "r" / kind).iterdir())[1]
    damage(victim, how, np.random.default_rng(len(str(tmp_path))))
    out = invoke("verify", str(tmp_path / "r"))
    assert out.exit_code == 1 and victim.stem in out.output and "checksum" in out.output
    with pytest.warns(DamagedCellWarning, match=victim.stem):
        tables = load_results(tmp_path / "r")  # readers leave the damaged cell out, and say so
    assert (tables["cells"]["status"] == "damaged").sum() == 1
    with pytest.warns(DamagedCellWarning, match="moved to"):
        out = run(tmp_path)
    assert out.exit_code == 0, out.output
    assert invoke("verify", str(tmp_path / "r")).exit_code == 0
    assert_same_tables(tmp_path / "clean", tmp_path / "r")
    (aside,) = (tmp_path / "r" / "quarantine").iterdir()  # kept as evidence, not deleted
    assert "checksum" in (aside / "why.txt").read_text()


def test_garbled_bytes_are_always_caught(done):
    """Parquet alone let 64 garbled bytes read back as valid, wrong values in 2 of 3 trials."""
    tmp_path = done
    rng = np.random.default_rng(1)
    for trial in range(6):
        path = sorted((tmp_path / "r" / "trajectories").iterdir())[trial % 4]
        original = path.read_bytes()
        damage(path, "garble", rng)
        if path.read_bytes() == original:
            continue
        damaged = {c.key for c in verify_run(tmp_path / "r") if c.status == "damaged"}
        assert damaged == {path.stem}
        path.write_bytes(original)
    assert all(c.status == "ok" for c in verify_run(tmp_path / "r"))


def test_verify_reports_unfinished_cells_without_calling_them_damaged(done):
    tmp_path = done
    next((tmp_path / "r" / "cells").iterdir()).unlink()  # killed before the record was written
    out = invoke("verify", str(tmp_path / "r"))
    assert out.exit_code == 0 and "1 not finished, 0 damaged" in out.output
    assert invoke("verify", str(tmp_path)).exit_code == 2  # not a run folder


# -- one writer per folder ---


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_holder(done):
    tmp_path = done
    with RunStore(tmp_path / "r").lock():
        out = run(tmp_path)
        assert out.exit_code == 2
        assert f"process {os.getpid()}" in out.output and "--wait" in out.output
        with pytest.raises(FolderBusy):
            with RunStore(tmp_path / "r").lock():
                pass


@pytest.mark.slow
def test_wait_waits_for_the_holder_then_finds_the_work_done(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from benchsuite.results import RunStore\n"
         f"with RunStore({str(tmp_path / 'r')!r}).lock():\n"
         "    print('locked', flush=True); time.sleep(2)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        out = run(tmp_path, "r", "--wait")
        assert out.exit_code == 0 and time.monotonic() - start > 1.0
    finally:
        holder.kill()
        holder.wait()


def test_stale_temporary_files_are_removed_under_the_lock(done):
    tmp_path = done
    stale = tmp_path / "r" / "trajectories" / ".x.parquet.abc.tmp"
    stale.write_bytes(b"half a file from a killed writer")
    assert run(tmp_path).exit_code == 0
    assert not stale.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert run(tmp_path).exit_code == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


# -- names and options that could escape the results folder ---


@pytest.mark.parametrize("run_id", ["..", "../x", "/abs", "a/b", "a\nb", ".hidden", "x" * 200])
def test_unsafe_run_ids_are_refused(tmp_path, run_id):
    out = invoke("run", *SMALL, "--results-dir", str(tmp_path / "res"), "--run-id", run_id)
    assert out.exit_code == 2 and "safe folder name" in out.output
    assert not (tmp_path / "res").exists() and sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_worker_counts_below_one_are_refused(tmp_path, workers):
    out = invoke("run", *SMALL, "--results-dir", str(tmp_path), "-j", workers)
    assert out.exit_code == 2 and "-j" in out.output


def test_huge_grids_need_yes(tmp_path):
    grid = "euler(h=[" + ", ".join(f"{0.01 * (k + 1):g}" for k in range(60)) + "])"
    out = invoke("run", "-i", grid, "--results-dir", str(tmp_path))
    cells = 60 * len(load_registry().problems)
    assert out.exit_code == 2 and f"{cells} cells" in out.output and "--yes" in out.output
    assert not any(tmp_path.iterdir())


# -- the disk and the schema ---


def test_a_full_disk_exits_4_with_a_message_and_keeps_finished_cells(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    real, calls = pq.write_table, []

    def fill_up(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) > 4:  # two cells fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", fill_up)
    out = run(tmp_path)
    assert out.exit_code == 4, out.output
    assert "No space left on device" in out.output and "resume" in out.output
    assert "Traceback" not in out.output
    monkeypatch.setattr(pq, "write_table", real)
    checks = verify_run(tmp_path / "r")
    assert [c.status for c in checks].count("ok") == 2
    assert not any(c.status == "damaged" for c in checks)
    assert run(tmp_path).exit_code == 0


def test_report_into_an_unwritable_place_exits_4_with_what_to_do(done):
    tmp_path = done
    out = invoke("report", str(tmp_path / "r"), "-o", "/proc/benchsuite-report")
    assert out.exit_code == 4 and "-o DIR" in out.output and "Traceback" not in out.output


def test_values_that_do_not_fit_the_schema_fail_their_cell_not_the_run(tmp_path):
    with pytest.raises(CellWriteError, match="complex"):
        to_arrow(pd.DataFrame({"f": np.array([1 + 2j])}))
    with pytest.raises(CellWriteError):
        to_arrow(pd.DataFrame({"f": ["not a number"]}))

    class ComplexCells:
        """An executor whose first cell comes back with complex values (as a hostile
        certificate or integrator could produce) and whose second is fine."""

        def run(self, fn, tasks, time_limit=None):
            for i, task in enumerate(tasks):
                result = fn(task)
                if i == 0:
                    traj = result.trajectories.assign(f=result.trajectories["f"] + 1j)
                    result = CellResult(traj, result.checkpoints)
                yield i, result

    campaign = Campaign(problems=("xy_minus_one", "remark3_rational_1d"), integrators=("euler",),
                        n_points=3, budget=Budget(t_max=1.0))
    store = run_campaign(campaign, load_registry(), tmp_path / "r", executor=ComplexCells())
    traj = pd.concat([pd.read_parquet(p) for p in (store.path / "trajectories").iterdir()])
    first = traj[traj["problem"] == "remark3_rational_1d"]
    assert (first["outcome"].astype(str) == "failed").all()
    assert first["message"].str.contains("cannot be stored as declared").all()
    assert (traj[traj["problem"] == "xy_minus_one"]["stop"] == "t_max").all()


class BadSampler:
    @hookimpl
    def benchsuite_problems(self):
        def sample(rng, n):
            raise RuntimeError("injected sampler fault")

        return [dataclasses.replace(xy_minus_one(), name="bad_sampler", sample=sample)]


def test_a_raising_sampler_fails_its_problem_only(tmp_path):
    reg = load_registry(extra_plugins={"bad": BadSampler()})
    campaign = Campaign(problems=("bad_sampler", "xy_minus_one"), integrators=("euler", "rk45"),
                        n_points=3, budget=Budget(t_max=1.0))
    run_campaign(campaign, reg, tmp_path / "r", executor=SerialExecutor())
    traj = load_results(tmp_path / "r")["trajectories"]
    bad = traj[traj["problem"] == "bad_sampler"]
    assert len(bad) == 6 and (bad["outcome"].astype(str) == "failed").all()
    assert bad["message"].str.contains("sampler raised RuntimeError: injected").all()
    assert (traj[traj["problem"] == "xy_minus_one"]["stop"] == "t_max").all()


def test_reading_a_folder_that_is_not_a_run_says_so():
    with pytest.raises(CampaignMismatch, match="not a benchsuite run"):
        verify_run("/nonexistent-benchsuite-folder")


# -- found by trying to break the above (each was a way to make a folder lie) ---


def test_step_sizes_that_print_alike_are_different_cells_and_campaigns(tmp_path):
    out = invoke("run", "-p", "xy_minus_one", "-i", "euler(h=[0.1, 0.1000004])", "-n", "2",
                 "--t-max", "1", "--results-dir", str(tmp_path), "--run-id", "g", "-j", "1")
    assert out.exit_code == 0
    assert len(list((tmp_path / "g" / "cells").iterdir())) == 2
    first = invoke("run", "-p", "xy_minus_one", "-i", "euler(h=0.1)", "-n", "2", "--t-max", "1",
                   "--results-dir", str(tmp_path), "--run-id", "one", "-j", "1")
    other = invoke("run", "-p", "xy_minus_one", "-i", "euler(h=0.1000004)", "-n", "2",
                   "--t-max", "1", "--results-dir", str(tmp_path), "--run-id", "one", "-j", "1")
    assert first.exit_code == 0 and other.exit_code == 2
    assert "euler(h=0.1000004)" in other.output


def test_the_fingerprint_follows_the_source_code_not_only_the_version(tmp_path, monkeypatch):
    from benchsuite.fingerprint import source_digest

    (tmp_path / "editable_plugin.py").write_text("STEP = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_digest("editable_plugin")
    source_digest.cache_clear()
    (tmp_path / "editable_plugin.py").write_text("STEP = 2\n")
    assert before is not None and source_digest("editable_plugin") != before
    source_digest.cache_clear()
    assert run(tmp_path).exit_code == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert {"benchsuite", "benchsuite_plugins", "benchsuite_problems"} <= \
        set(manifest["fingerprint"]["code"])


def test_a_foreign_manifest_or_a_deleted_one_is_never_written_into(done):
    web = done / "webapp"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my app"}')
    (web / ".draft.tmp").write_text("keep me")
    out = run(done, "webapp")
    assert out.exit_code == 2 and "not a benchsuite manifest" in out.output
    assert sorted(p.name for p in web.iterdir()) == [".draft.tmp", "manifest.json"]
    (done / "r" / "manifest.json").unlink()
    out = run(done)
    assert out.exit_code == 2 and "has no manifest" in out.output


def test_stray_records_and_records_that_skip_their_files_are_caught(done):
    cells = done / "r" / "cells"
    first, second = sorted(cells.iterdir())[:2]
    shutil.copy(first, cells / "copy-of-a-record.json")
    record = json.loads(second.read_text())
    second.write_text(json.dumps({**record, "files": {}}))
    damaged = {c.key: c.detail for c in verify_run(done / "r") if c.status == "damaged"}
    assert set(damaged) == {"copy-of-a-record", second.stem}
    with pytest.warns(DamagedCellWarning):
        assert run(done).exit_code == 0
    assert all(c.status == "ok" for c in verify_run(done / "r"))
    assert_same_tables(done / "clean", done / "r")


def test_cells_that_would_share_a_file_are_refused(monkeypatch):
    import benchsuite.campaign as campaign_module
    from benchsuite.campaign import CampaignError, plan

    monkeypatch.setattr(campaign_module, "cell_key", lambda problem, label: "same")
    with pytest.raises(CampaignError, match="would share the file name"):
        plan(load_registry(), Campaign(problems=("xy_minus_one",), integrators=("euler", "rk45")))


@pytest.mark.parametrize("breakage", ["lock_dir", "deep_manifest", "cells_not_a_list",
                                      "no_campaign", "fifo"])
def test_broken_folders_give_a_message_not_a_traceback_or_a_hang(done, breakage):
    folder, manifest = done / "r", done / "r" / "manifest.json"
    data = json.loads(manifest.read_text())
    if breakage == "lock_dir":
        (folder / ".lock").unlink(missing_ok=True)
        (folder / ".lock").mkdir()
    elif breakage == "deep_manifest":
        manifest.write_text("[" * 100_000 + "]" * 100_000)
    elif breakage == "cells_not_a_list":
        manifest.write_text(json.dumps({**data, "cells": 5}))
    elif breakage == "no_campaign":
        manifest.write_text(json.dumps({k: v for k, v in data.items() if k != "campaign"}))
    else:  # a FIFO where a table was: hashing it would wait forever
        victim = next((folder / "trajectories").iterdir())
        victim.unlink()
        os.mkfifo(victim)
    expect = pytest.warns(DamagedCellWarning, match="not a regular file") \
        if breakage == "fifo" else contextlib.nullcontext()
    with expect:
        outs = [run(done), invoke("run", "--resume", str(folder), "--no-progress"),
                invoke("verify", str(folder))]
    for out in outs:
        assert ("Traceback" not in out.output and out.exception is None) or \
            isinstance(out.exception, SystemExit), out.output
    if breakage == "fifo":
        assert outs[2].exit_code == 0  # the resume recomputed the cell (the FIFO moved aside)
    elif breakage == "lock_dir":  # the cells themselves are fine
        assert [o.exit_code for o in outs] == [2, 2, 0]
    else:
        assert {o.exit_code for o in outs} == {2}, [o.output for o in outs]


@pytest.mark.parametrize("spec", ["euler(h=[])",
                                  "proximal(tau=[" + ",".join(["0.1"] * 40) + "], max_inner=["
                                  + ",".join(["10"] * 40) + "], min_tau=["
                                  + ",".join(["1e-9"] * 40) + "], memory=["
                                  + ",".join(["1"] * 40) + "])"])
def test_empty_and_enormous_grids_are_refused_before_they_are_built(tmp_path, spec):
    start = time.monotonic()
    out = invoke("run", "-i", spec, "--results-dir", str(tmp_path))
    assert out.exit_code == 2 and ("empty" in out.output or "2560000 combinations" in out.output)
    assert time.monotonic() - start < 10 and not any(tmp_path.iterdir())


def test_resume_refuses_options_it_would_ignore(done):
    out = invoke("run", "--resume", str(done / "r"), "--run-id", "other", "-c", "figure1")
    assert out.exit_code == 2 and "--campaign, --run-id" in out.output


def test_an_interrupt_in_any_command_exits_130(done, monkeypatch):
    import benchsuite.report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchsuite.report, "write_report", interrupted)
    out = invoke("report", str(done / "r"))
    assert out.exit_code == 130 and "interrupted by SIGINT" in out.output
