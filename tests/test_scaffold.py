"""The plugin template of ``benchsuite new-plugin`` (:mod:`benchsuite.scaffold`), in this
process: names and folders it refuses, the files it writes, and that the generated problem and
integrator pass every check of the kit. tests/test_new_plugin.py installs and runs the result.
"""

from __future__ import annotations

import importlib
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from benchsuite.scaffold import planned_files, write_plugin
from benchsuite.testing import Severity, check_integrator, check_problem

NAME = "acme"
DIST = "benchsuite-acme"
PACKAGE = "benchsuite_acme"
#: Checks the generated objects pass: 14 problem and 10 integrator checks, 5 of them skipped
#: (no prox twice, no certificate, smooth so no subgradient, no descent claim).
KIT_PASSES = 20  # with JAX installed (a test dependency): the autodiff check passes too

PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]")


@pytest.mark.parametrize("bad", ["Acme", "1x", "a-b", "", "_acme", "acme!", "a" * 41, "euler"])
def test_refuses_bad_names(tmp_path, bad):
    with pytest.raises(ValueError, match="plugin name"):
        write_plugin(bad, tmp_path)
    assert not any(tmp_path.iterdir())


def test_refuses_a_non_empty_folder(tmp_path):
    target = tmp_path / DIST
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_plugin(NAME, tmp_path)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_writes_exactly_the_planned_files(tmp_path):
    (tmp_path / DIST).mkdir()  # an empty folder is fine
    target = write_plugin(NAME, tmp_path)
    assert target == tmp_path / DIST
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert written == planned_files(NAME)
    assert set(written) >= {"pyproject.toml", "README.md", "tests/test_conformance.py",
                            f"{PACKAGE}/__init__.py", f"{PACKAGE}/problems.py",
                            f"{PACKAGE}/integrators.py", f"{PACKAGE}/observers.py"}
    for rel in written:
        text = (target / rel).read_text()
        assert not PLACEHOLDER.search(text), f"{rel}: {PLACEHOLDER.search(text).group()!r}"
        assert "PACKAGE" not in rel and not rel.endswith(".tmpl")
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["name"] == DIST
    assert meta["project"]["entry-points"]["benchsuite"] == {NAME: PACKAGE}
    assert meta["tool"]["setuptools"]["packages"] == [PACKAGE]
    assert any(re.fullmatch(r"benchsuite>=\d+(\.\d+)*\S*", d)
               for d in meta["project"]["dependencies"])


def test_generated_code_is_ruff_clean(tmp_path):
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed next to this Python")
    target = write_plugin("a_rather_long_plugin_name_of_40_chars_xy", tmp_path)
    out = subprocess.run([str(ruff), "check", "--no-cache", "."], cwd=target,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """The generated package, imported from its folder (under a name no test installs)."""
    target = write_plugin("scaffoldcheck", tmp_path)
    monkeypatch.syspath_prepend(str(target))
    yield importlib.import_module("benchsuite_scaffoldcheck")
    for mod in [m for m in sys.modules if m.startswith("benchsuite_scaffoldcheck")]:
        del sys.modules[mod]


def test_generated_objects_pass_every_check(generated):
    problem, integrator = generated.hyperbola(), generated.Heun()
    assert problem.name == "scaffoldcheck_hyperbola[a=2]"
    assert integrator.label == "scaffoldcheck_heun(h=0.01)"
    assert generated.benchsuite_problems()[0].name == problem.name
    assert generated.benchsuite_integrators() == [integrator]
    findings = check_problem(problem, slow=True) + check_integrator(integrator)
    bad = [str(f) for f in findings if f.severity in (Severity.FAIL, Severity.WARN)]
    assert not bad, "\n".join(bad)
    assert sum(f.severity is Severity.PASS for f in findings) == KIT_PASSES


def test_generated_observer_logs_outcomes_per_cell(generated, caplog):
    (observer,) = generated.benchsuite_observers()
    cell = SimpleNamespace(key="k", problem=generated.hyperbola(), integrator=generated.Heun())
    shard = SimpleNamespace(skipped=None, trajectories=pd.DataFrame(
        {"outcome": ["converged_global", "undetermined", "converged_global"]}))
    with caplog.at_level(logging.INFO, logger="benchsuite_scaffoldcheck"):
        observer.campaign_started(None, [cell])
        observer.shards_planned(2)
        observer.shard_finished(cell, 0, shard)
        observer.shard_finished(cell, 1, shard)
        observer.cell_finished(cell, shard)
        observer.campaign_finished(Path("results/run"))
    text = caplog.text
    assert "1 cell(s) to run" in text
    assert ("scaffoldcheck_hyperbola[a=2] x scaffoldcheck_heun(h=0.01): 4 converged_global, "
            "2 undetermined") in text
    assert "results" in text
