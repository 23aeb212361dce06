"""The README's plugin guide is checked by running it: its Python blocks run in order as one
script, its TOML parses, its table of checks is the kit's, and the plugin it builds registers
and runs like an installed one."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import numpy as np

from benchsuite import Budget, load_registry, run_cell
from benchsuite.testing import describe_checks

README = Path(__file__).resolve().parents[1] / "README.md"


def guide() -> str:
    text = README.read_text()
    start = text.index("## Writing a plugin")
    return text[start:text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", guide(), flags=re.DOTALL)


def test_the_guide_runs_and_its_plugin_registers_and_runs():
    module = types.ModuleType("guide_plugin")
    sys.modules[module.__name__] = module  # dataclasses resolve their module by name
    try:
        code = "\n".join(blocks("python"))
        assert "check_problem" in code and "class Heun" in code
        exec(compile(code, str(README), "exec"), module.__dict__)
        registry = load_registry(strict=True, entry_points=False,
                                 extra_plugins={"guide": module})
    finally:
        del sys.modules[module.__name__]
    problem = registry.problems["guide_hyperbola"]
    heun = registry.integrators["guide_heun"]
    assert len(registry.observers) == 1 and len(registry.report_sections) == 1
    x0 = problem.sample(np.random.default_rng(0), 16)
    cell = run_cell(problem, heun, x0, Budget(t_max=50.0))
    # the flow converges to the hyperbola of minima from every start off the saddle's
    # stable manifold (x = -y): a measure-zero set that 16 random points miss
    assert (cell.trajectories["outcome"] == "converged_global").all()


def test_the_guide_toml_parses():
    (toml,) = blocks("toml")
    assert tomllib.loads(toml)["project"]["entry-points"]["benchsuite"]


def test_the_guide_table_of_checks_is_the_kits():
    rows = re.findall(r"^\| (problem|integrator) \| `(\w+)`( \(slow\))? \| (.*) \|$", guide(),
                      flags=re.MULTILINE)
    listed = [(kind, name, bool(slow), text.replace("\\|", "|")) for kind, name, slow, text
              in rows]
    expected = [(r["kind"], r["check"], bool(r["slow"]), r["verifies"].replace("``", "`"))
                for r in describe_checks()]
    assert listed == expected, "regenerate the README table from describe_checks()"
