"""The example third-party plugin: installing it adds its problem and integrator, with no edit of
benchsuite; uninstalling removes them. Runs offline: the wheel is built without build isolation
and installed with --no-deps --no-index into a fresh virtual environment that sees this one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import child_venv, sh

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "heavyball"
DIST = "benchsuite-heavyball"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
       "-w", tmp / "wheels", PLUGIN)
    (wheel,) = (tmp / "wheels").glob("benchsuite_heavyball-*.whl")
    python = child_venv(tmp / "venv")
    return python, wheel, tmp


def listing(python):
    return json.loads(sh(python, "-m", "benchsuite", "list", "--json"))


def test_install_list_run_uninstall(venv):
    python, wheel, tmp = venv
    before = listing(python)
    assert "heavyball" not in {i["name"] for i in before["integrators"]}

    sh(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    after = listing(python)
    integrators = {i["name"]: i for i in after["integrators"]}
    problems = {p["name"]: p for p in after["problems"]}
    assert integrators["heavyball"]["distribution"] == DIST
    assert problems["rosenbrock2d"]["distribution"] == DIST
    plugins_out = sh(python, "-m", "benchsuite", "plugins")
    assert DIST in plugins_out and "1.1.0" in plugins_out
    # and it passes the plugin kit
    checked = json.loads(sh(python, "-m", "benchsuite", "check", "--plugin", DIST, "--json"))
    assert checked["ok"] and checked["counts"]["warn"] == 0
    assert {f["subject"] for f in checked["findings"]} == {DIST, "heavyball", "rosenbrock2d"}

    # a run uses them, like any built-in
    sh(python, "-m", "benchsuite", "run", "-p", "rosenbrock2d", "-p", "xy_minus_one",
       "-i", "heavyball(h=0.001, beta=0.5)", "-i", "euler(h=0.001)", "-n", "4", "--t-max", "2",
       "--results-dir", tmp / "results", "--run-id", "with-plugin", "--no-progress")
    code = ("import sys; from benchsuite.results import load_results; "
            "t = load_results(sys.argv[1])['trajectories']; "
            "print(sorted(set(zip(t.problem, t.integrator))))")
    cells = sh(python, "-c", code, tmp / "results" / "with-plugin")
    assert "('rosenbrock2d', 'heavyball(h=0.001,beta=0.5)')" in cells
    assert "('xy_minus_one', 'euler(h=0.001)')" in cells

    sh(python, "-m", "pip", "uninstall", "-y", "-q", DIST)
    gone = listing(python)
    assert "heavyball" not in {i["name"] for i in gone["integrators"]}
    assert "rosenbrock2d" not in {p["name"] for p in gone["problems"]}
