"""Classification on problems whose outcome theory fixes (catalog section F), on the failure
modes of issue 10 (slow passes, truncated runs, stalls of undeclared and declared fixed-step
methods), and the evidence it computes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from benchsuite import (
    Budget,
    Integrator,
    Problem,
    State,
    Theory,
    Verdict,
    classify,
    run_cell,
    uniform_box,
)
from benchsuite.classify import aitken_limit, lambda_max, lambda_min
from benchsuite.columns import points
from benchsuite.vocabulary import OUTCOMES
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.proximal import ProximalPoint
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_plugins.subgradient import SubgradientMethod
from benchsuite_problems import factorization, linear_networks, one_dimensional, relu, sigmoid


def outcomes(problem, integrator, x0, t_max, max_steps=10**6, certificates=True):
    res = run_cell(problem, integrator, np.asarray(x0, dtype=float),
                   Budget(t_max=t_max, max_steps=max_steps, wall_time=300),
                   certificates=certificates)
    return res.trajectories["outcome"].astype(str).tolist(), res.trajectories


def test_remark3_escapes_beyond_the_maxima_and_converges_inside():
    starts = [[-3.0], [-1.6], [-1.5], [-1.0], [1.0], [1.5], [1.6], [3.0]]
    got, traj = outcomes(one_dimensional.remark3_rational_1d(), DormandPrince(), starts, 100.0)
    expected = ["escape_spurious" if abs(s[0]) > 1.5538 else "converged_global" for s in starts]
    assert got == expected
    assert (traj["max_norm"][[0, 7]] > 5.0).all()  # (8t)^(1/4) growth from 3: |x(100)| ~ 5.5


def test_remark3_generic_rules_find_the_closed_form_truth():
    """Without the certificate: |x0| > 1.5538 escapes with f -> 1, inside converges."""
    starts = [[-3.0], [-1.6], [-1.5], [1.0], [1.6], [3.0]]
    got, traj = outcomes(one_dimensional.remark3_rational_1d(), DormandPrince(), starts, 2000.0,
                         certificates=False)
    assert got == ["escape_spurious" if abs(s[0]) > 1.5538 else "converged_global"
                   for s in starts]
    escaped = traj["outcome"] == "escape_spurious"
    assert (np.abs(traj["f_limit"][escaped] - 1.0) <= traj["f_limit_err"][escaped] + 1e-3).all()
    np.testing.assert_allclose(traj["growth_exponent"][escaped], 0.25, atol=0.03)


def test_example2_escapes_to_the_global_infimum():
    got, traj = outcomes(sigmoid.sigmoid2pt_example2(), DormandPrince(),
                         [[0.5, 0.5], [-0.5, -0.3], [1.5, 1.0]], 200.0)
    assert got == ["escape_global"] * 3
    np.testing.assert_allclose(traj["f"], 0.5, atol=0.01)


def test_example2_generic_rules_never_claim_a_spurious_minimum():
    """Example 2 has none (catalog H.6): at t = 200, f - 1/2 ~ 1/t is still 5e-3, too far from
    the infimum to call the escape global, and never called spurious; by t = 2000 f is within
    the tolerance of the unattained infimum while |x| still grows: escape_global."""
    x0 = sigmoid.sigmoid2pt_example2().sample(np.random.default_rng(3), 12)
    got, _ = outcomes(sigmoid.sigmoid2pt_example2(), DormandPrince(), x0, 200.0,
                      certificates=False)
    assert set(got) <= {"escape_global", "undetermined"}
    got, _ = outcomes(sigmoid.sigmoid2pt_example2(), DormandPrince(), x0, 2000.0,
                      certificates=False)
    assert got == ["escape_global"] * 12


@pytest.mark.parametrize(("certificates", "t_max"), [(True, 500.0), (False, 5000.0)])
def test_figure3_limit_depends_on_the_side_of_ln3(certificates, t_max):
    """Without the certificate the side towards the infimum needs f within the tolerance of
    1/2 (f - 1/2 ~ 1/t), hence the longer horizon."""
    starts = [[2.0, 0.5], [0.5, 0.5], [3.0, 2.0], [-1.0, -2.0]]
    got, traj = outcomes(sigmoid.sigmoid2pt_fig3(), DormandPrince(), starts, t_max,
                         certificates=certificates)
    assert got == ["escape_spurious", "escape_global", "escape_spurious", "escape_global"]
    final = traj["f"].to_numpy()
    np.testing.assert_allclose(final[[0, 2]], 4.5, atol=0.01)
    np.testing.assert_allclose(final[[1, 3]], 0.5, atol=0.01)


def test_relu_flat_region_is_spurious_not_global():
    got, _ = outcomes(relu.relu_flat_fig2(), ExplicitEuler(h=1e-3),
                      [[1.0, -2.0], [2.0, -1.0], [-0.5, 0.3]], 20.0)
    assert got == ["converged_spurious", "converged_global", "converged_spurious"]


def test_relu_flat_region_without_certificate_is_still_not_global():
    """The generic rule alone (settled, f = 1 > f_star, a listed critical value) says spurious."""
    p = dataclasses.replace(relu.relu_flat_fig2(), certificate=None)
    got, traj = outcomes(p, ExplicitEuler(h=1e-3), [[-0.5, 0.3], [-0.1, -1.0]], 10.0)
    assert got == ["converged_spurious"] * 2
    assert (traj["reason"] == "stationary").all()


ESCAPING = [[2.0, -0.4, 0.5, -2.5], [1.5, -0.5, 0.6, -2.0]]  # f < 2 and x2 y1 < 0: stuck
CONVERGING = [[1.1, 0.9, 1.0, 1.2]]


def test_example1_euler_is_step_limited_where_rk_escapes():
    p = factorization.mc2x2_example1()
    start = ESCAPING + CONVERGING
    euler, traj = outcomes(p, ExplicitEuler(h=0.01), start, 2500.0)
    assert euler == ["step_limited", "step_limited", "converged_global"]
    # it stalls at |x1| ~ h^(-1/2) = 10 (catalog P01: 9.9-10.0)
    x = points(traj, "x")
    assert np.all((np.abs(x[:2, 0]) > 8.5) & (np.abs(x[:2, 0]) < 11))
    assert np.all(traj["h_lambda_max"][:2] >= 1.5)
    rk, _ = outcomes(p, DormandPrince(), start, 2500.0)
    assert rk == ["escape_spurious", "escape_spurious", "converged_global"]
    prox, _ = outcomes(p, ProximalPoint(tau=1.0), start, 2500.0)
    assert prox == ["escape_spurious", "escape_spurious", "converged_global"]


def test_example1_escape_without_certificate_is_found_by_the_growth_law():
    p = dataclasses.replace(factorization.mc2x2_example1(), certificate=None)
    got, traj = outcomes(p, DormandPrince(), ESCAPING + CONVERGING, 2000.0)
    assert got == ["escape_spurious", "escape_spurious", "converged_global"]
    # (8t)^(1/4): growth exponent near 1/4, and f tends to 1 within the error bar
    np.testing.assert_allclose(traj["growth_exponent"][:2], 0.25, atol=0.01)
    assert (np.abs(traj["f_limit"][:2] - 1.0) <= traj["f_limit_err"][:2]).all()
    assert (traj["f_limit_err"][:2] < 0.05).all()


def test_example1_at_a_short_horizon_is_undetermined_not_escape_global():
    """At t = 1 (issue 10: 67 impossible escape_global labels) nothing is established yet."""
    p = factorization.mc2x2_example1()
    x0 = p.sample(np.random.default_rng(0), 200)
    got, _ = outcomes(p, DormandPrince(), x0, 1.0, certificates=False)
    assert "escape_global" not in got and "escape_spurious" not in got


def test_slow_pass_by_a_plateau_is_not_an_escape():
    """deep_sigmoid_1d[depth=2] has bounded trajectories (Prop. 5); this start (the default
    campaign's fourth) lingers near f = 2 with |x| gathering speed until t ~ 100, then
    converges. At t = 20 the growth accelerates: a transient, not an escape."""
    p = sigmoid.deep_sigmoid_1d(2)
    x0 = [[-1.79657824, -1.89418647]]
    got, traj = outcomes(p, DormandPrince(), x0, 20.0, certificates=False)
    assert got == ["undetermined"] and "accelerates" in traj["reason"][0]
    # from t ~ 2.5 to 330 it grows like log t with f -> 2, a textbook escape over any window,
    # but across its path the Hessian has a negative eigenvalue: a saddle at infinity
    got, traj = outcomes(p, DormandPrince(), x0, 80.0, certificates=False)
    assert got == ["undetermined"] and "negative curvature" in traj["reason"][0]
    got, _ = outcomes(p, DormandPrince(), x0, 1000.0, certificates=False)
    assert got == ["converged_global"]


def test_step_budget_cut_does_not_give_escape_labels():
    """Issue 10: the sqrt-schedule subgradient method stopped on steps at t ~ 9.9 gave
    escape_global on a bounded problem."""
    p = sigmoid.deep_sigmoid_1d(4)
    x0 = p.sample(np.random.default_rng(0), 32)
    got, _ = outcomes(p, SubgradientMethod(), x0, 20.0, max_steps=10_000, certificates=False)
    assert not any(label.startswith("escape") for label in got)


def test_constant_step_subgradient_is_step_limited_like_euler():
    """A constant-step subgradient method is Euler with h = c and stalls alike (issue 10)."""
    p = factorization.mc2x2_example1()
    euler, e_traj = outcomes(p, ExplicitEuler(h=0.05), ESCAPING, 200.0)
    sub, s_traj = outcomes(p, SubgradientMethod(schedule="constant", c=0.05), ESCAPING, 200.0)
    np.testing.assert_allclose(points(s_traj, "x"), points(e_traj, "x"), rtol=1e-9)
    assert euler == sub == ["step_limited", "step_limited"]


def quadratic(diag):
    d = np.asarray(diag, dtype=float)
    return Problem(
        name="quadratic", n=len(d), f=lambda X: 0.5 * (X * X) @ d, grad=lambda X: X * d,
        sample=uniform_box(-1.0, 1.0, len(d)), f_star=0.0, attained=True, smooth=True,
        coercive=True, critical_values=(0.0,), critical_values_complete=True,
        description="a convex quadratic", theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO, "-"))


def test_stable_euler_near_its_limit_converges_and_is_not_step_limited():
    """h lambda_max = 1.9 < 2 is stable: 0.5 x^T diag(1, 10, 100) x converges (issue 10)."""
    p = quadratic([1.0, 10.0, 100.0])
    got, _ = outcomes(p, ExplicitEuler(h=0.019), p.sample(np.random.default_rng(0), 50), 100.0)
    assert set(got) == {"converged_global"}


@dataclass(frozen=True)
class Heun(Integrator):
    """Heun's method with a fixed step, *not* declaring it (as a careless plugin would)."""

    h: float = 0.02
    name = "heun_undeclared"
    requires = frozenset({"grad"})
    order = 2

    def init(self, oracle, x0):
        return State.start(x0)

    def step(self, oracle, state):
        g1 = oracle.grad(state.x)
        g2 = oracle.grad(state.x - self.h * g1)
        return state.replace(x=state.x - 0.5 * self.h * (g1 + g2), t=state.t + self.h)


@dataclass(frozen=True)
class DeclaredHeun(Heun):
    """The same, declaring its fixed step (stability limit 2, as Euler's)."""

    name = "heun"

    @property
    def explicit_step(self):
        return self.h


def test_stalled_fixed_step_method_is_never_called_converged():
    """Heun at h lambda = 2 on lambda = 100 keeps that component forever: f settles at a value
    that is no critical value, with a gradient that does not vanish (issue 10: it was called
    converged_spurious at f = 12.7). Undeclared: undetermined; declared: step_limited."""
    p = quadratic([1.0, 100.0])
    x0 = p.sample(np.random.default_rng(1), 8)
    got, traj = outcomes(p, Heun(), x0, 200.0)
    assert set(got) == {"undetermined"} and (traj["f"] > 1e-3).all()
    got, _ = outcomes(p, DeclaredHeun(), x0, 200.0)
    assert set(got) == {"step_limited"}


def test_negative_control_never_escapes_or_converges():
    got, _ = outcomes(one_dimensional.cubic_blowup_1d(), DormandPrince(), [[1.0], [2.0]], 5.0)
    assert set(got) <= {"diverged", "failed"}


def test_unattained_infimum_means_escape():
    p = linear_networks.deep_linear_logistic()
    got, _ = outcomes(p, DormandPrince(), p.sample(np.random.default_rng(0), 6), 1000.0)
    assert got == ["escape_global"] * 6


def test_remark2_slow_approach_to_a_flat_inflection_is_bounded():
    got, traj = outcomes(one_dimensional.remark2_infinite_critvals_1d(), DormandPrince(),
                         [[-1.0], [0.5], [1.0], [2.5], [3.0]], 200.0)
    assert got == ["converged_global", "converged_spurious", "converged_spurious",
                   "converged_spurious", "converged_spurious"]
    assert (traj["reason"][1:] == "critical_approach").all()


# -- the evidence ---------------------------------------------------------------------------


def test_aitken_limit_is_exact_on_power_laws_and_refuses_non_decaying_ones():
    t = 20.0 / 2.0 ** np.arange(5)
    F = np.stack([1.0 + 2.0 * t**-0.5, 0.5 + 1.0 / t, 3.0 - 0.1 * np.log(t)])
    L, err = aitken_limit(F)
    np.testing.assert_allclose(L[:2], [1.0, 0.5], atol=1e-12)
    assert (err[:2] < 1e-8).all()
    assert np.isnan(L[2])  # f decreasing like -log t has no finite limit


def test_aitken_error_bar_covers_estimates_that_do_not_settle():
    """f = 1 + t^-1/2 + t^-0.1/2: the successive estimates change by about as much each
    octave (s > MAX_RATIO), so the error bar is at least ten times the larger of the last two
    changes."""
    t = 20.0 / 2.0 ** np.arange(5)
    F = (1.0 + t**-0.5 + 0.5 * t**-0.1)[None, :]
    L, err = aitken_limit(F)
    D = F[0, 1:] - F[0, :-1]  # decrease over each octave, most recent first
    estimates = [F[0, k] - D[k] ** 2 / (D[k + 1] - D[k]) for k in range(3)]
    np.testing.assert_allclose(L[0], estimates[0], rtol=1e-12)
    changes = np.abs(np.diff(estimates))
    assert changes[0] / changes[1] > 0.9
    assert err[0] >= 10 * changes.max()


@pytest.mark.parametrize("dense_up_to", [24, 0], ids=["dense", "power"])
def test_lambda_max_known_values(dense_up_to, monkeypatch):
    """Example 1's Hessian at (1, 1, 1, 1) and at the origin (a saddle whose spectrum is
    symmetric, +-3.24, where a plain power iteration oscillates), whole or by power iteration."""
    monkeypatch.setattr(classify, "DENSE_LAMBDA_MAX", dense_up_to)
    p = factorization.mc2x2_example1()
    x = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(lambda_max(p, x), [4 + 2 * math.sqrt(2), math.sqrt(5) + 1],
                               rtol=1e-4)


@pytest.mark.parametrize("problem", [factorization.mc2x2_example1(),
                                     factorization.pca_factorization(4, 4, 2)],
                         ids=lambda p: f"n={p.n}")
def test_extreme_eigenvalues_match_the_dense_hessian(problem, monkeypatch):
    """lambda_min and lambda_max are the extreme eigenvalues of the Hessian, built here row by
    row; the power iteration (forced) never overshoots lambda_max, a Rayleigh quotient."""
    x = problem.sample(np.random.default_rng(4), 40)
    dense = []
    for row in x:
        H = np.stack([(problem.grad(row[None] + 1e-6 * e) - problem.grad(row[None] - 1e-6 * e))[0]
                      / 2e-6 for e in np.eye(problem.n)], axis=1)
        dense.append(np.linalg.eigvalsh((H + H.T) / 2)[[0, -1]])
    dense = np.array(dense)
    scale = 1e-4 * (1.0 + np.abs(dense).max(axis=1))
    assert np.all(np.abs(lambda_min(problem, x) - dense[:, 0]) <= scale)
    assert np.all(np.abs(lambda_max(problem, x) - dense[:, 1]) <= scale)
    monkeypatch.setattr(classify, "DENSE_LAMBDA_MAX", 0)
    assert np.all(lambda_max(problem, x) <= dense[:, 1] + scale)


@pytest.mark.parametrize("dense_up_to", [24, 0], ids=["dense", "power"])
def test_lambda_max_of_a_row_does_not_depend_on_its_batch_mates(dense_up_to, monkeypatch):
    monkeypatch.setattr(classify, "DENSE_LAMBDA_MAX", dense_up_to)
    p = factorization.mc2x2_example1()
    x = p.sample(np.random.default_rng(0), 9)
    np.testing.assert_array_equal(lambda_max(p, x)[3:4], lambda_max(p, x[3:4]))


def test_outcome_columns_are_categorical_with_every_label():
    _, traj = outcomes(factorization.xy_minus_one(), DormandPrince(), [[1.0, 2.0]], 20.0)
    for column in ("outcome", "generic_outcome"):
        assert isinstance(traj[column].dtype, pd.CategoricalDtype)
        assert tuple(traj[column].cat.categories) == OUTCOMES
    assert not np.isnan(traj["t_to_0.001"][0]) and traj["evals_to_0.001"][0] > 0


@pytest.mark.parametrize("eps", [1e-1, 1e-4])
def test_time_to_target_is_monotone_in_eps(eps):
    _, traj = outcomes(factorization.xy_minus_one(), DormandPrince(), [[1.0, 2.0]], 20.0)
    assert traj[f"t_to_{eps:g}"][0] <= traj["t_to_1e-06"][0]


# -- counterexamples found by an outside adversarial tester ----------------------------------


def one_dim(name, f, df, f_star, attained, crit=()):
    return Problem(name=name, n=1, f=lambda X: f(X[:, 0]), grad=lambda X: df(X[:, 0])[:, None],
                   sample=uniform_box(-1.0, 1.0, 1), f_star=f_star, attained=attained,
                   smooth=True, coercive=False, critical_values=crit, description=name,
                   theory=Theory(Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.UNKNOWN, "-"))


S = 1e-4  # the scaled double well's unit
ADVERSARIAL = [
    # (x - 10)^6 from 9: |x| rises to 10 with shrinking increments (finite length): bounded
    ("flat_minimum", one_dim("flat_min", lambda x: (x - 10) ** 6, lambda x: 6 * (x - 10) ** 5,
                             0.0, True), [9.0], {"converged_global", "undetermined"}),
    # f' = u^6 (u - 2), u = x - 10, from 9: cannot cross the inflection at 10: bounded
    ("flat_inflection", one_dim("inflection", lambda x: (x - 10) ** 8 / 8 - 2 * (x - 10) ** 7 / 7,
                                lambda x: (x - 10) ** 6 * (x - 12), -32 / 7, True),
     [9.0], {"converged_spurious", "undetermined"}),
    # Remark 3 from 200: x^4 ~ x0^4 + 8t, unbounded with f -> 1, a tiny gradient 2/x^3
    ("far_escape", one_dim("far", lambda x: x**2 * (1 + x**2) / (1 + x**4),
                           lambda x: 2 * x * (1 - x**4 + 2 * x**2) / (1 + x**4) ** 2, 0.0, True,
                           (0.0,)), [200.0], {"escape_spurious", "undetermined"}),
    # (x^2 + 5e-4) e^-x, infimum 0 unattained: from -1 the flow converges to the local minimum
    # at 2.5e-4 (f = 5e-4), bounded
    ("near_unattained", one_dim("near", lambda x: (x**2 + 5e-4) * np.exp(-x),
                                lambda x: (2 * x - x**2 - 5e-4) * np.exp(-x), 0.0, False),
     [-1.0], {"converged_spurious", "undetermined"}),
    # x^2/(1 + x^4) from 40: f(x0) = 6e-4 already, but x^4 ~ 8t: unbounded towards f* = 0
    ("small_values", one_dim("bump", lambda x: x**2 / (1 + x**4),
                             lambda x: 2 * x * (1 - x**4) / (1 + x**4) ** 2, 0.0, True),
     [40.0], {"escape_global", "undetermined"}),
    # 1e-4 ((x^2 - 1)^2 + 0.3 x) from 2: the spurious minimum at 0.961, whatever the units
    ("scaled", one_dim("dw", lambda x: S * ((x**2 - 1) ** 2 + 0.3 * x),
                       lambda x: S * (4 * x**3 - 4 * x + 0.3), S * -0.32103, True),
     [2.0], {"converged_spurious", "undetermined"}),
    # 1/log(e + x^2): escape towards the unattained infimum 0 with f ~ 2/log t
    ("log_escape", one_dim("logesc", lambda x: 1 / np.log(np.e + x**2),
                           lambda x: -2 * x / ((np.e + x**2) * np.log(np.e + x**2) ** 2),
                           0.0, False), [2.0], {"escape_global", "undetermined"}),
]


@pytest.mark.parametrize(("case", "problem", "x0", "allowed"), ADVERSARIAL,
                         ids=[c[0] for c in ADVERSARIAL])
@pytest.mark.parametrize("t_max", [100.0, 1e4])
def test_no_confident_wrong_label_on_adversarial_problems(case, problem, x0, allowed, t_max):
    got, traj = outcomes(problem, DormandPrince(), [x0], t_max, certificates=False)
    assert set(got) <= allowed, (case, traj["reason"][0])


def flat_saddle_at_infinity(s=1000.0, extra=0, nonsmooth=False):
    """1/sqrt(1 + x^2) - y^2/(s^2 + y^2) (+ |z| or flat coordinates): on x, y > 0 both grow
    forever (no critical point there) and f -> -1 = f_star, unattained: escape_global, though
    the escape in y starts only after t ~ s^2 / 2. A second round of adversarial testing."""
    n = 2 + extra + nonsmooth

    def f(X):
        x, y = X[:, 0], X[:, 1]
        value = 1 / np.sqrt(1 + x**2) - y**2 / (s**2 + y**2)
        return value + (np.abs(X[:, 2]) if nonsmooth else 0.0)

    def grad(X):
        x, y = X[:, 0], X[:, 1]
        g = np.zeros_like(X)
        g[:, 0] = -x * (1 + x**2) ** -1.5
        g[:, 1] = -2 * s**2 * y / (s**2 + y**2) ** 2
        if nonsmooth:
            g[:, 2] = np.sign(X[:, 2])
        return g

    return Problem(name="flat_saddle", n=n, f=f, grad=None if nonsmooth else grad,
                   subgrad=grad if nonsmooth else None, sample=uniform_box(0.0, 1.0, n),
                   f_star=-1.0, attained=False, smooth=not nonsmooth, coercive=False,
                   description="a saddle at infinity with a flat unstable direction",
                   theory=Theory(Verdict.NO, Verdict.NO, Verdict.NO, "-"))


def test_a_flat_saddle_at_infinity_is_not_an_escape_to_a_spurious_value():
    got, traj = outcomes(flat_saddle_at_infinity(), DormandPrince(), [[1.0, 1.0]], 1e4,
                         certificates=False)
    assert got == ["undetermined"] and "negative curvature" in traj["reason"][0]


def test_curvature_is_exact_beyond_64_dimensions():
    """A power iteration was 100 times off at n = 100 (flat coordinates cluster the
    spectrum); the exact Hessian is used up to n = 1024."""
    p = flat_saddle_at_infinity(s=100.0, extra=98)
    x0 = np.zeros((1, 100))
    x0[0, :2] = 1.0
    got, traj = outcomes(p, DormandPrince(), x0, 1e4, certificates=False)
    assert got == ["undetermined"] and "negative curvature" in traj["reason"][0]


def test_nonsmooth_problems_claim_no_escape_from_growth_alone():
    p = flat_saddle_at_infinity(s=10.0, nonsmooth=True)
    got, _ = outcomes(p, ExplicitEuler(h=0.05), [[1.0, 1e-9, 0.0]], 400.0, certificates=False)
    assert not any(label.startswith("escape_spurious") for label in got)


def test_a_sqrt_log_escape_at_the_infimum_is_not_called_converged():
    """x^2 exp(-x^2) from 2: x ~ sqrt(log t) -> inf and f -> 0 = f_star (attained at 0): its
    growth decelerates without a finite length."""
    p = one_dim("gauss", lambda x: x**2 * np.exp(-(x**2)),
                lambda x: 2 * x * (1 - x**2) * np.exp(-(x**2)), 0.0, True)
    got, _ = outcomes(p, DormandPrince(), [[2.0], [-2.5]], 1e4, certificates=False)
    assert "converged_global" not in got


def test_a_spurious_limit_needs_a_bar_that_names_one_critical_value():
    """converged_spurious from a slow approach needs an error bar on lim f that is finite,
    excludes f*, holds exactly one listed critical value, and one that f can still reach (f
    only decreases): an infinite bar "matched" every value, and a trajectory already below a
    saddle value was once said to converge to it (shallow_linear_net, seed 5, t_max 3)."""
    from types import SimpleNamespace

    from benchsuite.classify import _limit_at_critical_value

    crit = (0.0, 10.12, 10.29, 13.1)
    rows = {  # f_limit, f_limit_err, last f
        "identified": (10.28, 0.01, 10.30),
        "infinite bar": (9.86, math.inf, 9.98),
        "bar covers f*": (0.3, 0.5, 0.4),
        "bar holds two values": (10.2, 0.1, 10.3),
        "already below the value": (10.259, 0.03, 10.259),
        "no limit": (math.nan, 0.01, 10.3),
    }
    limit, err, f = (np.array(v) for v in zip(*rows.values(), strict=True))
    ev = {"problem": SimpleNamespace(critical_values=crit), "f_star": 0.0, "f": f,
          "gap_tol": np.full(len(f), 1e-6), "f_limit": limit, "f_limit_err": err}
    found = dict(zip(rows, _limit_at_critical_value(ev, identified=True), strict=True))
    assert found == {"identified": True, "infinite bar": False, "bar covers f*": False,
                     "bar holds two values": False, "already below the value": False,
                     "no limit": False}


def test_shallow_linear_net_gets_no_confident_spurious_limit_from_a_short_run():
    problem = linear_networks.shallow_linear_net()
    x0 = problem.sample(np.random.default_rng(5), 8)
    for integrator in (ExplicitEuler(), ProximalPoint()):
        traj = run_cell(problem, integrator, x0, Budget(t_max=3.0)).trajectories
        assert not (traj["outcome"].astype(str) == "converged_spurious").any()
