"""Comparing two runs: rate and cost tests, multiple-testing correction (Tarone, then Holm or
BH), one-sided cells, settings, and the text/HTML/JSON renderings; the command's refusals.
Synthetic tables, plus one tiny real run."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchsuite import compare as compare_module
from benchsuite.campaign import Campaign, run_campaign
from benchsuite.compare import (
    _fisher,
    _fisher_min,
    _mwu,
    _mwu_min,
    compare_runs,
    compare_tables,
    min_trajectories,
    tarone,
)
from benchsuite.execution import SerialExecutor
from benchsuite.harness import Budget
from benchsuite.plugins import load_registry
from benchsuite.results import DamagedCellWarning, RunStore, load_results
from benchsuite.stats import adjust, holm, newcombe, wilson
from benchsuite.vocabulary import OUTCOMES


def tables(cells: dict[tuple[str, str], dict[str, int]], evals: dict | None = None,
           x0: bool = False) -> dict[str, pd.DataFrame]:
    """A run's tables: per cell, outcome -> count (and optional costs to the target)."""
    frames = []
    for (problem, integrator), counts in cells.items():
        outcome = np.repeat(list(counts), list(counts.values()))
        frame = pd.DataFrame({"problem": problem, "integrator": integrator,
                              "traj": np.arange(len(outcome)), "outcome": outcome})
        if evals is not None:
            frame["evals_to_0.001"] = evals[(problem, integrator)]
            frame["t_to_0.001"] = frame["evals_to_0.001"] / 100
        if x0:
            frame["x0"] = list(np.arange(2.0 * len(outcome)).reshape(-1, 2))
        frames.append(frame)
    traj = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return {"trajectories": traj, "skipped": pd.DataFrame(), "cells": pd.DataFrame()}


def global_cell(k: int, n: int) -> dict[str, int]:
    return {"converged_global": k, "converged_spurious": n - k}


