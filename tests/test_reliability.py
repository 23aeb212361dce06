"""Reliability: faults stay contained, bad input fails early, crashes lose nothing.

Every test injects a fault and checks that the campaign goes on, the fault is recorded with a
clear message, and no finished result is lost or corrupted.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_same_tables, start_campaign
from hypothesis import given, settings
from hypothesis import strategies as st

from benchsuite import Budget, hookimpl, run_cell
from benchsuite.campaign import (
    Campaign,
    CampaignAborted,
    CampaignError,
    campaign_from_dict,
    parse_spec,
    plan,
    run_campaign,
)
from benchsuite.classify import classify
from benchsuite.columns import point_column
from benchsuite.execution import SerialExecutor
from benchsuite.plugins import load_registry
from benchsuite.problem import Problem, Theory, Verdict, uniform_box
from benchsuite.results import cell_key, load_results
from benchsuite.vocabulary import OUTCOMES
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_problems import linear_networks, one_dimensional, sigmoid
from benchsuite_problems.factorization import xy_minus_one


def faulty(kind: str) -> Problem:
    """xy_minus_one with one injected fault in its oracles."""
    base = xy_minus_one()

    def grad(X):
        if kind == "raise":
            raise ZeroDivisionError("injected fault")
        if kind == "nan":
            return np.full(X.shape, np.nan)
        if kind == "inf":
            return np.full(X.shape, np.inf)
        if kind == "shape":
            return base.grad(X)[:, :1]
        return base.grad(X)

    return dataclasses.replace(base, name=f"faulty_{kind}", grad=grad)


class FaultyPlugin:
    @hookimpl
    def benchsuite_problems(self):
        return [faulty(k) for k in ("raise", "nan", "inf", "shape")]


@pytest.mark.parametrize(("kind", "stop", "outcome", "message"), [
    ("raise", "error", "failed", "injected fault"),
    ("nan", "error", "failed", "not finite at the initial point"),
    ("inf", "error", "failed", "not finite at the initial point"),
    ("shape", "error", "failed", "returned shape"),
])
def test_oracle_faults_become_labelled_trajectories(kind, stop, outcome, message):
    p = faulty(kind)
    res = run_cell(p, ExplicitEuler(), p.sample(np.random.default_rng(0), 4),
                   Budget(t_max=1.0))
    traj = res.trajectories
    assert (traj["stop"] == stop).all() and (traj["outcome"].astype(str) == outcome).all()
    assert traj["message"].str.contains(message).all()


def test_campaign_goes_on_past_faulty_cells_and_strict_stops_at_the_first(tmp_path):
    reg = load_registry(extra_plugins={"faulty": FaultyPlugin()})
    campaign = Campaign(problems=("faulty_*", "xy_minus_one"), integrators=("euler",),
                        n_points=3, budget=Budget(t_max=20.0))
    store = run_campaign(campaign, reg, tmp_path / "tolerant", executor=SerialExecutor())
    traj = load_results(store.path)["trajectories"]
    assert set(traj["problem"]) == {"faulty_raise", "faulty_nan", "faulty_inf", "faulty_shape",
                                    "xy_minus_one"}
    assert (traj[traj["problem"] == "xy_minus_one"]["outcome"].astype(str)
            == "converged_global").all()
    with pytest.raises(CampaignAborted, match=r"faulty_inf .*not finite at the initial point"):
        run_campaign(campaign, reg, tmp_path / "strict", executor=SerialExecutor(), strict=True)
    written = load_results(tmp_path / "strict")["trajectories"]
    assert set(written["problem"]) <= {"faulty_inf", "faulty_nan", "faulty_raise"}
    assert "faulty_inf" in set(written["problem"])  # the faulty cell itself is kept


def test_absurd_sizes_are_refused_before_any_work(tmp_path):
    with pytest.raises(CampaignError, match="use at most about"):
        plan(load_registry(), Campaign(problems=("deep_linear_net*",), n_points=9_000_000))
    with pytest.raises(CampaignError, match="between 1 and"):
        Campaign(n_points=0)


# -- numerical traps of the catalog give correct or explicit labels ---


def test_sigmoid_far_out_keeps_its_gradient_and_label():
    p = sigmoid.sigmoid2pt_fig3()
    start = np.array([[720.0, 1.0], [-720.0, -3.0], [710.0, 0.9]])
    g = p.grad(start)
    assert np.all(np.isfinite(g)) and np.all(np.abs(g).sum(axis=1) > 0)
    res = run_cell(p, DormandPrince(), start, Budget(t_max=10.0))
    assert res.trajectories["outcome"].astype(str).tolist() == [
        "escape_spurious", "escape_global", "escape_spurious"]


def test_remark2_far_flat_region_is_bounded_and_spurious():
    p = one_dimensional.remark2_infinite_critvals_1d()
    start = np.array([[41.5], [61.2]])  # k = 21, 31: powers 2^22, 2^32 underflow to flatness
    res = run_cell(p, DormandPrince(), start, Budget(t_max=20.0))
    assert np.all(np.isfinite(res.trajectories["f"]))
    assert (res.trajectories["outcome"].astype(str) == "converged_spurious").all()


def test_deep_linear_net_far_from_the_origin_never_gets_a_wrong_label():
    p = linear_networks.deep_linear_net()
    start = 1e3 * p.sample(np.random.default_rng(0), 6)
    for integ in (ExplicitEuler(h=0.01), DormandPrince()):
        res = run_cell(p, integ, start, Budget(t_max=5.0, max_steps=20_000, wall_time=60))
        labels = set(res.trajectories["outcome"].astype(str))
        # no spurious minima and bounded trajectories (Prop. 4): never escape or spurious
        assert labels <= {"converged_global", "diverged", "failed", "undetermined",
                          "step_limited"}, labels


# -- crash safety ---


CAMPAIGN = """
problems = ["xy_minus_one", "remark3_rational_1d", "sigmoid2pt_example2"]
integrators = ["euler(h=[0.01, 0.005])", "rk45", "proximal(tau=0.05)"]
n_points = 48
[budget]
t_max = 30.0
max_steps = 6000
"""


def start_run(tmp_path, run_id):
    return start_campaign(CAMPAIGN, tmp_path, run_id)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_interrupt_exits_130_with_a_resume_hint_then_rerun_gives_the_same_tables(
        tmp_path, sig, group):
    """Ctrl-C reaches the whole process group; SIGTERM (a scheduler, systemd) the main process
    only. Either way: exit 130, a hint, nothing half-written, and the rerun completes it."""
    assert start_run(tmp_path, "clean").wait(timeout=600) == 0
    victim = start_run(tmp_path, "interrupted")
    cells = tmp_path / "interrupted" / "cells"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(cells.glob("*.json"))) < 2:
        time.sleep(0.02)
    (os.killpg if group else os.kill)(victim.pid, sig)
    code = victim.wait(timeout=60)
    err = victim.stderr.read().decode()
    after = len(list(cells.glob("*.json")))
    assert code == 130 and after < 12, f"exit {code}, {after} cells after: {err!r}"
    assert f"interrupted by {signal.Signals(sig).name}" in err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert start_run(tmp_path, "interrupted").wait(timeout=600) == 0
    assert_same_tables(tmp_path / "clean", tmp_path / "interrupted")


# -- security: input is data, names are sanitized ---


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs", "a b", "UPPER", "x;rm -rf"])
def test_unsafe_problem_names_are_refused(name):
    with pytest.raises(ValueError, match="not allowed"):
        dataclasses.replace(xy_minus_one(), name=name)


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60),
       st.text(min_size=1, max_size=60))
def test_cell_keys_are_safe_distinct_file_names(problem, integrator, other):
    key = cell_key(problem, integrator)
    # a plain name inside its folder: no separator, no NUL, never "." or "..", no hidden file
    assert Path(key).name == key and "\\" not in key and "\x00" not in key
    assert key not in {".", ".."} and not key.startswith(".") and len(key) <= 130
    assert key == cell_key(problem, integrator)
    if other != integrator:  # sanitizing must not merge two cells into one file
        assert cell_key(problem, other) != key


@pytest.mark.parametrize("spec", ["euler(h=__import__('os').system('true'))",
                                  "euler(h=eval('1'))", "euler(h=1; import os)"])
def test_integrator_specs_are_never_evaluated(spec):
    with pytest.raises(CampaignError, match="cannot read"):
        parse_spec(spec)


# -- property-based: the campaign parser and the classifier ---

toml_scalars = st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False), st.booleans(),
                         st.text(max_size=20))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=8)
keys = st.sampled_from(["problems", "integrators", "n_points", "seed", "budget", "recording",
                        "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, toml_values, max_size=6))
def test_campaign_parser_accepts_or_explains(data):
    try:
        campaign = campaign_from_dict(data, source="fuzz.toml")
    except CampaignError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        assert isinstance(campaign, Campaign) and campaign.n_points >= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**32 - 1), st.floats(0.01, 1e3))
def test_campaign_round_trips_through_its_manifest_form(n_points, seed, t_max):
    campaign = Campaign(problems=("xy*",), integrators=("euler(h=[0.1,0.2])",),
                        n_points=n_points, seed=seed, budget=Budget(t_max=t_max))
    assert campaign_from_dict(dataclasses.asdict(campaign)) == campaign


def _theory():
    return Theory(Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.UNKNOWN, "fuzz")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_classifier_labels_every_trajectory_and_respects_how_it_stopped(data):
    batch = data.draw(st.integers(1, 6))
    n_cp = data.draw(st.integers(1, 8))
    floats = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf]))
    stops = data.draw(st.lists(st.sampled_from(["t_max", "max_steps", "error", "nonfinite",
                                                "prox_failed", "wall_time"]),
                               min_size=batch, max_size=batch))
    x = np.array(data.draw(st.lists(st.lists(floats, min_size=2, max_size=2), min_size=batch,
                                    max_size=batch)))
    traj = pd.DataFrame({"traj": np.arange(batch), "stop": stops, "message": "",
                         "f": data.draw(st.lists(floats, min_size=batch, max_size=batch)),
                         "norm": np.abs(data.draw(st.lists(floats, min_size=batch,
                                                           max_size=batch))),
                         "x": point_column(x)})
    rows = []
    for tid in range(batch):
        ts = np.cumsum(data.draw(st.lists(st.floats(1e-3, 1e3), min_size=n_cp, max_size=n_cp)))
        for j, t in enumerate(ts):
            rows.append({"traj": tid, "step": j + 1, "t": t, "f": data.draw(floats),
                         "f_gap": data.draw(floats), "norm": abs(data.draw(floats)),
                         "grad_norm": abs(data.draw(floats)), "nfev": j, "ngev": j,
                         "nprox": 0})
    said = data.draw(st.sampled_from(["", "escape_spurious", "escape_spurios", "raise"]))

    def certificate(X, f):
        if said == "raise":
            raise RuntimeError("certificate fault")
        return np.full(len(f), said)

    problem = Problem(name="fuzz", n=2, f=lambda X: np.sum(X * X, axis=1),
                      grad=lambda X: 2 * X, sample=uniform_box(-1, 1, 2), f_star=0.0,
                      attained=data.draw(st.booleans()), smooth=True, coercive=True,
                      theory=_theory(), description="fuzz", critical_values=(0.0, 1.0),
                      critical_values_complete=data.draw(st.booleans()),
                      certificate=data.draw(st.sampled_from([None, certificate])))
    integrator = data.draw(st.sampled_from([DormandPrince(), ExplicitEuler(h=0.1)]))
    found: list[str] = []
    out = classify(problem, integrator, traj, pd.DataFrame(rows), problems_found=found,
                   certificates=data.draw(st.booleans()))
    labels = out["outcome"].astype(str)
    assert labels.isin(OUTCOMES).all() and len(out) == batch
    assert out["generic_outcome"].astype(str).isin(OUTCOMES).all()
    assert not out["reason"].str.contains("classifier failed").any(), out["reason"].iloc[0]
    for stop, label in zip(stops, labels, strict=True):
        if stop in ("error", "prox_failed"):
            assert label == "failed"
        if stop == "nonfinite":
            assert label == "diverged"
        if stop == "wall_time":  # the safety net is never evidence
            assert label == "undetermined"
