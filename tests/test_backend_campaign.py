"""The array backend as campaign data: the same labels on JAX as on numpy, the backend in the
manifest, the cells' records and the fingerprint, and clear refusals before any work.

JAX is started only in forked workers and probes, never in this process: the local executor
forks from here, and a fork after JAX has started its threads may deadlock (JAX warns, and
RuntimeWarnings are errors in this suite).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from benchsuite.campaign import Campaign, check_backend, plan, run_campaign
from benchsuite.cli import EXIT_USAGE, main
from benchsuite.execution import ForkExecutor, TaskFailure, run_contained
from benchsuite.fingerprint import fingerprint
from benchsuite.harness import Budget
from benchsuite.plugins import load_registry
from benchsuite.results import load_results
from benchsuite.runs import summarize_run
from benchsuite.tasks import make_task, run_task

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="jax is not installed")

# six cells on numpy; on JAX four compiled cells, and scipy_ivp (numpy-only) skipped twice
CAMPAIGN = Campaign(problems=("xy_minus_one", "remark3_rational_1d"),
                    integrators=("euler(h=0.05)", "subgradient", "scipy_ivp"), n_points=8, seed=2,
                    budget=Budget(t_max=3.0, max_steps=2000, wall_time=120.0))
#: The numpy run in shards of 4, so that a cell's record is merged from its shards' records.
NUMPY = replace(CAMPAIGN, shard_size=4)
JAX = replace(CAMPAIGN, backend="jax")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def snapshot(folder: Path) -> dict[Path, int]:
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def reg():
    """One registry for the module (read only here)."""
    return load_registry(strict=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, reg) -> dict[str, Path]:
    """The campaign run once on numpy and once on JAX (CPU), in forked workers."""
    registry = reg
    root = tmp_path_factory.mktemp("backends")
    folders = {"numpy": run_campaign(NUMPY, registry, root / "numpy",
                                     executor=ForkExecutor(2)).path}
    if importlib.util.find_spec("jax") is not None:
        folders["jax"] = run_campaign(JAX, registry, root / "jax", executor=ForkExecutor(2)).path
    return folders


def _traj(run: Path) -> pd.DataFrame:
    traj = load_results(run)["trajectories"]
    return traj.sort_values(["problem", "integrator", "traj"]).reset_index(drop=True)


@needs_jax
def test_jax_gives_numpy_labels_and_euler_points(runs):
    numpy_rows, jax_rows = _traj(runs["numpy"]), _traj(runs["jax"])
    numpy_rows = numpy_rows[numpy_rows["method"].astype(str) != "scipy_ivp"].reset_index(drop=True)
    keys = ["problem", "integrator", "traj"]
    assert len(jax_rows) == len(numpy_rows) == 2 * 2 * CAMPAIGN.n_points
    pd.testing.assert_frame_equal(jax_rows[keys], numpy_rows[keys])
    assert list(jax_rows["outcome"].astype(str)) == list(numpy_rows["outcome"].astype(str))
    assert list(jax_rows["stop"].astype(str)) == list(numpy_rows["stop"].astype(str))
    euler = numpy_rows["method"].astype(str) == "euler"
    assert euler.sum() == 2 * CAMPAIGN.n_points
    for a, b in zip(numpy_rows.loc[euler, "x"], jax_rows.loc[euler, "x"], strict=True):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        assert np.linalg.norm(a - b) <= 1e-9 * max(np.linalg.norm(a), 1e-300), (a, b)


@needs_jax
def test_manifest_and_cell_records_say_which_backend_ran(runs):
    run = runs["jax"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["campaign"]["backend"] == "jax" and manifest["campaign"]["device"] is None
    assert manifest["fingerprint"]["backend"] == "jax"
    about = manifest["invocations"][-1]["backend"]
    assert about["backend"] == "jax" and about["device"] == "cpu"
    assert about["version"] == metadata.version("jax")
    assert about["platform"].startswith("cpu")
    records = [json.loads(p.read_text()) for p in (run / "cells").glob("*.json")]
    assert len(records) == 6
    for record in records:  # the skipped cells too: their worker found the same backend
        assert record["backend"] == about, record["key"]
        assert record["versions"]["benchsuite"]
    timings = load_results(run)["timings"]
    assert "backend" not in timings  # provenance lives in the records, not in the timings


def test_numpy_runs_record_numpy_and_keep_their_fingerprint(runs):
    run = runs["numpy"]
    manifest = json.loads((run / "manifest.json").read_text())
    # keys at the value every older folder implied are left out of the fingerprint
    assert "backend" not in manifest["fingerprint"] and "device" not in manifest["fingerprint"]
    assert manifest["invocations"][-1]["backend"] == {"backend": "numpy", "device": "cpu",
                                                      "version": np.__version__}
    for path in (run / "cells").glob("*.json"):  # merged from two shards' records
        record = json.loads(path.read_text())
        assert record["backend"]["backend"] == "numpy", record["key"]
    assert not list((run / "shards").glob("*.json"))


def test_the_backend_and_the_kind_of_device_make_the_fingerprint(reg):
    registry = reg
    cells = plan(registry, CAMPAIGN)

    def print_(**changes: object) -> dict[str, object]:
        return fingerprint(replace(CAMPAIGN, **changes), registry, cells)

    base = print_()
    assert "backend" not in base and print_(executor="dask") == base
    assert print_(backend="jax")["backend"] == "jax" and "device" not in print_(backend="jax")
    gpu = print_(backend="jax", device="gpu")
    assert gpu["device"] == "gpu" and gpu != print_(backend="jax")
    assert print_(backend="jax", device="gpu:1") == gpu  # another GPU of the same kind


def test_numpy_is_checked_in_process():
    assert check_backend("numpy") == {"backend": "numpy", "device": "cpu",
                                      "version": np.__version__}


@needs_jax
def test_resuming_a_numpy_run_on_jax_is_refused_and_loses_nothing(runs, tmp_path):
    folder = tmp_path / "numpy"
    shutil.copytree(runs["numpy"], folder)
    before = snapshot(folder)
    out = invoke("run", "--resume", str(folder), "--backend", "jax", "--no-progress")
    assert out.exit_code == EXIT_USAGE, out.output
    assert "backend: folder has 'numpy', this run 'jax'" in out.output
    assert f"--resume {folder} with no other options" in out.output
    assert snapshot(folder) == before  # not even the manifest was touched
    assert load_results(folder)["cells"]["status"].eq("ok").all()


@pytest.mark.parametrize(("options", "message"), [
    (["--backend", "nope"], "backend must be one of numpy, jax"),
    (["--device", "gpu"], "backend numpy has no device 'gpu'"),
    (["--device", "g p u"], "device must be a device such as cpu, gpu"),
    pytest.param(["--backend", "jax", "--device", "tpu:9"],
                 "jax sees no tpu:9 device on this machine (it has: ", marks=needs_jax),
])
def test_an_unusable_backend_or_device_is_refused_before_anything_is_written(
        tmp_path, options, message):
    results = tmp_path / "results"
    out = invoke("run", "-p", "xy_minus_one", "-i", "euler", "-n", "2", "--no-progress",
                 "--results-dir", str(results), *options)
    assert out.exit_code == EXIT_USAGE, out.output
    assert message in out.output and out.output.startswith("error: ")
    assert not results.exists()


@needs_jax
def test_numpy_only_plugins_are_skipped_with_the_reason_on_jax(runs):
    tables = load_results(runs["jax"])
    skipped = tables["skipped"]
    assert sorted(skipped["integrator"].astype(str).str.split("(").str[0]) == ["scipy_ivp"] * 2
    assert skipped["reason"].str.contains(
        "integrator scipy_ivp is numpy-only (array_api = False) and the campaign runs on the "
        "jax backend", regex=False).all()
    summary = summarize_run(runs["jax"], tables)
    assert summary.skipped == 2 and summary.intact
    from benchsuite.report import campaign_html

    manifest = json.loads((runs["jax"] / "manifest.json").read_text())
    assert f"jax {metadata.version('jax')} on cpu" in campaign_html(manifest, {})


@needs_jax
def test_a_campaign_left_with_nothing_to_run_on_jax_is_refused(tmp_path):
    out = invoke("run", "-p", "xy_minus_one", "-i", "scipy_ivp", "--backend", "jax", "-n", "2",
                 "--results-dir", str(tmp_path / "results"), "--no-progress")
    assert out.exit_code == EXIT_USAGE and "nothing to run" in out.output
    assert "numpy-only" in out.output and "-i euler" in out.output
    assert not (tmp_path / "results").exists()


@needs_jax
def test_a_worker_that_cannot_run_the_backend_refuses_its_task(reg):
    registry = reg
    campaign = replace(CAMPAIGN, problems=("xy_minus_one",), integrators=("euler",),
                       backend="jax", device="gpu:7")
    (cell,) = plan(registry, campaign)
    task = make_task(cell, campaign, registry)
    assert (task.backend, task.device) == ("jax", "gpu:7")
    outcome = run_contained(run_task, task)  # forked: JAX never starts in this process
    assert isinstance(outcome, TaskFailure) and outcome.refused
    assert "this worker cannot run the campaign's backend" in outcome.message
