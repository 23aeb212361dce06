"""Containment: every fault stays in its cell or its rows, and no worker outlives its run.

Hostile oracles (``sys.exit``, ``os._exit``, a segfault, a huge allocation, complex or integer
gradients) fail their own cell or rows with a message naming the cause, while a healthy problem
in the same campaign is untouched; workers die with their parent, and SIGTERM or SIGHUP stop a
run like Ctrl-C, leaving no worker alive and no cell recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import faulthandler
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import array_api_strict
import numpy as np
import pandas as pd
import pytest

from benchsuite import Budget, hookimpl, run_cell
from benchsuite.campaign import Campaign, run_campaign
from benchsuite.execution import ForkExecutor, Interrupted, SerialExecutor, TaskFailure
from benchsuite.oracle import is_real_floating
from benchsuite.plugins import load_registry
from benchsuite.results import load_results
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_problems.factorization import xy_minus_one


def hostile(kind: str):
    """xy_minus_one whose gradient does something no oracle should."""
    base = xy_minus_one()

    def grad(X):
        if kind == "sys_exit":
            sys.exit(0)
        if kind == "os_exit":
            os._exit(3)
        if kind == "segfault":
            faulthandler.disable()  # in this worker only: no traceback dump on the terminal
            ctypes.string_at(0)
        if kind == "raise":
            raise ZeroDivisionError("injected fault")
        if kind == "memory":
            np.ones(2**59)  # 4 EiB: MemoryError (2**62 elements overflows: a ValueError)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "complex":
            return base.grad(X).astype(complex)
        if kind == "int":
            return base.grad(X).astype(np.int64)
        return base.grad(X)

    return dataclasses.replace(base, name=f"hostile_{kind}", grad=grad)


CAUSES = {  # kind -> what the failed rows' message must say
    "sys_exit": "the cell called sys.exit(0)",
    "os_exit": "worker exited with code 3 before returning a result",
    "segfault": "worker killed by signal SIGSEGV (11)",
    "raise": "ZeroDivisionError: injected fault",
    "memory": "Unable to allocate",
    "interrupt": "the cell raised KeyboardInterrupt",
    "complex": "hostile_complex.grad returned dtype complex128; oracles must return real",
    "int": "hostile_int.grad returned dtype int64; oracles must return real",
}


class HostilePlugin:
    @hookimpl
    def benchsuite_problems(self):
        return [hostile(kind) for kind in CAUSES]


def test_hostile_cells_fail_with_their_cause_and_the_healthy_one_is_untouched(tmp_path):
    reg = load_registry(extra_plugins={"hostile": HostilePlugin()})
    campaign = Campaign(problems=("hostile_*", "xy_minus_one"), integrators=("euler",),
                        n_points=3, budget=Budget(t_max=20.0, wall_time=30.0))
    store = run_campaign(campaign, reg, tmp_path / "run", executor=ForkExecutor(2),
                         hard_limit=60.0)
    traj = load_results(store.path)["trajectories"]
    assert set(traj["problem"]) == {f"hostile_{k}" for k in CAUSES} | {"xy_minus_one"}
    for kind, cause in CAUSES.items():
        rows = traj[traj["problem"] == f"hostile_{kind}"]
        assert len(rows) == 3, kind
        assert (rows["stop"] == "error").all(), (kind, rows["stop"].tolist())
        assert (rows["outcome"].astype(str) == "failed").all(), kind
        assert rows["message"].str.contains(cause, regex=False).all(), (kind, rows["message"])
    healthy = traj[traj["problem"] == "xy_minus_one"]
    assert (healthy["stop"] == "t_max").all()
    assert (healthy["outcome"].astype(str) == "converged_global").all()
    alone = Campaign(problems=("xy_minus_one",), integrators=("euler",), n_points=3,
                     budget=campaign.budget)
    reference = load_results(run_campaign(alone, reg, tmp_path / "alone",
                                          executor=SerialExecutor()).path)["trajectories"]
    pd.testing.assert_frame_equal(healthy.reset_index(drop=True),  # categories differ
                                  reference.reset_index(drop=True), check_dtype=False,
                                  check_categorical=False)


def _act(kind):
    """Executor-level hostility: what the task function itself does."""
    if kind == "sys_exit_text":
        sys.exit("bye")
    if kind == "os_exit_0":
        os._exit(0)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "unpicklable":
        return lambda: None
    if kind == "sigterm_to_self":  # ignored by workers: only the parent acts on it
        os.kill(os.getpid(), signal.SIGTERM)
    return kind


@pytest.mark.parametrize(("kind", "expected"), [
    ("sys_exit_text", "the cell called sys.exit('bye')"),
    ("os_exit_0", "worker exited with code 0 before returning a result"),
    ("sigkill", "worker killed by signal SIGKILL (9): out of memory?"),
    ("unpicklable", "could not send the result back"),
    ("sigterm_to_self", None),
])
def test_every_worker_death_says_why(kind, expected):
    out = dict(ForkExecutor(2).run(_act, [kind, "fine"], time_limit=30.0))
    assert out[1] == "fine"
    if expected is None:
        assert out[0] == kind
    else:
        assert isinstance(out[0], TaskFailure) and expected in out[0].message, out[0]


@pytest.mark.parametrize("integrator", [ExplicitEuler(), DormandPrince()],
                         ids=["euler", "rk45"])
@pytest.mark.parametrize(("dtype", "name"), [(np.int64, "int64"), (complex, "complex128"),
                                             (bool, "bool"), (object, "object")])
def test_non_real_floating_gradients_fail_their_rows(integrator, dtype, name):
    base = xy_minus_one()
    p = dataclasses.replace(base, name="bad_dtype", grad=lambda X: base.grad(X).astype(dtype))
    traj = run_cell(p, integrator, p.sample(np.random.default_rng(0), 4),
                    Budget(t_max=1.0)).trajectories
    assert (traj["stop"] == "error").all() and (traj["outcome"].astype(str) == "failed").all()
    assert traj["message"].str.contains(f"bad_dtype.grad returned dtype {name}; oracles must "
                                        "return real floating arrays", regex=False).all()


def test_float32_oracles_are_allowed():
    base = xy_minus_one()
    p = dataclasses.replace(base, name="single",
                            grad=lambda X: base.grad(X).astype(np.float32))
    traj = run_cell(p, DormandPrince(), p.sample(np.random.default_rng(0), 4),
                    Budget(t_max=5.0)).trajectories
    assert (traj["stop"] == "t_max").all()
    for xp in (np, array_api_strict):
        assert is_real_floating(xp.zeros(2, dtype=xp.float32))
        assert is_real_floating(xp.zeros(2, dtype=xp.float64))
        assert not is_real_floating(xp.zeros(2, dtype=xp.complex128))
        assert not is_real_floating(xp.zeros(2, dtype=xp.int64))
        assert not is_real_floating(xp.zeros(2, dtype=xp.bool))


# -- workers never outlive their run ---

DRIVER = textwrap.dedent("""
    import dataclasses, os, sys, time
    from pathlib import Path
    from benchsuite import Budget, hookimpl
    from benchsuite.campaign import Campaign, run_campaign
    from benchsuite.execution import ForkExecutor, Interrupted
    from benchsuite.plugins import load_registry
    from benchsuite_problems.factorization import xy_minus_one

    marks = Path(sys.argv[1])

    class Sleeps:
        @hookimpl
        def benchsuite_problems(self):
            def never(X):
                (marks / str(os.getpid())).touch()  # this worker is up
                time.sleep(3600)
            return [dataclasses.replace(xy_minus_one(), name="sleeps", f=never, grad=never)]

    campaign = Campaign(problems=("sleeps",), integrators=("euler(h=[0.1, 0.05])",),
                        n_points=2, budget=Budget(t_max=1.0))
    try:
        run_campaign(campaign, load_registry(extra_plugins={"sleeps": Sleeps()}),
                     marks.parent / "run", executor=ForkExecutor(2), hard_limit=3600)
    except Interrupted as exc:
        print(type(exc).__name__, exc.signal, flush=True)
        sys.exit(7)
    sys.exit(1)
