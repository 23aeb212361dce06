"""Theory against evidence: statuses, contradictions, Theorem 1 verdicts and the HTML section."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from benchsuite.evidence import (
    COLUMNS,
    MIN_CONFIDENT,
    POOLED,
    T1_COLUMNS,
    contradiction_banner_html,
    contradictions,
    evidence_html,
    evidence_table,
    theorem1_verdicts,
    )
from benchsuite.stats import wilson as wilson_interval

EULER, RK = "euler(h=0.01)", "rk45"


def runs(problem: str, **by_integrator: list[str]) -> pd.DataFrame:
    """A trajectory table: position i of each list is initial point i (shared by integrators)."""
    frames = [pd.DataFrame({"problem": problem, "integrator": integ, "traj": range(len(outs)),
                            "outcome": pd.Categorical(outs)})
              for integ, outs in by_integrator.items()]
    return pd.concat(frames, ignore_index=True)


def meta(bounded: str, local: str, infinity: str, **extra) -> dict:
    return {"bounded_trajectories": bounded, "spurious_local_minima": local,
            "spurious_minima_at_infinity": infinity, "source": "[JL] test", "role": "benchmark",
            "f_star": 0.0, **extra}


def row(table: pd.DataFrame, prop: str, integrator: str = POOLED) -> pd.Series:
    found = table[(table["property"] == prop) & (table["integrator"] == integrator)]
    assert len(found) == 1
    return found.iloc[0]


def test_escape_spurious_where_theory_proves_none_is_flagged_with_counts_and_integrator():
    traj = runs("p", **{EULER: ["escape_spurious"] * 2 + ["converged_global"] * 6,
                        RK: ["converged_global"] * 8})
    problems = {"p": meta("no", "no", "no")}
    table = evidence_table(traj, problems)
    assert list(table.columns) == COLUMNS and len(table) == 3 * 3  # 3 properties x (2 + pooled)
    euler = row(table, "spurious_minima_at_infinity", EULER)
    assert (euler["status"], euler["observed"], euler["confident"], euler["n"]) == (
        "contradicts", 2, 8, 8)
    assert row(table, "spurious_minima_at_infinity", RK)["status"] == "consistent"
    assert row(table, "bounded_trajectories")["status"] == "consistent"  # escapes allowed
    flagged = contradictions(traj, problems)
    assert set(flagged["integrator"]) == {EULER, POOLED}
    assert set(flagged["property"]) == {"spurious_minima_at_infinity"}
    banner = contradiction_banner_html(traj, problems)
    assert banner.startswith('<p class="warn">')
    for text in ("p:", "spurious minima at infinity = no", f"{EULER}: 2 of 8",
                 "a bug (classifier, integrator, plugin) or a counterexample"):
        assert text in banner
    assert RK not in banner


def test_escapes_contradict_proved_bounded_trajectories_only():
    traj = runs("p", **{EULER: ["escape_global"] + ["converged_global"] * 9})
    table = evidence_table(traj, {"p": meta("yes", "no", "no")})
    bounded = row(table, "bounded_trajectories", EULER)
    assert (bounded["status"], bounded["observed"], bounded["confident"]) == ("contradicts", 1, 10)
    others = table[table["property"] != "bounded_trajectories"]
    assert (others["status"] == "consistent").all()


def test_limits_at_critical_points_are_flagged_unless_theorem1_explains_them():
    traj = runs("p", **{EULER: ["converged_spurious"] * 2 + ["converged_global"] * 6})
    # mc2x2_example1: no spurious local minimum, strict saddles: such limits are suspicious
    flagged = row(evidence_table(traj, {"p": meta("no", "no", "yes")}), "spurious_local_minima")
    assert (flagged["status"], flagged["observed"]) == ("contradicts", 2)
    # Remark 2: bounded, no spurious local minimum, yet a spurious minimum at infinity, so
    # an assumption of Theorem 1 fails and trajectories stop at flat inflection points
    remark2 = row(evidence_table(traj, {"p": meta("yes", "no", "yes")}), "spurious_local_minima")
    assert remark2["status"] == "consistent" and "Remark 2" in remark2["note"]
    assert contradictions(traj, {"p": meta("yes", "no", "yes")}).empty


def test_discretisation_artefacts_are_counted_never_contradictions():
    problems = {"p": meta("yes", "no", "no")}
    traj = runs("p", **{EULER: ["diverged"] * 3 + ["step_limited"] * 2 + ["converged_global"] * 3})
    table = evidence_table(traj, problems)
    assert contradictions(traj, problems).empty and contradiction_banner_html(traj, problems) == ""
    bounded = row(table, "bounded_trajectories", EULER)
    assert (bounded["status"], bounded["artefacts"], bounded["confident"]) == ("consistent", 5, 3)
    only = runs("p", **{EULER: ["diverged"] * 12})
    assert (evidence_table(only, problems)["status"] == "no evidence").all()
    verdict = theorem1_verdicts(only, problems).iloc[0]
    assert verdict["verdict"] == "inconclusive" and "artefacts" in verdict["explanation"]


def test_proved_existence_without_evidence_is_not_observed_with_its_upper_bound():
    # mc2x2_example1: ~9% escape to a spurious value; a small sample may see none
    traj = runs("mc", **{EULER: ["converged_global"] * 20})
    table = evidence_table(traj, {"mc": meta("no", "no", "yes")})
    infinity = row(table, "spurious_minima_at_infinity")
    assert infinity["status"] == "not observed"
    expected = binomtest(0, 20).proportion_ci(0.95, method="wilson").high
    assert infinity["ci_high"] == pytest.approx(expected)
    assert row(table, "bounded_trajectories")["status"] == "not observed"
    assert row(table, "spurious_local_minima")["status"] == "consistent"
    assert "not observed" in evidence_html(traj, {"mc": meta("no", "no", "yes")})


def test_open_questions_are_observed_and_missing_metadata_is_unknown():
    traj = pd.concat([runs("probe", **{EULER: ["escape_global"] * 3 + ["converged_global"]}),
                      runs("old", **{EULER: ["converged_spurious", "converged_global"]})])
    problems = {"probe": meta("open", "unknown", "open")}  # "old" predates the metadata
    table = evidence_table(traj, problems)
    assert row(table[table["problem"] == "probe"], "bounded_trajectories")["status"] == "observed"
    old = table[table["problem"] == "old"]
    assert (old["theory"] == "unknown").all() and old["note"].str.contains("manifest").all()
    assert row(old, "spurious_local_minima")["status"] == "observed"
    assert contradictions(traj, problems).empty
    assert "questions the theory leaves open" in evidence_html(traj, problems)


def test_negative_control_is_not_applicable_and_never_flagged():
    traj = runs("cubic", **{EULER: ["escape_spurious", "diverged", "failed"]})
    problems = {"cubic": meta("no", "n/a", "n/a", role="negative control",
                              f_star=float("-inf"))}
    assert (evidence_table(traj, problems)["status"] == "n/a").all()
    assert contradictions(traj, problems).empty
    assert theorem1_verdicts(traj, problems).iloc[0]["verdict"] == "n/a"


def test_pooled_row_counts_each_initial_point_once():
    traj = runs("p", **{EULER: ["escape_spurious", "converged_global", "undetermined"],
                        RK: ["escape_spurious", "undetermined", "undetermined"]})
    pooled = row(evidence_table(traj, {"p": meta("no", "no", "yes")}),
                 "spurious_minima_at_infinity")
    assert (pooled["observed"], pooled["confident"], pooled["n"]) == (1, 2, 3)
    # without the traj column (an old table) every row is its own unit
    alone = row(evidence_table(traj.drop(columns="traj"), {"p": meta("no", "no", "yes")}),
                "spurious_minima_at_infinity")
    assert (alone["observed"], alone["confident"], alone["n"]) == (2, 3, 6)


def test_wilson_intervals_contain_the_rate_and_match_scipy():
    k, n = np.array([0, 1, 3, 7, 20]), np.array([5, 8, 10, 7, 50])
    low, high = wilson_interval(k, n)
    for i in range(len(k)):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(0.95, method="wilson")
        assert (low[i], high[i]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert np.isnan(wilson_interval(0, 0)).all()
    traj = runs("p", **{EULER: ["escape_spurious"] * 3 + ["converged_global"] * 5
                        + ["undetermined"] * 2, RK: ["converged_spurious"] * 8})
    table = evidence_table(traj, {"p": meta("no", "yes", "yes")}).dropna(subset=["rate"])
    assert len(table) and (table["ci_low"] <= table["rate"]).all()
    assert (table["rate"] <= table["ci_high"]).all()


@pytest.mark.parametrize(("outcomes", "verdict"), [
    (["converged_global"] * 12, "supports"),
    (["converged_global"] * 11 + ["converged_spurious"], "counterexample"),
    (["undetermined"] * 12, "inconclusive"),
    (["converged_global"] * (MIN_CONFIDENT - 1), "inconclusive"),
    (["converged_global"] * 10 + ["undetermined"] * 11, "inconclusive"),
    (["escape_global"] * 12, "inconclusive"),
])
def test_theorem1_verdicts(outcomes, verdict):
    traj = runs("p", **{EULER: outcomes, RK: outcomes})
    result = theorem1_verdicts(traj, {"p": meta("yes", "no", "no")})
    assert list(result.columns) == T1_COLUMNS and len(result) == 1
    got = result.iloc[0]
    assert got["verdict"] == verdict and got["points"] == len(outcomes)
    if verdict == "supports":
        assert got["spurious_upper"] == pytest.approx(wilson_interval(0, len(outcomes))[1])
    if verdict == "counterexample":
        assert got["spurious"] == 1 and f"{EULER} (1)" in got["spurious_integrators"]
        assert "contradicting the catalog" in got["explanation"]


def test_empty_tables_give_empty_frames_and_no_html():
    empty = pd.DataFrame(columns=["problem", "integrator", "traj", "outcome"])
    assert evidence_table(empty, {}).empty and list(evidence_table(empty, {}).columns) == COLUMNS
    assert theorem1_verdicts(empty, {}).empty and contradictions(empty, {}).empty
    assert evidence_html(empty, {}) == "" and contradiction_banner_html(empty, {}) == ""


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str | None] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(dict(attrs).get("class"))

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_names_and_uses_board_tables():
    name, integ = "a<b>&c", "<i>rk"
    traj = runs(name, **{integ: ["escape_spurious"] + ["converged_global"] * 3})
    problems = {name: meta("yes", "no", "no", source="<script>")}
    page = evidence_html(traj, problems) + contradiction_banner_html(traj, problems)
    assert "a&lt;b&gt;&amp;c" in page and "&lt;i&gt;rk" in page and "&lt;script&gt;" in page
    assert name not in page and "<i>rk" not in page and "<script>" not in page
    parsed = _Tags()
    parsed.feed(page)
    assert len(parsed.tables) == 2 and all("board" in c for c in parsed.tables)
    assert name in "".join(parsed.text)  # the reader sees the name as written
    quiet = runs(name, **{integ: ["converged_global"] * 4})
    assert contradiction_banner_html(quiet, problems) == ""


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from benchsuite.campaign import Campaign, run_campaign
    from benchsuite.execution import SerialExecutor
    from benchsuite.harness import Budget
    from benchsuite.plugins import load_registry
    from benchsuite.results import load_results

    campaign = Campaign(problems=("mc2x2_example1", "deep_linear_net[dims=4-3-2-3-2]",
                                  "l1_rank1_factorization"),
                        integrators=(EULER, "subgradient"), n_points=12,
                        budget=Budget(t_max=50.0, max_steps=5000, wall_time=30.0))
    path = tmp_path_factory.mktemp("evidence") / "run"
    run_campaign(campaign, load_registry(), path, executor=SerialExecutor())
    problems = json.loads((path / "manifest.json").read_text())["problems"]
    return load_results(path)["trajectories"], problems


def test_real_catalog_problems_are_not_flagged(real):
    traj, problems = real
    table = evidence_table(traj, problems)
    assert contradictions(traj, problems).empty and contradiction_banner_html(traj, problems) == ""
    proved = table[table["problem"].isin(["deep_linear_net[dims=4-3-2-3-2]",
                                          "l1_rank1_factorization"])]
    bounded = proved[proved["property"] == "bounded_trajectories"]
    assert (bounded["theory"] == "yes").all()
    assert bounded["status"].isin(["consistent", "no evidence"]).all()
    # the discretisation artefacts of the run are counted, not taken as escapes
    outcome = traj["outcome"].astype(str)
    per = bounded[bounded["integrator"] != POOLED]
    expected = traj[outcome.isin(["diverged", "step_limited"])].groupby(
        ["problem", "integrator"]).size()
    got = per.set_index(["problem", "integrator"])["artefacts"]
    assert got.sum() == expected.sum() and (got.reindex(expected.index) == expected).all()
    mc = row(table[table["problem"] == "mc2x2_example1"], "spurious_minima_at_infinity")
    assert mc["theory"] == "yes" and mc["status"] in ("consistent", "not observed")
    verdicts = theorem1_verdicts(traj, problems).set_index("problem")["verdict"]
    assert verdicts["deep_linear_net[dims=4-3-2-3-2]"] != "counterexample"
    assert "Theorem 1" in evidence_html(traj, problems)
