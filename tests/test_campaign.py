"""Campaigns end to end: files, selection, seeds, parallel cells, resume and crash safety."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time

import numpy as np
import pytest
from conftest import assert_same_tables

from benchsuite import hookimpl
from benchsuite.campaign import (
    Campaign,
    CampaignError,
    initial_points,
    load_campaign,
    packaged_campaigns,
    run_campaign,
)
from benchsuite.execution import ForkExecutor, SerialExecutor
from benchsuite.harness import Budget
from benchsuite.plugins import load_registry
from benchsuite.results import load_results
from benchsuite_problems.factorization import xy_minus_one

SMALL = Campaign(problems=("xy_minus_one", "remark3_rational_1d"),
                 integrators=("euler(h=[0.1, 0.05])", "rk45"), n_points=6,
                 budget=Budget(t_max=5.0, max_steps=2000, wall_time=30.0))


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_campaign_file_round_trip(tmp_path):
    c = load_campaign(write(tmp_path, """
        problems = ["mc2x2_example1"]
        integrators = ["euler(h=[0.01, 0.05])", "rk45"]
        n_points = 100
        seed = 3
        [budget]
        t_max = 10.0
        [recording]
        per_octave = 3
    """))
    assert c.problems == ("mc2x2_example1",) and c.n_points == 100 and c.seed == 3
    assert c.budget.t_max == 10.0 and c.recording.per_octave == 3


@pytest.mark.parametrize(("text", "message"), [
    ("problems = [\"a\"\nn_points = 3\n", r"c.toml: not valid TOML: .*line 2"),
    ("n_point = 3\n", r"unknown key\(s\) \['n_point'\]"),
    ("n_points = \"many\"\n", "n_points must be an integer"),
    ("n_points = 0\n", "n_points must be between"),
    ("[budget]\nt_max = -1.0\n", r"\[budget\]: budget t_max must be a finite number > 0"),
    ("[budget]\nsteps = 3\n", r"\[budget\] accepts only"),
    ("integrators = []\n", "integrators must be a non-empty list"),
])
def test_malformed_campaign_files_say_where_and_what(tmp_path, text, message):
    with pytest.raises(CampaignError, match=message):
        load_campaign(write(tmp_path, text))


def test_packaged_campaigns_load_by_name():
    assert {"figure1", "smoke"} <= set(packaged_campaigns())
    fig1 = load_campaign("figure1")
    assert fig1.problems == ("mc2x2_example1",) and fig1.n_points >= 4000


def test_initial_points_are_shared_reproducible_and_independent_per_problem():
    p = xy_minus_one()
    a, b = initial_points(p, 5, seed=1), initial_points(p, 5, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, initial_points(p, 5, seed=2))
    other = dataclasses.replace(p, name="xy_minus_one_copy")
    assert not np.array_equal(a, initial_points(other, 5, seed=1))


def test_end_to_end_tables_manifest_and_resume(tmp_path):
    reg = load_registry()
    store = run_campaign(SMALL, reg, tmp_path / "run", executor=SerialExecutor())
    tables = load_results(store.path)
    traj = tables["trajectories"]
    assert len(traj) == 2 * 3 * 6
    assert set(traj["outcome"].astype(str)) <= {"converged_global", "escape_spurious",
                                               "undetermined", "converged_spurious"}
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["campaign"]["seed"] == 0
    assert manifest["invocations"][0]["versions"]["numpy"]
    assert {c["integrator"] for c in manifest["cells"]} == {"euler(h=0.1)", "euler(h=0.05)",
                                                            "rk45(rtol=1e-06,atol=1e-09,"
                                                            "max_step=inf,fixed_step=None)"}
    before = {p: p.stat().st_mtime_ns for p in (store.path / "trajectories").iterdir()}
    run_campaign(SMALL, reg, tmp_path / "run", executor=SerialExecutor())  # resume: no-op
    after = {p: p.stat().st_mtime_ns for p in (store.path / "trajectories").iterdir()}
    assert before == after
    history = json.loads((store.path / "manifest.json").read_text())["invocations"]
    assert len(history) == 2  # every invocation is kept, not overwritten


def test_forked_cells_give_the_same_tables_as_in_process(tmp_path):
    reg = load_registry()
    a = run_campaign(SMALL, reg, tmp_path / "serial", executor=SerialExecutor())
    b = run_campaign(SMALL, reg, tmp_path / "forked", executor=ForkExecutor(2))
    assert_same_tables(a.path, b.path)


class Hangs:
    """A plugin whose oracle never returns (and one that is fine)."""

    @hookimpl
    def benchsuite_problems(self):
        def never(X):
            time.sleep(3600)

        return [dataclasses.replace(xy_minus_one(), name="hangs", f=never, grad=never)]


def test_an_oracle_that_never_returns_is_killed_and_the_campaign_goes_on(tmp_path):
    reg = load_registry(extra_plugins={"hangs": Hangs()})
    campaign = Campaign(problems=("hangs", "xy_minus_one"), integrators=("euler",), n_points=3,
                        budget=Budget(t_max=1.0, wall_time=0.5))
    start = time.monotonic()
    store = run_campaign(campaign, reg, tmp_path / "run", executor=ForkExecutor(2),
                         hard_limit=2.0)
    assert time.monotonic() - start < 30
    traj = load_results(store.path)["trajectories"]
    hung = traj[traj["problem"] == "hangs"]
    assert (hung["outcome"].astype(str) == "failed").all()
    assert hung["message"].str.contains("hard time limit").all()
    assert (traj[traj["problem"] == "xy_minus_one"]["stop"] == "t_max").all()


class Watcher:
    def __init__(self):
        self.calls = []

    def campaign_started(self, campaign, cells):
        self.calls.append(("started", len(cells)))

    def cell_finished(self, cell, result):
        self.calls.append(("cell", cell.problem.name))

    def campaign_finished(self, run_dir):
        self.calls.append(("finished", str(run_dir)))


class Broken:
    def cell_finished(self, cell, result):
        raise RuntimeError("deliberately broken observer")


def test_observers_are_told_and_a_broken_one_is_dropped(tmp_path):
    watcher = Watcher()

    class ObserverPlugin:
        @hookimpl
        def benchsuite_observers(self):
            return [watcher]

    reg = load_registry(extra_plugins={"watch": ObserverPlugin()})
    with pytest.warns(RuntimeWarning, match="deliberately broken observer"):
        run_campaign(SMALL, reg, tmp_path / "run", executor=SerialExecutor(),
                     observers=[Broken()])
    assert watcher.calls[0] == ("started", 6) and watcher.calls[-1][0] == "finished"
    assert sum(1 for c in watcher.calls if c[0] == "cell") == 6
