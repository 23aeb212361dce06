"""The array backend as campaign data: the same labels on JAX as on numpy, the backend in the
manifest, the cells' records and the fingerprint, and clear refusals before any work.

The local executor forks its workers, except those that call into JAX once JAX runs in the
parent (a fork then deadlocks): they start afresh, with the containment of forked workers. The
last tests check that containment, and start JAX in a process of their own to run campaigns
from it, which must finish, with the tables the forked workers wrote.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_same_tables

from benchsuite import execution, hookimpl
from benchsuite.campaign import Campaign, WorkersRefused, check_backend, plan, run_campaign
from benchsuite.cli import EXIT_USAGE, main
from benchsuite.execution import ForkExecutor, TaskFailure, run_contained
from benchsuite.fingerprint import fingerprint
from benchsuite.harness import Budget
from benchsuite.plugins import load_registry
from benchsuite.results import load_results
from benchsuite.runs import summarize_run
from benchsuite.tasks import make_task, run_task
from benchsuite_problems.factorization import xy_minus_one

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="jax is not installed")
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

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
    """The campaign run once on numpy and once on JAX (CPU), by the local executor."""
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


class NoWorkers:
    """An executor that must not be asked for anything."""

    def run(self, fn, tasks, time_limit=None):
        raise AssertionError(f"{len(tasks)} tasks sent to workers")


@needs_jax
def test_a_numpy_only_cell_of_several_shards_is_skipped_without_workers(reg, tmp_path):
    """Known in the parent: no worker starts (and imports JAX) only to say it is skipped, as
    for an integrator that does not apply."""
    campaign = replace(JAX, problems=("xy_minus_one",), integrators=("scipy_ivp",), shard_size=4)
    run = run_campaign(campaign, reg, tmp_path / "run", executor=NoWorkers()).path
    (reason,) = load_results(run)["skipped"]["reason"]
    assert "integrator scipy_ivp is numpy-only (array_api = False)" in reason


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
    outcome = run_contained(run_task, task)  # in a child process, as a worker
    assert isinstance(outcome, TaskFailure) and outcome.refused
    assert "this worker cannot run the campaign's backend" in outcome.message


# -- fresh workers keep the containment of forked ones -----------------------------------------


@pytest.fixture
def fresh(monkeypatch):
    """The local executor as in a process where JAX runs (without starting JAX here): it runs
    afresh every task that does not say it never calls into JAX."""
    monkeypatch.setattr(execution, "jax_running", lambda: True)


def _act(kind: str):
    """What a task does in its worker (the deaths of tests/test_containment.py)."""
    if kind == "fresh":  # a fresh interpreter (benchsuite.execution.FreshWorker), not a fork
        return "_fresh_child" in " ".join(sys.orig_argv)
    if kind == "sys_exit":
        sys.exit("bye")
    if kind == "os_exit":
        os._exit(3)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "unpicklable":
        return lambda: None
    if kind == "sigterm_to_self":  # ignored by workers: only the parent acts on it
        os.kill(os.getpid(), signal.SIGTERM)
    if kind == "warn":
        warnings.warn("injected warning", stacklevel=1)
    if kind.startswith("hang:"):  # say so, then never return
        Path(kind[5:], str(os.getpid())).touch()
        time.sleep(3600)
    return kind


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead


def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@needs_proc
def test_fresh_workers_fail_alone_and_say_why(fresh, tmp_path):
    kinds = ["fresh", "sys_exit", "os_exit", "sigkill", "unpicklable", "sigterm_to_self",
             lambda: None,  # a task that cannot travel to a fresh interpreter
             "warn"]  # the parent's warning filters hold there, as in a fork
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "injected warning", UserWarning)
        out = dict(ForkExecutor(4).run(_act, kinds, time_limit=120.0))
    assert out[0] is True and out[5] == "sigterm_to_self"
    for i, expected in ((1, "the cell called sys.exit('bye')"),
                        (2, "worker exited with code 3 before returning a result"),
                        (3, "worker killed by signal SIGKILL (9): out of memory?"),
                        (4, "could not send the result back"),
                        (6, "could not send the task to a fresh worker"),
                        (7, "UserWarning: injected warning")):
        assert isinstance(out[i], TaskFailure) and expected in out[i].message, out[i]
    # the hard time limit kills the worker and what its task started (a shell, here)
    mark = tmp_path / "shell"
    ((_, hung),) = ForkExecutor(1).run(subprocess.call, [
        ["sh", "-c", f"echo $$ > {mark}; exec sleep 300"]], time_limit=8.0)
    assert isinstance(hung, TaskFailure) and "hard time limit of 8 s" in hung.message
    assert _until(lambda: not _alive(int(mark.read_text())), 5)


FRESH_DRIVER = textwrap.dedent("""
    import sys
    from benchsuite import execution
    from test_backend_campaign import _act

    execution.jax_running = lambda: True  # as in a process where JAX runs
    try:
        list(execution.ForkExecutor(2).run(_act, [f"hang:{sys.argv[1]}"] * 2))
    except execution.Interrupted as exc:
        print("Interrupted", exc.signal, flush=True)
        sys.exit(7)
