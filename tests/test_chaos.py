"""Chaos: bounded random trials against a campaign full of hostile oracles.

A fake installed distribution (a ``*.dist-info`` folder on PYTHONPATH, found by the entry-point
machinery exactly like a pip-installed plugin) registers problems whose gradient returns NaN,
inf, complex or integer values, raises, never returns, calls ``os._exit`` or ``sys.exit``,
segfaults, or asks for an impossible allocation, next to two healthy problems. Each trial then
disturbs ``benchsuite run`` at random (a signal at a random moment, to the main process or its
whole group; a random cell file damaged; a second run on the same folder) and checks the
invariants: the campaign never crashes (exit 1 = finished with failed trajectories, 130 =
interrupted, 2 = refused), no worker outlives its parent, nothing is ever damaged, and once
finished the folder verifies and equals an undisturbed run byte for byte.

``BENCHSUITE_CHAOS_TRIALS`` and ``BENCHSUITE_CHAOS_SEED`` make a longer soak (the README's
reliability figures come from one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_tables

from benchsuite.results import verify_run

TRIALS = int(os.environ.get("BENCHSUITE_CHAOS_TRIALS", "4"))
SEED = int(os.environ.get("BENCHSUITE_CHAOS_SEED", "2026"))

PLUGIN = '''
import ctypes, dataclasses, os, sys, time
import numpy as np
from benchsuite import hookimpl
from benchsuite_problems.factorization import xy_minus_one

def hostile(kind):
    base = xy_minus_one()

    def grad(X):
        G = base.grad(X)
        if kind == "nan":
            return np.where(X[:, :1] > 0, np.nan, G)
        if kind == "inf":
            return np.where(X[:, :1] > 0, np.inf, G)
        if kind == "complex":
            return G + 0j
        if kind == "int":
            return np.round(G).astype(np.int64)
        if kind == "raise":
            raise ArithmeticError("injected fault")
        if kind == "hang":
            time.sleep(3600)
        if kind == "os_exit":
            os._exit(3)
        if kind == "sys_exit":
            sys.exit(0)
        if kind == "segfault":
            ctypes.string_at(0)
        if kind == "alloc":
            return np.ones(2**62)
        return G

    return dataclasses.replace(base, name=f"hostile_{kind}", grad=grad)

KINDS = ("nan", "inf", "complex", "int", "raise", "hang", "os_exit", "sys_exit", "segfault",
         "alloc")

@hookimpl
def benchsuite_problems():
    return [hostile(k) for k in KINDS]
'''

CAMPAIGN = """
problems = ["hostile_*", "xy_minus_one", "remark3_rational_1d"]
integrators = ["euler(h=0.1)", "rk45"]
n_points = 8
[budget]
t_max = 5.0
max_steps = 2000
wall_time = 2.0   # the hung cell is killed at 2 x 2 + 2 = 6 s; the others take ~0.1 s
"""
CELLS = 12 * 2


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A fake installed distribution holding the hostile plugin."""
    root = tmp_path_factory.mktemp("site")
    (root / "chaos_plugin.py").write_text(PLUGIN)
    info = root / "chaos_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chaos-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[benchsuite]\nchaos = chaos_plugin\n")
    return root


def start(plugin_path: Path, results: Path, run_id: str) -> subprocess.Popen:
    campaign = results / "campaign.toml"
    campaign.write_text(CAMPAIGN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(plugin_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-m", "benchsuite", "run", "-c", str(campaign),
                             "--results-dir", str(results), "--run-id", run_id, "-j", "2",
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, codes: set[int], started: Path | None = None) -> str:
    """Wait for a run; its exit code must be one of ``codes`` and it must not crash.

    A signal that lands while the interpreter is still starting (before the command installs
    its handlers) kills it the default way; that is allowed only if nothing was written yet
    (no manifest in ``started``).
    """
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if started is not None and proc.returncode < 0 and not (started / "manifest.json").exists():
        return err
    assert proc.returncode in codes, f"exit {proc.returncode}: {err}"
    assert "Traceback" not in err, err
    return err


def survivors(run_id: str) -> list[int]:
    """Processes still running for this run id (workers share their parent's command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and run_id.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def no_orphans(run_id: str) -> None:
    deadline = time.monotonic() + 10
    while survivors(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not survivors(run_id), "workers outlived their parent"


def intact(folder: Path) -> list[str]:
    """The damaged cells of a run folder (a run killed before its manifest has none)."""
    if not (folder / "manifest.json").exists():
        assert not list(folder.glob("cells/*.json")), "cells written before the manifest"
        return []
    return [f"{c.key}: {c.detail}" for c in verify_run(folder) if c.status == "damaged"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_chaos(tmp_path, plugin_path):
    rng = np.random.default_rng(SEED)
    # 1 = finished, with the hostile cells' trajectories failed
    err = finish(start(plugin_path, tmp_path, "reference"), {1})
    reference = tmp_path / "reference"
    checks = verify_run(reference)
    assert len(checks) == CELLS and all(c.status == "ok" for c in checks), err
    log = []
    for trial in range(TRIALS):
        run_id = f"chaos-{SEED}-{trial}"
        folder = tmp_path / run_id
        kind = ["signal", "signal", "damage", "concurrent"][trial % 4] if TRIALS <= 8 else \
            rng.choice(["signal", "signal", "damage", "concurrent"])
        if kind == "signal":
            victim = start(plugin_path, tmp_path, run_id)
            time.sleep(rng.uniform(0.3, 5.0))
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
            group = bool(rng.integers(2))
            (os.killpg if group else os.kill)(victim.pid, sig)
            expected = {-signal.SIGKILL} if sig == signal.SIGKILL else {130}
            finish(victim, expected | {1}, folder)  # 1: it had finished before the signal
            no_orphans(run_id)
            assert not intact(folder), intact(folder)
            log.append(f"{signal.Signals(sig).name} to the {'group' if group else 'parent'}")
        elif kind == "damage":
            finish(start(plugin_path, tmp_path, run_id), {1})
            files = sorted(p for sub in ("trajectories", "checkpoints", "timings", "skipped")
                           for p in (folder / sub).glob("*"))
            victim = files[rng.integers(len(files))]
            data = bytearray(victim.read_bytes())
            if rng.integers(2):
                victim.write_bytes(data[: len(data) // 2])
            else:
                at = int(rng.integers(0, max(1, len(data) - 16)))
                data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
                victim.write_bytes(bytes(data))
            assert [d.split(":")[0] for d in intact(folder)] == [victim.stem]
            log.append(f"damaged {victim.parent.name}/{victim.name}")
        else:
            first = start(plugin_path, tmp_path, run_id)
            deadline = time.monotonic() + 60  # the first must hold the lock before the second
            while not (folder / ".lock.holder").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            second = start(plugin_path, tmp_path, run_id)
            assert "being written by" in finish(second, {2})
            finish(first, {1})
            log.append("second run refused while the first held the folder")
        finish(start(plugin_path, tmp_path, run_id), {1})  # resume (repairs damage)
        assert not intact(folder)
        assert all(c.status == "ok" for c in verify_run(folder))
        assert_same_tables(reference, folder)
    print(f"chaos seed {SEED}: {len(log)} trials, all invariants held: " + "; ".join(log))
