"""The Dask executor on a real cluster on this machine: a ``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1, started and torn down by the tests.

A run on the cluster equals the local executor's, byte for byte; a worker killed mid-run
loses nothing (its shards are retried on the other worker); a worker whose plugin code
differs from the client's refuses its tasks, and the run stops saying so without recording
anything for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import assert_same_tables

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a cluster may take to come up, and the most a test may wait on a run.
START_TIMEOUT, RUN_TIMEOUT = 60.0, 240.0
SMALL = ["-p", "mc2x2_example1", "-p", "xy_minus_one", "-i", "euler", "-i", "rk45",
         "-n", "24", "--shard-size", "6", "--t-max", "5", "--max-steps", "500",
         "--no-progress", "-q"]


def _dask(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen:
    # each in its own session: a teardown kills the process and all it started
    dask = Path(sys.executable).with_name("dask")  # the CLI of this environment's Dask
    return subprocess.Popen([str(dask), *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def cluster(tmp: Path, workers: int = 2, worker_env: dict[str, str] | None = None):
    """A scheduler and ``workers`` single-threaded workers on 127.0.0.1; yields (address,
    worker processes)."""
    scheduler_file = tmp / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file), log=tmp / "scheduler.log")]
    try:
        address = _wait_for_address(scheduler_file, procs[0])
        env = {**os.environ, **(worker_env or {})}
        started = [_dask("worker", address, "--nthreads", "1", "--nworkers", "1",
                         "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}",
                         env=env, log=tmp / f"worker{i}.log") for i in range(workers)]
        procs += started
        _wait_for_workers(address, workers)
        yield address, started
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_for_address(scheduler_file: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the scheduler exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.2)
    raise TimeoutError("the scheduler did not start")


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT) as client:
        client.wait_for_workers(n, timeout=START_TIMEOUT)


def benchsuite(*args: str, env: dict[str, str] | None = None,
               timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchsuite", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    done = benchsuite("run", *SMALL, "--results-dir", str(root), "--run-id", "r", "-j", "2")
    assert done.returncode == 0, done.stderr
    return root / "r"


def test_a_run_on_the_cluster_equals_the_local_one(tmp_path, local_run):
    with cluster(tmp_path) as (address, _):
        done = benchsuite("run", *SMALL, "--results-dir", str(tmp_path), "--run-id", "r",
                          "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert_same_tables(local_run, tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["campaign"]["executor"] == "dask"


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, local_run):
    with cluster(tmp_path) as (address, workers):
        run = subprocess.Popen([sys.executable, "-m", "benchsuite", "run", *SMALL,
                                "--results-dir", str(tmp_path), "--run-id", "r",
                                "--scheduler", address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim = _a_worker_running_a_shard(workers, run)
        os.killpg(victim.pid, signal.SIGKILL)  # the worker, its nanny and its shard process
        _, err = run.communicate(timeout=RUN_TIMEOUT)
    assert run.returncode == 0, err
    assert_same_tables(local_run, tmp_path / "r")  # retried elsewhere: nothing lost or failed


def _a_worker_running_a_shard(workers: list[subprocess.Popen], run: subprocess.Popen
                              ) -> subprocess.Popen:
    """The first worker seen running a shard (its forked shard process exists)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and run.poll() is None:
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                tree = psutil.Process(worker.pid).children(recursive=True)
                # nanny -> worker -> shard process: a grandchild means a shard is running
                if any(p.children() for p in tree):
                    return worker
        time.sleep(0.05)
    raise AssertionError("no worker was seen running a shard")


def test_a_worker_with_other_code_is_refused_and_nothing_is_recorded(tmp_path):
    # the worker imports an edited copy of the built-in integrators: same version number,
    # other source (an editable install changed, or a stale image on the cluster)
    edited = tmp_path / "edited"
    shutil.copytree(ROOT / "plugins", edited / "benchsuite_plugins")
    euler = edited / "benchsuite_plugins" / "euler.py"
    euler.write_text(euler.read_text() + "\n# edited on the worker only\n")
    env = {"PYTHONPATH": os.pathsep.join([str(edited), os.environ.get("PYTHONPATH", "")])}
    with cluster(tmp_path, workers=1, worker_env=env) as (address, _):
        done = benchsuite("run", *SMALL, "-i", "euler", "--results-dir", str(tmp_path),
                          "--run-id", "r", "--scheduler", address)
    assert done.returncode != 0
    assert "refused" in done.stderr and "source of benchsuite_plugins" in done.stderr
    assert "install the client's versions on every worker" in done.stderr
    assert not list((tmp_path / "r").glob("trajectories/*.parquet"))


def test_an_unreachable_scheduler_is_an_error_not_a_hang(tmp_path):
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"}  # Dask's setting
    done = benchsuite("run", *SMALL, "--results-dir", str(tmp_path), "--scheduler",
                      "tcp://127.0.0.1:9", env=env, timeout=120)
    assert done.returncode == 2 and "cannot reach the Dask scheduler" in done.stderr
    for address in ("foo", "http://127.0.0.1:1"):  # malformed: an error at once, no traceback
        done = benchsuite("run", *SMALL, "--results-dir", str(tmp_path), "--scheduler", address)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "cannot reach the Dask scheduler" in done.stderr
