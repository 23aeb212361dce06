"""Verdicts you can trust (issue 10): labels are a function of the campaign, the seed and the
code; faults become failed rows with their message; extension equals one longer run; and the
generic rules never contradict the exact truth of the catalog."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from benchsuite import Budget, Integrator, State, hookimpl, load_registry, run_cell
from benchsuite.agreement import confident_disagreements
from benchsuite.campaign import (
    DEFAULT_CAMPAIGN_BUDGET,
    Campaign,
    PluginWarning,
    initial_points,
    run_campaign,
)
from benchsuite.classify import classify
from benchsuite.execution import SerialExecutor
from benchsuite.vocabulary import OUTCOMES
from benchsuite_plugins import runge_kutta
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_plugins.scipy_ivp import ScipyIVP
from benchsuite_problems import factorization, sigmoid

EXAMPLE1 = factorization.mc2x2_example1()


def run(problem, integrator, x0, **budget):
    budget = {"t_max": 20.0, "max_steps": 10**6, **budget}
    certificates = budget.pop("certificates", True)
    return run_cell(problem, integrator, np.asarray(x0, dtype=float), Budget(**budget),
                    certificates=certificates)


# -- extension ------------------------------------------------------------------------------


def test_extension_equals_one_run_with_the_longer_budget():
    """Each extended row is exactly what a single run with its final budget gives."""
    x0 = EXAMPLE1.sample(np.random.default_rng(0), 64)
    extended = run(EXAMPLE1, DormandPrince(), x0, t_max=2.0, extend=2,
                   certificates=False).trajectories
    assert set(extended["extensions"]) == {0, 1, 2}
    for doublings in (0, 1, 2):
        rows = extended[extended["extensions"] == doublings]
        single = run(EXAMPLE1, DormandPrince(), x0[rows["traj"]], t_max=2.0 * 2**doublings,
                     max_steps=10**6 * 2**doublings, certificates=False).trajectories
        pd.testing.assert_frame_equal(rows.drop(columns=["traj", "extensions"])
                                      .reset_index(drop=True),
                                      single.drop(columns=["traj", "extensions"]))
    # extension only decides more: every row undetermined after it was undetermined before
    plain = run(EXAMPLE1, DormandPrince(), x0, t_max=2.0, certificates=False).trajectories
    undecided = extended["outcome"].astype(str) == "undetermined"
    assert (plain["outcome"].astype(str)[undecided] == "undetermined").all()
    assert undecided.sum() < (plain["outcome"].astype(str) == "undetermined").sum()


def test_extension_keeps_checkpoints_consistent_with_the_rows():
    res = run(EXAMPLE1, DormandPrince(), EXAMPLE1.sample(np.random.default_rng(1), 16),
              t_max=2.0, extend=1, certificates=False)
    last = res.checkpoints.sort_values(["traj", "step"]).groupby("traj").tail(1)
    np.testing.assert_array_equal(last["t"].to_numpy(), res.trajectories["t"].to_numpy())
    assert not res.checkpoints.duplicated(["traj", "step"]).any()


# -- the wall-time safety net ---------------------------------------------------------------


def test_rows_cut_by_the_safety_net_are_undetermined_and_carry_no_finding():
    res = run(EXAMPLE1, ExplicitEuler(h=1e-4), EXAMPLE1.sample(np.random.default_rng(0), 8),
              t_max=1e3, wall_time=0.05)
    traj = res.trajectories
    assert (traj["stop"] == "wall_time").all()
    assert (traj["outcome"].astype(str) == "undetermined").all()
    assert (traj["reason"] == "safety_net").all()
    findings = ["growth_exponent", "f_limit", "h_lambda_max", "t_to_0.1", "evals_to_0.1"]
    assert traj[findings].isna().all().all()


def test_labels_do_not_depend_on_the_wall_time_when_it_is_not_reached():
    x0 = EXAMPLE1.sample(np.random.default_rng(2), 32)
    a = run(EXAMPLE1, DormandPrince(), x0, wall_time=30.0).trajectories
    b = run(EXAMPLE1, DormandPrince(), x0, wall_time=3000.0).trajectories
    pd.testing.assert_frame_equal(a, b)


# -- faults ---------------------------------------------------------------------------------


def test_non_finite_start_fails_its_row_only():
    x0 = EXAMPLE1.sample(np.random.default_rng(0), 4)
    x0[1, 2] = np.nan
    traj = run(EXAMPLE1, DormandPrince(), x0).trajectories
    assert traj["outcome"].astype(str).tolist()[1] == "failed"
    assert "not finite at the initial point" in traj["message"][1]
    assert (traj["outcome"].astype(str).drop(index=1) != "failed").all()


@dataclass(frozen=True)
class FragileInit(Integrator):
    """Euler whose init raises for rows starting with x0[0] > 0."""

    name = "fragile"
    requires = frozenset({"grad"})

    def init(self, oracle, x0):
        if (x0[:, 0] > 0).any():
            raise ValueError("cannot start at x0[0] > 0")
        return State.start(x0)

    def step(self, oracle, state):
        return state.replace(x=state.x - 0.01 * oracle.grad(state.x), t=state.t + 0.01)


def test_init_fault_fails_its_rows_and_the_others_run():
    x0 = EXAMPLE1.sample(np.random.default_rng(0), 16)
    traj = run(EXAMPLE1, FragileInit(), x0).trajectories
    bad = x0[:, 0] > 0
    assert (traj["outcome"].astype(str)[bad] == "failed").all()
    assert traj["message"][bad].str.contains("ValueError in init: cannot start").all()
    assert (traj["stop"][~bad] == "t_max").all()


def test_scipy_ivp_row_fault_leaves_its_siblings_untouched():
    """A row whose gradient raises must not re-step the others (issue 10: their t jumped)."""
    base = sigmoid.sigmoid2pt_example2()

    def grad(X):
        if (X[:, 0] > 1.8).any():
            raise FloatingPointError("injected")
        return base.grad(X)

    faulty = dataclasses.replace(base, grad=grad)
    x0 = np.array([[0.5, 0.5], [1.79, 0.0], [-0.5, -0.3]])
    got = run(faulty, ScipyIVP(), x0, t_max=5.0).trajectories
    clean = run(base, ScipyIVP(), x0[[0, 2]], t_max=5.0).trajectories
    assert got["stop"].tolist() == ["t_max", "error", "t_max"]
    assert "injected" in got["message"][1]
    for column in ("t", "f", "steps", "ngev"):
        np.testing.assert_array_equal(got[column].to_numpy()[[0, 2]], clean[column].to_numpy())


@pytest.mark.parametrize("certificate", [
    lambda X, f: np.full(len(f), "escape_spurios"),
    lambda X, f: 1 / 0,
    lambda X, f: np.full(len(f) + 1, ""),
    lambda X, f: np.full(len(f), "failed"),  # a label about the run, which no theorem proves
    lambda X, f: sys.exit(3),
])
def test_broken_certificate_is_reported_and_the_generic_rules_decide(certificate):
    problem = dataclasses.replace(EXAMPLE1, certificate=certificate)
    x0 = EXAMPLE1.sample(np.random.default_rng(0), 8)
    res = run(problem, DormandPrince(), x0)
    plain = run(EXAMPLE1, DormandPrince(), x0, certificates=False)
    assert res.info["warnings"] and "mc2x2_example1" in res.info["warnings"][0]
    assert res.trajectories["outcome"].tolist() == plain.trajectories["outcome"].tolist()
    assert res.trajectories["outcome"].isin(OUTCOMES).all()


def test_classifier_on_a_cell_without_checkpoints_does_not_raise():
    traj = run(EXAMPLE1, DormandPrince(), EXAMPLE1.sample(np.random.default_rng(0), 3))
    table = traj.trajectories.drop(columns=[c for c in traj.trajectories
                                            if c not in ("traj", "stop", "message", "f", "norm",
                                                         "x", "x0", "t", "steps")])
    out = classify(EXAMPLE1, DormandPrince(), table, pd.DataFrame())
    labels = out["outcome"].astype(str)
    assert labels.isin(OUTCOMES).all() and not labels.str.startswith("escape").any()
    assert not out["reason"].str.contains("classifier failed").any()


def test_an_unreadable_table_gives_undetermined_rows_that_say_why():
    table = pd.DataFrame({"traj": [0, 1], "stop": ["t_max", "t_max"], "f": ["x", "y"]})
    out = classify(EXAMPLE1, DormandPrince(), table, pd.DataFrame())
    assert (out["outcome"].astype(str) == "undetermined").all()
    assert out["reason"].str.contains("the classifier failed: ValueError").all()
    assert (out["generic_outcome"].astype(str) == "undetermined").all()


@dataclass(frozen=True)
class BrokenDeclaration(Integrator):
    """Euler whose fixed-step declaration raises."""

    name = "broken_declaration"
    requires = frozenset({"grad"})

    @property
    def explicit_step(self):
        raise AttributeError("no step here")

    def init(self, oracle, x0):
        return State.start(x0)

    def step(self, oracle, state):
        return state.replace(x=state.x - 0.01 * oracle.grad(state.x), t=state.t + 0.01)


def test_a_raising_fixed_step_declaration_is_reported_and_the_rest_classifies():
    x0 = EXAMPLE1.sample(np.random.default_rng(0), 8)
    res = run(EXAMPLE1, BrokenDeclaration(), x0)
    plain = run(EXAMPLE1, ExplicitEuler(h=0.01), x0)
    assert any("fixed-step declaration raised AttributeError" in w for w in res.info["warnings"])
    assert (res.trajectories["h_lambda_max"].isna()).all()
    assert not res.trajectories["reason"].str.contains("classifier failed").any()
    at_infimum = plain.trajectories["reason"] == "at_infimum"
    assert (res.trajectories["outcome"][at_infimum] == "converged_global").all()


# -- validation against the truth -----------------------------------------------------------


def certified_or_bounded():
    """Catalog problems whose truth is known: a certificate, or bounded trajectories proved."""
    reg = load_registry()
    return [name for name, p in reg.problems.items()
            if p.certificate is not None or str(p.theory.bounded_trajectories) == "yes"]


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["euler", "rk45", "proximal", "subgradient"])
def test_generic_labels_never_contradict_the_truth_at_the_default_budget(integrator):
    """Issue 10: zero confident disagreements between the generic rules and the certificates
    (trajectory by trajectory), and no escape label where bounded trajectories are proved."""
    reg = load_registry()
    integ = reg.integrators[integrator]
    checked = 0
    for name in certified_or_bounded():
        problem = reg.problems[name]
        if integ.skip(problem) is not None or problem.n > 50:
            continue  # the large instances are covered by the default campaign's run
        x0 = initial_points(problem, 16, 0)
        traj = run_cell(problem, integ, x0, DEFAULT_CAMPAIGN_BUDGET).trajectories
        wrong = confident_disagreements(traj)
        assert wrong.empty, wrong[["traj", "generic_outcome", "certificate", "reason"]]
        if str(problem.theory.bounded_trajectories) == "yes":
            escapes = traj["generic_outcome"].astype(str).str.startswith("escape")
            assert not escapes.any(), (name, traj[escapes][["traj", "reason"]])
        checked += len(traj)
    assert checked >= 100



def test_unknown_certificate_label_is_a_plugin_error_naming_the_plugin(tmp_path):
    class Plugin:
        @hookimpl
        def benchsuite_problems(self):
            return [dataclasses.replace(EXAMPLE1, name="junk_certificate",
                                        certificate=lambda X, f: np.full(len(f), "escape_spurios"))]

    reg = load_registry(extra_plugins={"junk-plugin": Plugin(), "rk": runge_kutta},
                        entry_points=False)
    campaign = Campaign(problems=("junk_certificate",), integrators=("rk45",), n_points=4,
                        budget=Budget(t_max=5.0))
    with pytest.warns(PluginWarning, match="plugin junk-plugin .*'escape_spurios'.*no outcome"):
        run_campaign(campaign, reg, tmp_path / "run", executor=SerialExecutor())
