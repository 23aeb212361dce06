"""The report: leaderboard statistics, performance profiles, and the HTML page in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from benchsuite.campaign import Campaign, run_campaign
from benchsuite.execution import SerialExecutor
from benchsuite.harness import Budget
from benchsuite.plugins import load_registry
from benchsuite.report import (
    expected_running_time,
    leaderboard,
    performance_profile,
    wilson,
    write_report,
)
from benchsuite.results import load_results


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    campaign = Campaign(problems=("sigmoid2pt_fig3", "remark3_rational_1d", "cubic_blowup_1d"),
                        integrators=("euler(h=0.05)", "rk45", "subgradient"), n_points=12,
                        budget=Budget(t_max=30.0, max_steps=4000, wall_time=30.0))
    path = tmp_path_factory.mktemp("report") / "run"
    run_campaign(campaign, load_registry(), path, executor=SerialExecutor())
    return path


def test_wilson_interval_known_values():
    low, high = wilson(3, 10)
    assert low == pytest.approx(0.1078, abs=1e-4) and high == pytest.approx(0.6032, abs=1e-4)
    low, high = wilson(0, 50)
    assert low == 0.0 and high == pytest.approx(0.0714, abs=1e-4)


def test_leaderboard_ranks_by_global_rate_with_intervals(run):
    traj = load_results(run)["trajectories"]
    board = leaderboard(traj, by_problem=True).reset_index()
    assert (board["ci_low"] <= board["global_rate"] + 1e-12).all()
    assert (board["global_rate"] <= board["ci_high"] + 1e-12).all()
    for _, group in board.groupby("problem"):
        assert group["global_rate"].is_monotonic_decreasing
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
    blowup = board[board["problem"] == "cubic_blowup_1d"]
    assert (blowup["global_rate"] == 0).all() and (blowup["failed_rate"] == 1).all()
    overall = leaderboard(traj, by_problem=False)
    assert overall["trajectories"].sum() == len(traj)


def test_performance_profile_is_a_distribution_function(run):
    profile = performance_profile(load_results(run)["trajectories"])
    assert len(profile) and profile["fraction"].between(0, 1).all()
    for _, curve in profile.groupby("integrator"):
        assert curve.sort_values("tau")["fraction"].is_monotonic_increasing
    at_one = profile[profile["tau"] == 1.0]["fraction"]
    assert at_one.max() > 0  # someone is the best on some problem


def test_performance_profile_by_hand():
    rows = []
    for problem, costs in {"a": {"x": 10, "y": 20}, "b": {"x": 40, "y": 10}}.items():
        for integ, c in costs.items():
            rows += [{"problem": problem, "integrator": integ, "evals_to_0.001": c,
                      "nfev": 0, "ngev": 100, "nprox": 0}] * 3
    profile = performance_profile(pd.DataFrame(rows), taus=np.array([1.0, 2.0, 4.0]))
    got = profile.pivot(index="tau", columns="integrator", values="fraction")
    assert got.loc[1.0].tolist() == [0.5, 0.5]
    assert got.loc[2.0].tolist() == [0.5, 1.0]
    assert got.loc[4.0].tolist() == [1.0, 1.0]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_expected_running_time_counts_failures_in_full():
    group = pd.DataFrame({"evals_to_0.001": [10.0, 30.0, np.nan, np.nan],
                          "nfev": [0, 0, 0, 0], "ngev": [50, 50, 100, 200], "nprox": 0})
    assert expected_running_time(group) == (10 + 30 + 100 + 200) / 2
    assert expected_running_time(group.iloc[2:]) == float("inf")


def test_report_page_figures_and_files(run):
    page = write_report(run)
    text = page.read_text()
    assert "Leaderboards" in text and "global_rate" in text
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) >= 5
    for src in parser.sources:
        png = page.parent / src
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".svg").exists()
    # 2-D problems get their landscape, one per integrator
    assert sum("landscape" in s for s in parser.sources) == 3
    # the trust section: undetermined share and why, and generic rules against certificates
    assert "How far the labels can be trusted" in text
    undetermined = (load_results(run)["trajectories"]["outcome"] == "undetermined").sum()
    assert f"{undetermined} of " in text
    assert ("Why trajectories are undetermined" in text) == (undetermined > 0)
    assert "Generic rules against the certificates" in text and "never contradict it" in text


def test_report_opens_in_a_headless_browser(run):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs it where apt-get can)")
    page = write_report(run)
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    loaded = re.search(r'data-images-loaded="(\d+)"', out.stdout)
    total = re.search(r'data-images-total="(\d+)"', out.stdout)
    assert loaded and total, out.stdout[:500]
    assert int(total.group(1)) >= 5 and loaded.group(1) == total.group(1)
    assert "<table" in out.stdout and "Leaderboards" in out.stdout
