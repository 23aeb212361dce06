"""The report: honest leaderboards, performance profiles, readable figures, and the HTML page
(a pure function of the run folder) in a browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import benchsuite.plugins
from benchsuite.campaign import Campaign, run_campaign
from benchsuite.execution import SerialExecutor
from benchsuite.harness import Budget
from benchsuite.labels import display_names
from benchsuite.plugins import load_registry
from benchsuite.report import (
    RATES,
    expected_running_time,
    landscape_figure,
    leaderboard,
    performance_profile,
    tied_ranks,
    write_report,
)
from benchsuite.results import RunStore, load_results
from benchsuite.stats import wilson


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # l1_rank1 is nonsmooth: rk45 does not apply to it, so the pooled board must leave it out
    campaign = Campaign(problems=("sigmoid2pt_fig3", "remark3_rational_1d", "cubic_blowup_1d",
                                  "l1_rank1_factorization"),
                        integrators=("euler(h=0.05)", "rk45", "subgradient"), n_points=12,
                        budget=Budget(t_max=30.0, max_steps=4000, wall_time=30.0))
    path = tmp_path_factory.mktemp("report") / "run"
    run_campaign(campaign, load_registry(), path, executor=SerialExecutor())
    return path


def _synthetic(cells: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    rows = [{"problem": p, "integrator": i, "traj": k, "outcome": o, "stop": "t_max",
             "evals_to_0.001": np.nan, "t_to_0.001": np.nan, "nfev": 0, "ngev": 10, "nprox": 0}
            for (p, i), outcomes in cells.items() for k, o in enumerate(outcomes)]
    return pd.DataFrame(rows)


def test_wilson_interval_known_values():
    low, high = wilson(3, 10)
    assert low == pytest.approx(0.1078, abs=1e-4) and high == pytest.approx(0.6032, abs=1e-4)
    low, high = wilson(0, 50)
    assert low == 0.0 and high == pytest.approx(0.0714, abs=1e-4)


def test_per_problem_board_separates_every_outcome_with_intervals(run):
    traj = load_results(run)["trajectories"]
    board = leaderboard(traj, by_problem=True)
    total = sum(board[r] for r in RATES)
    np.testing.assert_allclose(total, 1.0)  # the rates cover every outcome exactly once
    for rate in RATES:
        assert (board[f"{rate}_low"] <= board[rate] + 1e-12).all()
        assert (board[rate] <= board[f"{rate}_high"] + 1e-12).all()
    # Euler's blow-up is diverged, not failed (failed is a fault: an error, a step collapse)
    blowup = board.loc["cubic_blowup_1d"]
    assert (blowup["global"] == 0).all()
    assert blowup.loc["euler(h=0.05)", "diverged"] == 1
    assert blowup.loc["euler(h=0.05)", "failed"] == 0
    for _, group in board.groupby(level="problem"):
        positions = group["rank"].str.rstrip("=").astype(int)
        assert positions.is_monotonic_increasing and positions.iloc[0] == 1


def test_pooled_board_compares_integrators_on_shared_problems_only():
    good, bad = ["converged_global"] * 20, ["undetermined"] * 20
    traj = _synthetic({("p1", "a"): good, ("p1", "b"): bad,
                       ("p2", "a"): bad, ("p2", "b"): good,
                       ("smooth_only", "b"): good})  # a does not apply there
    board = leaderboard(traj, by_problem=False)
    assert board.attrs["common_problems"] == ["p1", "p2"]
    assert board.attrs["excluded_problems"] == ["smooth_only"]
    # pooled over p1 and p2 only, a and b are exactly even: a tie, not b first
    assert board.loc["a", "global"] == board.loc["b", "global"] == 0.5
    assert set(board["rank"]) == {"1="}
    assert board.loc["a", "coverage"] == "2/3" and board.loc["b", "coverage"] == "3/3"
    assert board.loc["a", "mean_rank"] == board.loc["b", "mean_rank"] == 1.5


def test_ties_are_ranks_shared_within_overlapping_intervals():
    table = pd.DataFrame({"global": [0.9, 0.85, 0.1]}, index=["x", "y", "z"])
    low, high = wilson(np.array([90, 85, 10]), 100)
    table["global_low"], table["global_high"] = low, high
    assert tied_ranks(table).to_dict() == {"x": "1=", "y": "1=", "z": "3"}
    # the same rates over ten times more trajectories are told apart: evidence, not rates,
    # decides a tie
    low, high = wilson(np.array([900, 850, 100]), 1000)
    table["global_low"], table["global_high"] = low, high
    assert tied_ranks(table).to_dict() == {"x": "1", "y": "2", "z": "3"}


def test_display_names_come_from_the_manifest_parameters():
    cells = [{"integrator": "euler(h=0.1)", "method": "euler", "params": {"h": 0.1}},
             {"integrator": "euler(h=0.01)", "method": "euler", "params": {"h": 0.01}},
             {"integrator": "rk45(rtol=1e-06,atol=1e-09)", "method": "rk45",
              "params": {"rtol": 1e-6, "atol": 1e-9}}]
    assert display_names(cells) == {"euler(h=0.1)": "euler(h=0.1)",
                                    "euler(h=0.01)": "euler(h=0.01)",
                                    "rk45(rtol=1e-06,atol=1e-09)": "rk45"}
    # a lone integrator with a non-default hyperparameter must not read as the default one
    lone = [{"integrator": "scipy_ivp(method=RK23,rtol=1e-06)", "method": "scipy_ivp",
             "params": {"method": "RK23", "rtol": 1e-6},
             "defaults": {"method": "RK45", "rtol": 1e-6}}]
    assert display_names(lone) == {"scipy_ivp(method=RK23,rtol=1e-06)": "scipy_ivp(method=RK23)"}


def test_performance_profile_is_a_distribution_function(run):
    profile = performance_profile(load_results(run)["trajectories"])
    assert len(profile) and profile["fraction"].between(0, 1).all()
    for _, curve in profile.groupby("integrator"):
        assert curve.sort_values("tau")["fraction"].is_monotonic_increasing
    assert profile[profile["tau"] == 1.0]["fraction"].max() > 0


def test_performance_profile_by_hand():
    rows = []
    for problem, costs in {"a": {"x": 10, "y": 20}, "b": {"x": 40, "y": 10}}.items():
        for integ, c in costs.items():
            rows += [{"problem": problem, "integrator": integ, "evals_to_0.001": c,
                      "nfev": 0, "ngev": 100, "nprox": 0}] * 3
    rows += [{"problem": "only_y", "integrator": "y", "evals_to_0.001": 1, "nfev": 0,
              "ngev": 1, "nprox": 0}]  # x does not apply: not part of the profile
    profile = performance_profile(pd.DataFrame(rows), taus=np.array([1.0, 2.0, 4.0]))
    assert profile.attrs["problems"] == 2
    got = profile.pivot(index="tau", columns="integrator", values="fraction")
    assert got.loc[1.0].tolist() == [0.5, 0.5]
    assert got.loc[2.0].tolist() == [0.5, 1.0]
    assert got.loc[4.0].tolist() == [1.0, 1.0]


def test_expected_running_time_counts_failures_in_full():
    group = pd.DataFrame({"evals_to_0.001": [10.0, 30.0, np.nan, np.nan],
                          "nfev": [0, 0, 0, 0], "ngev": [50, 50, 100, 200], "nprox": 0})
    assert expected_running_time(group) == (10 + 30 + 100 + 200) / 2
    assert expected_running_time(group.iloc[2:]) == float("inf")


def test_landscape_is_drawn_from_the_run_with_labels_and_a_colour_bar(run):
    tables = load_results(run)
    grid = tables["landscapes"]
    assert set(grid["problem"]) == {"sigmoid2pt_fig3"}  # the one 2-D problem
    integrators = sorted(tables["trajectories"].query("problem == 'sigmoid2pt_fig3'")[
        "integrator"].unique())
    fig = landscape_figure(tables["trajectories"], tables["checkpoints"], grid,
                           "sigmoid2pt_fig3", integrators)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == len(integrators)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in panels)
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel().startswith("f(x)")]
    assert len(colour_bars) == 1
    assert fig.legends and fig.legends[0].get_texts()
    plt.close(fig)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self._h = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._h = tag in ("h2", "h3")

    def handle_data(self, data):
        if self._h:
            self.headings.append(data.strip())
            self._h = False


def test_report_is_a_pure_function_of_the_run_folder(run, tmp_path, monkeypatch):
    def no_plugins(*args, **kwargs):
        raise AssertionError("the report must not load plugins to draw a run")

    monkeypatch.setattr(benchsuite.plugins, "load_registry", no_plugins)
    page = write_report(run, tmp_path / "out", sections=[])
    text = page.read_text()
    parser = _Page()
    parser.feed(text)
    for heading in ("Leaderboards", "All problems pooled", "Per problem",
                    "Theory against evidence", "How far the labels can be trusted",
                    "Trajectories"):
        assert heading in parser.headings
    # every figure is an embedded PNG; no figure files unless asked
    assert len(parser.images) >= 4  # heatmap, shares, bands, landscape
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "figures").exists()
    # the pooled board says which problems it leaves out, and why
    assert "some integrators do not apply to 1 (l1_rank1_factorization)" in text
    # the heatmap explains the cells that do not apply
    assert "hatched n/a" in text
    undetermined = (load_results(run)["trajectories"]["outcome"] == "undetermined").sum()
    assert f"{undetermined} of " in text


def test_figure_files_only_where_asked(run, tmp_path):
    write_report(run, tmp_path, formats=("svg",), sections=[])
    svgs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert "outcome_heatmap.svg" in svgs and all(s.endswith(".svg") for s in svgs)
    with pytest.raises(ValueError, match="unknown figure format"):
        write_report(run, tmp_path, formats=("gif",), sections=[])


def test_incomplete_run_is_flagged_at_the_top(run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    store = RunStore(partial)
    key = store.manifest()["cells"][0]["key"]
    (partial / "cells" / f"{key}.json").unlink()
    text = write_report(partial, sections=[]).read_text()
    body = text[text.index("<body"):]
    warning = body.index("cells are not finished")
    assert warning < body.index("Leaderboards")
    assert "1 of 12 cells are not finished" in body
    # the pooled board says the problem is left out for an unfinished cell, not a skipped one
    problem = store.manifest()["cells"][0]["problem"]
    assert f"some cells are not finished or damaged for 1 ({problem})" in body


def test_plugin_sections_appear_and_a_raising_one_costs_only_itself(run, tmp_path):
    class Extra:
        title = "Energy <per> trajectory"

        def render(self, tables, manifest):
            return f"<p>{len(tables['trajectories'])} rows, seed {manifest['campaign']['seed']}</p>"

    class Broken:
        title = "Broken"

        def render(self, tables, manifest):
            raise RuntimeError("no luck")

    text = write_report(run, tmp_path, sections=[Extra(), Broken()]).read_text()
    rows = len(load_results(run)["trajectories"])
    assert "Energy &lt;per&gt; trajectory" in text and f"<p>{rows} rows, seed 0</p>" in text
    assert "this section raised RuntimeError: no luck" in text


def test_report_opens_in_a_headless_browser(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs it where apt-get can)")
    page = write_report(run, tmp_path, sections=[])
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    loaded = re.search(r'data-images-loaded="(\d+)"', out.stdout)
    total = re.search(r'data-images-total="(\d+)"', out.stdout)
    assert loaded and total, out.stdout[:500]
    assert int(total.group(1)) >= 4 and loaded.group(1) == total.group(1)
    for heading in ("Leaderboards", "Theory against evidence", "Per problem"):
        assert heading in out.stdout


def test_default_sections_come_from_the_plugins_without_building_problems(run, tmp_path,
                                                                          monkeypatch):
    calls = []
    real = benchsuite.plugins.load_registry

    def spy(*args, **kwargs):
        calls.append(kwargs.get("hooks"))
        return real(*args, **kwargs)

    monkeypatch.setattr(benchsuite.plugins, "load_registry", spy)
    write_report(run, tmp_path)
    assert calls == [{"benchsuite_report_sections"}]
