"""``benchsuite new-plugin`` end to end: the generated package installs, registers its problem
and integrator, runs in a campaign and passes its own tests, which run the whole conformance kit
on it. Runs offline: the package is generated through the command line, its wheel built without
build isolation and installed with --no-deps --no-index into a fresh virtual environment that
sees this one, as in test_example_plugin. The template itself is tested in test_scaffold.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_venv, sh

NAME = "acme"
DIST = "benchsuite-acme"
PACKAGE = "benchsuite_acme"
PROBLEM = "acme_hyperbola[a=2]"
INTEGRATOR = "acme_heun"
#: The generated tests that pass: 19 of the 24 kit checks (5 do not apply: no prox twice, no
#: certificate, smooth so no subgradient, no descent claim), the entry point, the invariant.
GENERATED_PASSED = 21

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the generated plugin installed, the plugin folder, tmp)."""
    tmp = tmp_path_factory.mktemp("new_plugin")
    out = sh(sys.executable, "-m", "benchsuite", "new-plugin", NAME, "--dir", tmp)
    target = Path(out.splitlines()[0])
    assert target == tmp / DIST and (target / "pyproject.toml").is_file()
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
       "-w", tmp / "wheels", target)
    (wheel,) = (tmp / "wheels").glob(f"{PACKAGE}-0.1.0-*.whl")
    python = child_venv(tmp / "venv")
    sh(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    return python, target, tmp


def test_installed_plugin_lists_runs_and_passes_its_tests(installed):
    python, target, tmp = installed

    listing = json.loads(sh(python, "-m", "benchsuite", "list", "--json"))
    problems = {p["name"]: p for p in listing["problems"]}
    integrators = {i["name"]: i for i in listing["integrators"]}
    assert problems[PROBLEM]["distribution"] == DIST
    assert integrators[INTEGRATOR]["distribution"] == DIST

    run_dir = tmp / "results" / NAME
    sh(python, "-m", "benchsuite", "run", "-p", "acme_*", "-p", "xy_minus_one",
       "-i", INTEGRATOR, "-i", "euler(h=0.01)", "-n", "8", "--t-max", "5",
       "--results-dir", tmp / "results", "--run-id", NAME, "--no-progress")
    code = ("import sys, json; from benchsuite.results import load_results; "
            "t = load_results(sys.argv[1])['trajectories']; "
            "print(json.dumps(sorted(map(list, set(zip(t.problem, t.integrator))))))")
    cells = {tuple(c) for c in json.loads(sh(python, "-c", code, run_dir))}
    assert (PROBLEM, "acme_heun(h=0.01)") in cells
    assert ("xy_minus_one", "acme_heun(h=0.01)") in cells
    assert (PROBLEM, "euler(h=0.01)") in cells

    # the plugin's own test suite, as its author runs it, against the installed plugin
    out = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=target, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= GENERATED_PASSED, out.stdout
    assert "warning" not in out.stdout.splitlines()[-1], out.stdout

    # and the command-line kit agrees, the distribution's metadata included
    report = json.loads(sh(python, "-m", "benchsuite", "check", "--plugin", DIST, "--slow",
                           "--json"))
    assert report["ok"] and report["counts"]["fail"] == report["counts"]["warn"] == 0, report
    assert {(f["kind"], f["check"]) for f in report["findings"]} >= {("plugin", "distribution")}