def row(comparison, metric, cell=("p", "euler")):
    rates = comparison.rates
    return rates[(rates["problem"] == cell[0]) & (rates["integrator"] == cell[1])
                 & (rates["metric"] == metric)].iloc[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    campaign = Campaign(problems=("mc2x2_example1",), integrators=("euler(h=0.05)", "rk45"),
                        n_points=8, budget=Budget(t_max=20.0, max_steps=2000, wall_time=60.0))
    path = tmp_path_factory.mktemp("compare") / "run"
    run_campaign(campaign, load_registry(), path, executor=SerialExecutor())
    return path


def test_a_run_against_itself_changes_nothing(run):
    c = compare_runs(run, run)
    assert len(c.cells) == 2 and len(c.rates) == 2 * (len(OUTCOMES) + 1)
    assert c.regressions.empty and c.improvements.empty and not c.settings
    assert (c.rates["p_value"] == 1).all() and (c.rates["p_adjusted"] == 1).all()
    reached = c.costs.dropna(subset=["ratio"])
    assert len(reached) == 4 and (reached["ratio"] == 1.0).all()
    assert (reached["p_value"] == 1).all()
    assert (reached["ci_low"] <= 1).all() and (reached["ci_high"] >= 1).all()
    assert c.cells["changed"].tolist() == [0, 0]  # same seeds: paired view, no label changed
    assert c.only_base.empty and c.only_new.empty
    assert "regressions 0," in c.to_text() and "code of both" in c.to_text()
    # the same folder on both sides: not "only in run 0, only in run 0"
    assert c.names == ("BASE", "NEW") and "only in BASE 0, only in NEW 0" in c.to_text()
    json.dumps(c.to_json(), allow_nan=False)
    # deterministic: the bootstrap is seeded
    pd.testing.assert_frame_equal(compare_runs(run, run).costs, c.costs)


def test_damaged_cell_and_changed_settings_are_reported(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    victim = sorted((copy / "trajectories").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.warns(DamagedCellWarning):
        c = compare_runs(run, copy)
    assert len(c.cells) == 1 and c.only_new.empty
    assert len(c.only_base) == 1 and "damaged" in c.only_base["why"].iloc[0]
    manifest = RunStore(run).manifest()
    changed = json.loads(json.dumps(manifest))
    changed["fingerprint"]["budget"]["t_max"] = 40.0
    changed["fingerprint"]["n_points"] = 16
    changed["fingerprint"]["versions"]["benchsuite"] = "9.9"  # code: expected, not a setting
    tabs = load_results(run)
    c = compare_tables(tabs, tabs, base_manifest=manifest, new_manifest=changed)
    assert c.settings == ["n_points: BASE 8, NEW 16", "budget.t_max: BASE 20.0, NEW 40.0"]
    text = c.to_text()
    assert text.startswith("SETTINGS DIFFER") and "9.9" in c.versions["new"]
    assert max(map(len, c.to_text(verbose=True).splitlines())) <= 100


def test_global_rate_collapse_is_a_regression_and_its_reverse_an_improvement():
    good, bad = tables({("p", "euler"): global_cell(45, 50)}), tables(
        {("p", "euler"): global_cell(5, 50)})
    worse = compare_tables(good, bad)
    assert row(worse, "global")["change"] == "regression"
    assert row(worse, "converged_spurious")["change"] == "regression"
    # informative, not a verdict: the global rate decides
    assert row(worse, "converged_global")["change"] == "other change"
    assert set(worse.regressions["metric"]) == {"global", "converged_spurious"}
    g = row(worse, "global")
    assert (g["base_k"], g["base_n"], g["new_k"], g["new_n"]) == (45, 50, 5, 50)
    assert g["diff"] == pytest.approx(-0.8) and g["ci_low"] < -0.8 < g["ci_high"] < 0
    assert g["p_adjusted"] >= g["p_value"] and g["p_adjusted"] <= 0.05
    better = compare_tables(bad, good)
    assert better.regressions.empty
    assert set(better.improvements["metric"]) == {"global", "converged_spurious"}
    assert "REGRESSIONS" in worse.to_text() and "REGRESSIONS" not in better.to_text()
    assert "OTHER CHANGES (not gated" in worse.to_text()


def test_small_difference_is_not_significant():
    c = compare_tables(tables({("p", "euler"): global_cell(10, 20)}),
                       tables({("p", "euler"): global_cell(9, 20)}))
    assert row(c, "global")["p_value"] == 1.0
    assert c.regressions.empty and c.improvements.empty
    assert (c.rates["change"] == "").all()


def test_holm_by_hand_and_its_properties():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    raw = np.random.default_rng(3).uniform(0, 0.2, 200)
    adjusted = holm(raw)
    order = np.argsort(raw)
    assert (adjusted >= raw).all() and (adjusted <= 1).all()
    assert (np.diff(adjusted[order]) >= 0).all()
    with_nan = adjust(np.array([0.01, np.nan, 0.02]))
    np.testing.assert_allclose(with_nan, [0.02, np.nan, 0.02])
    np.testing.assert_allclose(adjust(raw, "bh"), stats.false_discovery_control(raw))
    assert adjust(np.array([])).size == 0


def test_null_cells_give_no_false_regression():
    rng = np.random.default_rng(2024)
    share = [0.4, 0.1, 0.2, 0.1, 0.05, 0.05, 0.05, 0.05]  # every label occurs
    sides = []
    for _ in range(2):
        counts = rng.multinomial(50, share, size=100)
        sides.append(tables({(f"p{i}", "euler"): dict(zip(OUTCOMES, c, strict=True))
                             for i, c in enumerate(counts)}))
    c = compare_tables(*sides)
    assert len(c.rates) == 100 * (len(OUTCOMES) + 1)
    assert c.regressions.empty and c.improvements.empty
    assert (c.rates["p_value"] < 0.05).sum() > 0  # raw p-values do reject: the correction works


def test_newcombe_and_wilson_against_published_values():
    low, high = newcombe(56, 70, 48, 80)  # Newcombe (1998), method 10
    assert float(low) == pytest.approx(0.0524, abs=1e-4)
    assert float(high) == pytest.approx(0.3339, abs=1e-4)
    k, n = np.array([0, 3, 7, 50]), np.array([50, 10, 9, 50])
    lows, highs = wilson(k, n)
    for ki, ni, lo, hi in zip(k, n, lows, highs, strict=True):
        ci = stats.binomtest(int(ki), int(ni)).proportion_ci(0.95, method="wilson")
        assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_cells_on_one_side_are_listed_with_why():
    base = tables({("a", "euler"): global_cell(5, 5), ("b", "euler"): global_cell(5, 5),
                   ("c", "euler"): global_cell(5, 5)})
    new = tables({("a", "euler"): global_cell(5, 5), ("d", "euler"): global_cell(5, 5)})
    new["cells"] = pd.DataFrame({"key": ["kb", "ke"], "status": ["damaged", "missing"],
                                 "detail": ["checksum", ""], "problem": ["b", "e"],
                                 "integrator": ["euler", "euler"]})
    new["skipped"] = pd.DataFrame({"problem": ["c", "s"], "integrator": ["euler", "euler"],
                                   "reason": ["no prox", "no prox"]})
    base["skipped"] = pd.DataFrame({"problem": ["s"], "integrator": ["euler"],
                                    "reason": ["no prox"]})
    c = compare_tables(base, new)
    assert c.cells["problem"].tolist() == ["a"]
    why = dict(zip(c.only_base["problem"], c.only_base["why"], strict=True))
    assert why == {"b": "NEW: damaged (checksum)", "c": "NEW: skipped (no prox)"}
    assert c.only_new["problem"].tolist() == ["d"] and c.only_new["why"][0] == "not in BASE"
    assert "ONLY IN BASE" in c.to_text() and "ONLY IN NEW" in c.to_text()


def test_costs_ratio_interval_and_regression():
    rng = np.random.default_rng(0)
    cell = ("p", "euler")
    base = tables({cell: global_cell(40, 40)}, {cell: rng.uniform(90, 110, 40)})
    new = tables({cell: global_cell(40, 40)}, {cell: rng.uniform(190, 210, 40)})
    c = compare_tables(base, new)
    evals = c.costs[c.costs["metric"] == "evals_to_0.001"].iloc[0]
    assert evals["ratio"] == pytest.approx(2.0, rel=0.05)
    assert evals["ci_low"] <= evals["ratio"] <= evals["ci_high"]
    assert evals["change"] == "regression" and len(c.regressions) == 2
    assert set(c.regressions["kind"]) == {"cost"}
    assert set(compare_tables(new, base).improvements["metric"]) == {"evals_to_0.001",
                                                                     "t_to_0.001"}
    # one trajectory reached the target on a side: a ratio, no interval; none reached: no test
    one = tables({cell: global_cell(40, 40)}, {cell: [50.0] + [np.nan] * 39})
    none = tables({cell: global_cell(40, 40)}, {cell: [np.nan] * 40})
    c = compare_tables(base, one)
    assert c.costs["ratio"].notna().all() and c.costs["ci_low"].isna().all()
    c = compare_tables(base, none)
    assert c.costs["p_value"].isna().all() and (c.costs["change"] == "").all()
    json.dumps(c.to_json(), allow_nan=False)


def test_paired_view_counts_changed_labels():
    cell = ("p", "euler")
    base = tables({cell: {"converged_global": 6, "diverged": 4}}, x0=True)
    new = tables({cell: {"converged_global": 5, "diverged": 5}}, x0=True)
    assert compare_tables(base, new).cells["changed"].tolist() == [1]
    new["trajectories"]["x0"] = [x + 1 for x in new["trajectories"]["x0"]]
    assert compare_tables(base, new).cells["changed"].isna().all()  # other initial points


def test_dtypes_and_empty_runs_never_crash():
    base = tables({("p", "euler"): global_cell(45, 50)})
    new = tables({("p", "euler"): global_cell(5, 50)})
    plain = compare_tables(base, new).rates
    for dtype in ("category", "string[pyarrow]"):
        cast = {**new, "trajectories": new["trajectories"].astype(
            {"outcome": dtype, "problem": dtype, "integrator": dtype})}
        pd.testing.assert_frame_equal(compare_tables(base, cast).rates, plain)
    empty = {"trajectories": pd.DataFrame()}
    for a, b in ((empty, empty), ({}, base), (base, empty),
                 (tables({("q", "rk45"): global_cell(1, 2)}), base)):
        c = compare_tables(a, b)
        assert c.regressions.empty and c.rates.empty
        c.to_text(verbose=True)
        json.dumps(c.to_json(), allow_nan=False)
        assert c.to_html().startswith("<section")
    with pytest.raises(ValueError, match="correction"):
        compare_tables(base, new, correction="bonferroni")


def test_html_escapes_names_and_json_is_strict():
    cell = ("<b>&x", "euler(h=0.1)")
    base = tables({cell: global_cell(45, 50)}, {cell: [np.nan] * 50})
    new = tables({cell: global_cell(5, 50)}, {cell: [np.nan] * 50})
    c = compare_tables(base, new, base_manifest={"fingerprint": {"seed": 0}},
                       new_manifest={"fingerprint": {"seed": 1}})
    page = c.to_html()
    assert page.startswith("<section") and page.rstrip().endswith("</section>")
    assert '<table class="dataframe board">' in page
    assert "&lt;b&gt;&amp;x" in page and "<b>&x" not in page
    assert "seed: BASE 0, NEW 1" in page
    data = json.loads(json.dumps(c.to_json(), allow_nan=False))
    assert data["summary"]["regressions"] == 2 and data["regressions"][0]["problem"] == "<b>&x"
    assert data["costs"][0]["ratio"] is None


def test_cli_gates_on_a_real_regression_and_writes_the_page(run, tmp_path):
    """The CI workflow: a run on the main branch, a run on a change, compare. A change that
    starves the trajectories (flow time 20 -> 0.5) is a significant regression: exit 1; the
    same run against itself: exit 0."""
    from click.testing import CliRunner

    from benchsuite.cli import main

    starved = tmp_path / "starved"
    campaign = Campaign(problems=("mc2x2_example1",), integrators=("euler(h=0.05)", "rk45"),
                        n_points=8, budget=Budget(t_max=0.5, max_steps=2000, wall_time=60.0))
    run_campaign(campaign, load_registry(), starved, executor=SerialExecutor())
    runner = CliRunner()
    same = runner.invoke(main, ["compare", str(run), str(run), "--html",
                                str(tmp_path / "same.html")])
    assert same.exit_code == 0, same.output
    assert "REGRESSIONS" not in same.output
    worse = runner.invoke(main, ["compare", str(run), str(starved)])
    assert worse.exit_code == 1, worse.output
    assert "REGRESSIONS:" in worse.output and "t_max" in worse.output  # settings differ
    page = starved / "report" / "compare.html"
    assert page.exists() and "Regressions" in page.read_text()
    as_json = runner.invoke(main, ["compare", str(run), str(starved), "--json"])
    data = json.loads(as_json.stdout, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert as_json.exit_code == 1 and data["regressions"]


# -- Tarone: tests that cannot reach alpha at small n do not count -----------------------------

def test_minimum_attainable_p_values_by_enumeration():
    """p_min is the smallest p over every table with the same margins (Fisher) and over every
    split of the pooled costs (Mann-Whitney, ties included)."""
    for n1, n2, k in ((8, 8, 8), (8, 8, 1), (8, 8, 0), (8, 8, 16), (5, 9, 7), (3, 12, 14)):
        tables_ = [_fisher(k1, n1, k - k1, n2) for k1 in range(max(0, k - n2), min(n1, k) + 1)]
        assert _fisher_min(n1, n2, k) == pytest.approx(min(tables_), rel=1e-12)
    assert _fisher_min(8, 8, 8) == pytest.approx(2 / math.comb(16, 8))
    assert _fisher_min(8, 8, 0) == 1.0 and _fisher_min(8, 8, 16) == 1.0  # 0/8 -> 0/8: p = 1
    for pooled, nb in (([1.0, 2, 3, 4, 5, 6, 7], 3), ([1.0, 1, 2, 2, 2, 3, 5, 5], 4),
                       (list(np.arange(12.0)), 6), ([4.0] * 6, 3)):  # exact; ties: asymptotic
        pooled = np.array(pooled)
        splits = [(pooled[list(i)], np.delete(pooled, list(i)))
                  for i in itertools.combinations(range(len(pooled)), nb)]
        best = min(_mwu(xb, xn) for xb, xn in splits)
        for xb, xn in splits[::7]:  # any split of the same pooled values: the same p_min
            assert _mwu_min(xb, xn) == pytest.approx(best, rel=1e-12)
    assert _mwu_min(np.arange(4.0), np.arange(4.0) + 10) == pytest.approx(2 / math.comb(8, 4))


def test_tarone_by_hand():
    p = np.array([0.001, 0.004, 0.02, 0.3, 1.0, 1.0, np.nan])
    p_min = np.array([0.001, 0.001, 0.02, 0.3, 1.0, 0.5, 0.001])
    # K = 1: 4 tests with p_min <= 0.05 > 1; K = 2: 3 <= 0.025 > 2; K = 3: 2 <= 0.0167 <= 3
    adjusted, testable, k = tarone(p, p_min, 0.05)
    assert k == 3 and testable.tolist() == [True, True] + [False] * 5
    np.testing.assert_allclose(adjusted, [0.003, 0.008, 1, 1, 1, 1, np.nan])  # 3p, 2p
    adjusted, _, _ = tarone(p, p_min, 0.05, "bh")
    np.testing.assert_allclose(adjusted, [0.003, 0.006, 1, 1, 1, 1, np.nan])  # 3p/1, 3p/2
    # every p_min small: plain Holm over the finite p-values
    finite = p[:6]
    np.testing.assert_allclose(tarone(finite, np.zeros(6), 0.05)[0], holm(finite))
    assert tarone(np.array([]), np.array([]), 0.05)[2] == 0
    assert [min_trajectories(a) for a in (0.05, 0.01)] == [5, 6]


def test_small_cells_that_all_change_are_regressions():
    """The smoke campaign's CI case: n = 8 per cell, 41 cells, 369 rate tests. Starving the
    budget turns every trajectory of some cells undetermined. The smallest attainable p for 8
    against 8 is 1.55e-4, times 369 > 0.05: Holm over every test could never reject; Tarone
    drops the tests that cannot reach alpha (0/8 -> 0/8 and the like) and does."""
    cells = {(f"p{i}", "euler"): i for i in range(41)}
    base = tables({c: global_cell(8, 8) if i % 2 else {"diverged": 8} for c, i in cells.items()})
    new = tables({c: ({"undetermined": 8} if i < 10 else
                      global_cell(8, 8) if i % 2 else {"diverged": 8}) for c, i in cells.items()})
    c = compare_tables(base, new)
    assert len(c.rates) == 41 * 9 and c.rates["p_value"].min() == pytest.approx(1.55e-4, rel=0.01)
    assert c.rates["p_value"].min() * len(c.rates) > 0.05  # plain Holm: nothing, ever
    assert set(c.regressions["problem"]) == {f"p{i}" for i in range(10)}
    assert set(c.regressions["metric"]) == {"global", "undetermined"}
    untouched = c.rates[c.rates["problem"] == "p20"]
    assert not untouched["testable"].any() and (untouched["p_adjusted"] == 1).all()
    assert c.summary()["testable"] == (c.rates["testable"]).sum() <= c.tarone_k
    assert "untestable" in c.to_text(verbose=True) and c.min_trajectories is None
    # a cell 7/8 -> 0/8 of converged_global whose trajectories became undetermined: the global
    # rate is the regression; converged_global alone is an "other change", never a "shift"
    drop = compare_tables(tables({("p", "euler"): {"converged_global": 7, "diverged": 1}}),
                          tables({("p", "euler"): {"undetermined": 8}}))
    assert row(drop, "global")["change"] == "regression"
    assert row(drop, "converged_global")["change"] == "other change"
    assert "shift" not in drop.to_text(verbose=True).lower() + drop.to_html().lower()
    assert drop.to_json()["summary"]["other_changes"] == 1


def test_null_small_cells_give_no_false_regression():
    rng = np.random.default_rng(7)
    share = [0.4, 0.1, 0.2, 0.1, 0.05, 0.05, 0.05, 0.05]
    sides = [tables({(f"p{i}", "euler"): dict(zip(OUTCOMES, counts, strict=True))
                     for i, counts in enumerate(rng.multinomial(8, share, size=100))})
             for _ in range(2)]
    for correction in ("holm", "bh"):
        c = compare_tables(*sides, correction=correction)
        assert (c.rates["change"] == "").all() and 0 < c.tarone_k < len(c.rates)


def test_too_few_trajectories_is_said():
    """At 3 against 3 no test can reach alpha: say so (text, JSON), with the size needed."""
    few = compare_tables(tables({("p", "euler"): global_cell(3, 3)}),
                         tables({("p", "euler"): {"diverged": 3}}))
    assert few.regressions.empty and few.min_trajectories == 5
    note = "no regression can be detected at this sample size: at least 5 trajectories per cell"
    assert note in few.to_text().replace("\n    ", " ") and note in few.to_json()["notes"][0]
    assert few.to_json()["min_trajectories"] == 5 and note in few.to_html()
    # enough trajectories, nothing changed: nothing testable, but no such note
    same = compare_tables(tables({("p", "euler"): global_cell(8, 8)}),
                          tables({("p", "euler"): global_cell(8, 8)}))
    assert not same.rates["testable"].any() and same.min_trajectories is None


def test_costs_are_not_gated_when_budgets_differ():
    """A starved budget keeps only the fast trajectories: their median cost falls. With
    different budgets, cost tests are shown but left out of the family (no verdict)."""
    rng = np.random.default_rng(1)
    cell = ("p", "euler")
    slow = rng.uniform(100, 200, 40)
    base = tables({cell: global_cell(40, 40)}, {cell: slow})
    new = tables({cell: global_cell(40, 40)}, {cell: np.where(slow < 120, slow, np.nan)})
    manifest = {"fingerprint": {"budget": {"t_max": 20.0}}}
    starved = {"fingerprint": {"budget": {"t_max": 0.5}}}
    assert set(compare_tables(base, new).improvements["kind"]) == {"cost"}  # same budgets
    c = compare_tables(base, new, base_manifest=manifest, new_manifest=starved)
    assert not c.costs_tested and c.improvements.empty and c.regressions.empty
    assert c.costs["p_value"].notna().all() and c.costs["p_adjusted"].isna().all()
    assert c.summary()["tests"] == len(c.rates)
    text = c.to_text().replace("\n    ", " ")
    assert "budgets differ" in text and "conditional on reaching it" in text
    assert "not comparable" in c.to_html() and c.to_json()["costs_tested"] is False
    # the wall-time safety net is not a budget that changes results: costs stay gated
    net = {"fingerprint": {"budget": {"t_max": 20.0, "wall_time": 300.0}}}
    assert compare_tables(base, new, base_manifest=manifest, new_manifest=net).costs_tested


# -- the command: refusals and warnings -----------------------------------------------------

def invoke(*args):
    from click.testing import CliRunner

    from benchsuite.cli import main

    return CliRunner().invoke(main, ["compare", *map(str, args)])


@pytest.fixture
def synthetic(monkeypatch, tmp_path):
    """Two run folders whose comparison is given by tables (``set(base, new)``)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()

    def use(base, new):
        monkeypatch.setattr(compare_module, "compare_runs",
                            lambda x, y, **kw: compare_tables(base, new, names=("a", "b"), **kw))
    return a, b, use


def test_cli_refuses_to_overwrite_a_run_or_a_file_that_is_not_html(run, tmp_path):
    manifest = run / "manifest.json"
    before = manifest.read_bytes()
    for target in (manifest, run / "page.html", run / "report" / ".." / "x.html",
                   run / "report" / "index.html"):  # nor the run's own report page
        out = invoke(run, run, "--html", target)
        assert out.exit_code == 2 and "error: refusing to write" in out.stderr, out.output
        assert "hint: pass --html" in out.stderr
    assert manifest.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    out = invoke(run, run, "--html", notes)
    assert out.exit_code == 2 and "error: refusing to overwrite" in out.stderr
    assert notes.read_text() == "mine"
    fine = invoke(run, run, "--html", run / "report" / "again.html")
    assert fine.exit_code == 0 and (run / "report" / "again.html").exists()


def test_cli_rejects_a_non_finite_alpha(run):
    for value in ("nan", "inf"):
        out = invoke(run, run, "--alpha", value)
        assert out.exit_code == 2 and "error: invalid value for '--alpha'" in out.stderr
        assert "lists the run folders" not in out.stderr


def test_cli_nothing_to_compare_and_missing_cells(synthetic):
    a, b, use = synthetic
    use(tables({("p", "euler"): global_cell(5, 5)}), tables({("q", "rk45"): global_cell(5, 5)}))
    out = invoke(a, b)
    assert out.exit_code == 2 and "error: nothing to compare: a and b share no" in out.stderr
    assert "a: 1 cells (p x euler); b: 1 cells (q x rk45)" in out.stderr
    assert not (b / "report").exists()
    use(tables({("p", "euler"): global_cell(5, 5), ("q", "euler"): global_cell(5, 5)}),
        tables({("p", "euler"): global_cell(5, 5)}))
    out = invoke(a, b)
    assert out.exit_code == 0 and "warning: 1 cell of a is not compared" in out.stderr
    assert "ONLY IN a:" in out.stdout


def test_cli_warns_when_nothing_can_be_detected(synthetic):
    a, b, use = synthetic
    use(tables({("p", "euler"): global_cell(3, 3)}), tables({("p", "euler"): {"diverged": 3}}))
    out = invoke(a, b, "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["min_trajectories"] == 5
    assert "warning: no regression can be detected at this sample size" in out.stderr


def test_readme_names_the_verdicts_as_the_code_does():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Regression tracking")[1].split("\n## ")[0]
    assert "other change" in section and "shift" not in section and "Tarone" in section