""")

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...); None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie is dead


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def driver_with_workers(tmp_path):
    """A campaign in a fresh process group whose two workers sleep; yields (driver, workers)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(marks)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert _wait_until(lambda: len(list(marks.iterdir())) == 2, 60), "no workers came up"
        workers = [int(p.name) for p in marks.iterdir()]
        assert all(int(_stat(w)[1]) == driver.pid for w in workers)  # children of the driver
        yield driver, workers
    finally:  # whatever happened, the whole group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=30)


@needs_proc
def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path):
    with driver_with_workers(tmp_path) as (driver, workers):
        os.kill(driver.pid, signal.SIGKILL)  # the parent only: it runs no cleanup at all
        driver.wait(timeout=10)
        assert _wait_until(lambda: not any(_alive(w) for w in workers), 5), \
            [w for w in workers if _alive(w)]


@needs_proc
@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, False), (signal.SIGHUP, True)],
                         ids=["sigterm-parent", "sighup-group"])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(tmp_path, signum, group):
    with driver_with_workers(tmp_path) as (driver, workers):
        if group:  # a closing terminal or a service manager signals every process
            os.killpg(driver.pid, signum)
        else:
            os.kill(driver.pid, signum)
        out, err = driver.communicate(timeout=30)
        assert driver.returncode == 7, err
        assert out.strip() == f"Interrupted {signum.name}"
        assert not any(_alive(w) for w in workers)  # killed and joined before it returned
        assert not list((tmp_path / "run" / "trajectories").glob("*.parquet"))  # nothing kept


def test_interrupted_is_a_keyboard_interrupt_that_names_its_signal():
    exc = Interrupted("SIGTERM")
    assert isinstance(exc, KeyboardInterrupt) and exc.signal == "SIGTERM"
    assert str(exc) == "interrupted by SIGTERM"
    again = pickle.loads(pickle.dumps(exc))
    assert again.signal == "SIGTERM" and str(again) == "interrupted by SIGTERM"


class Spawner:
    """A plugin whose gradient starts a background process, then never returns."""

    @hookimpl
    def benchsuite_problems(self):
        def grad(X):
            subprocess.Popen(["sleep", "299.125"])
            time.sleep(3600)

        return [dataclasses.replace(xy_minus_one(), name="spawner", grad=grad)]


def _sleepers() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and b"299.125" in (proc / "cmdline").read_bytes():
                found.append(proc.name)
    return found


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_what_a_cell_starts_is_killed_with_it(tmp_path):
    reg = load_registry(extra_plugins={"spawner": Spawner()})
    campaign = Campaign(problems=("spawner",), integrators=("euler",), n_points=2,
                        budget=Budget(t_max=1.0, wall_time=0.5))
    run_campaign(campaign, reg, tmp_path / "run", executor=ForkExecutor(1), hard_limit=2.0)
    deadline = time.monotonic() + 5
    while _sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleepers()