""")


@needs_proc
@pytest.mark.parametrize(("signum", "group"), [(signal.SIGKILL, False), (signal.SIGHUP, True)],
                         ids=["sigkill-parent", "sighup-group"])
def test_fresh_workers_die_with_their_run(tmp_path, signum, group):
    """A parent killed outright takes its fresh workers with it (they are its children, as
    forked ones are), and a signal to the whole group stops the run like Ctrl-C. The parent is
    a script with no ``if __name__ == "__main__"`` guard: a fresh worker never runs it."""
    script, marks = tmp_path / "driver.py", tmp_path / "marks"
    script.write_text(FRESH_DRIVER)
    marks.mkdir()
    driver = subprocess.Popen([sys.executable, str(script), str(marks)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                  str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))})
    try:
        assert _until(lambda: len(list(marks.iterdir())) == 2, 120), "no workers came up"
        pids = [int(mark.name) for mark in marks.iterdir()]
        (os.killpg if group else os.kill)(driver.pid, signum)
        out, err = driver.communicate(timeout=60)
        if group:
            assert driver.returncode == 7 and out.strip() == "Interrupted SIGHUP", err
        assert _until(lambda: not any(_alive(pid) for pid in pids), 5), \
            [pid for pid in pids if _alive(pid)]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.communicate(timeout=30)


class HereOnly:
    """A plugin registered in this process only (no entry point)."""

    @hookimpl
    def benchsuite_problems(self):
        return [replace(xy_minus_one(), name="here_only")]


@needs_jax
def test_a_fresh_worker_refuses_a_plugin_registered_in_the_parent_only(fresh, tmp_path):
    registry = load_registry(extra_plugins={"here": HereOnly()})
    campaign = replace(JAX, problems=("here_only",), integrators=("euler(h=0.05)",))
    with pytest.raises(WorkersRefused) as refused:
        run_campaign(campaign, registry, tmp_path / "run")
    assert ("no problem named 'here_only' is installed on this worker (a worker that starts "
            "afresh") in str(refused.value)
    assert not list((tmp_path / "run" / "cells").glob("*"))


# -- campaigns from a process where JAX runs ---------------------------------------------------

#: An installed plugin (a fake distribution on PYTHONPATH, as in test_chaos): a problem that
#: takes its gradient from JAX, whose workers call into JAX on the numpy backend too, and its
#: twin with the gradient written by hand.
AUTODIFF_PLUGIN = """
import numpy as np
from benchsuite import Problem, Theory, Verdict, hookimpl, uniform_box
from benchsuite.arrays import namespace

def sample(rng, n):  # the twins' points are the same, whatever their names seed
    return uniform_box(-2.0, 2.0, 2)(np.random.default_rng(7), n)

def f(X):
    return 0.5 * (X[:, 0] * X[:, 1] - 2.0) ** 2

def grad(X):
    r = X[:, 0] * X[:, 1] - 2.0
    return namespace(X).stack([r * X[:, 1], r * X[:, 0]], axis=1)

def hyperbola(name, **gradient):
    return Problem(name=name, n=2, f=f, sample=sample, f_star=0.0,
                   attained=True, smooth=True, coercive=False, critical_values=(0.0, 2.0),
                   critical_values_complete=True, description="(x y - 2)^2 / 2",
                   theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO, source="test"),
                   **gradient)

@hookimpl
def benchsuite_problems():
    return [hyperbola("hyperbola_autodiff", autodiff=True),
            hyperbola("hyperbola_by_hand", grad=grad)]
"""
#: On numpy: a fresh worker (the autodiff gradient) and a forked one (its twin).
AUTODIFF = replace(CAMPAIGN, problems=("hyperbola_*",), integrators=("euler(h=0.05)",))
JAX_FIRST = textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    warnings.simplefilter("error", RuntimeWarning)  # JAX's at-fork warning among them
    import jax.numpy as jnp
    from benchsuite.campaign import run_campaign
    from benchsuite.execution import jax_running
    from benchsuite.plugins import load_registry
    from test_backend_campaign import AUTODIFF, JAX

    assert not jax_running()
    assert float(jnp.sum(jnp.ones(3))) == 3.0 and jax_running()  # JAX's threads run here
    registry = load_registry(strict=True)
    for name, campaign in (("jax", JAX), ("numpy", AUTODIFF)):  # the local executor
        run_campaign(campaign, registry, Path(sys.argv[1]) / name)
""")


@needs_jax
@pytest.mark.slow
def test_campaigns_run_from_a_process_where_jax_runs(runs, tmp_path):
    """A fork of a process whose JAX runs deadlocks in the child's first JAX call: the local
    executor starts afresh the workers that call into JAX (jax backend, autodiff gradient), forks
    the others, and the tables are those of forked workers. In a process of its own, with a
    time limit, so that a deadlock fails the test instead of hanging the suite."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "autodiff_plugin.py").write_text(AUTODIFF_PLUGIN)
    info = site / "autodiff_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autodiff-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[benchsuite]\nautodiff = autodiff_plugin\n")
    path = [str(site), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    try:
        done = subprocess.run([sys.executable, "-c", JAX_FIRST, str(tmp_path)], text=True,
                              capture_output=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))})
    except subprocess.TimeoutExpired as exc:  # its workers die with it (PR_SET_PDEATHSIG)
        pytest.fail(f"deadlocked: no end after {exc.timeout:g} s\n{exc.stderr}")
    assert done.returncode == 0, done.stderr
    assert "os.fork() was called" not in done.stderr
    assert_same_tables(runs["jax"], tmp_path / "jax")  # fresh workers, the same bytes
    traj = _traj(tmp_path / "numpy")
    assert not (traj["stop"] == "error").any(), traj["message"]
    auto, hand = (traj[traj["problem"] == name].reset_index(drop=True)
                  for name in ("hyperbola_autodiff", "hyperbola_by_hand"))
    assert len(auto) == len(hand) == CAMPAIGN.n_points
    for column in ("outcome", "stop", "steps"):
        assert list(auto[column].astype(str)) == list(hand[column].astype(str)), column
    np.testing.assert_allclose(np.stack(auto["x"]), np.stack(hand["x"]), rtol=1e-12, atol=0.0)
