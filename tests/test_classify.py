"""Classification on problems whose outcome theory fixes (catalog section F)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from benchsuite import Budget, run_cell
from benchsuite.classify import OUTCOMES, _f_limit, _growth, lambda_max
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.proximal import ProximalPoint
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_problems import factorization, linear_networks, one_dimensional, relu, sigmoid


def outcomes(problem, integrator, x0, t_max, max_steps=10**6):
    res = run_cell(problem, integrator, np.asarray(x0, dtype=float),
                   Budget(t_max=t_max, max_steps=max_steps, wall_time=300))
    return res.trajectories["outcome"].astype(str).tolist(), res.trajectories


def test_remark3_escapes_beyond_the_maxima_and_converges_inside():
    starts = [[-3.0], [-1.6], [-1.5], [-1.0], [1.0], [1.5], [1.6], [3.0]]
    got, traj = outcomes(one_dimensional.remark3_rational_1d(), DormandPrince(), starts, 100.0)
    expected = ["escape_spurious" if abs(s[0]) > 1.5538 else "converged_global" for s in starts]
    assert got == expected
    assert (traj["max_norm"][[0, 7]] > 5.0).all()  # (8t)^(1/4) growth from 3: |x(100)| ~ 5.5


def test_example2_escapes_to_the_global_infimum():
    got, traj = outcomes(sigmoid.sigmoid2pt_example2(), DormandPrince(),
                         [[0.5, 0.5], [-0.5, -0.3], [1.5, 1.0]], 200.0)
    assert got == ["escape_global"] * 3
    np.testing.assert_allclose(traj["f"], 0.5, atol=0.01)


def test_figure3_limit_depends_on_the_side_of_ln3():
    starts = [[2.0, 0.5], [0.5, 0.5], [3.0, 2.0], [-1.0, -2.0]]
    got, traj = outcomes(sigmoid.sigmoid2pt_fig3(), DormandPrince(), starts, 500.0)
    assert got == ["escape_spurious", "escape_global", "escape_spurious", "escape_global"]
    final = traj["f"].to_numpy()
    np.testing.assert_allclose(final[[0, 2]], 4.5, atol=0.01)
    np.testing.assert_allclose(final[[1, 3]], 0.5, atol=0.01)


def test_relu_flat_region_is_spurious_not_global():
    got, _ = outcomes(relu.relu_flat_fig2(), ExplicitEuler(h=1e-3),
                      [[1.0, -2.0], [2.0, -1.0], [-0.5, 0.3]], 20.0)
    assert got == ["converged_spurious", "converged_global", "converged_spurious"]


def test_relu_flat_region_without_certificate_is_still_not_global():
    """The generic rule alone (zero gradient, f = 1 > f_star) must say spurious."""
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
    x = np.stack(traj["x"].to_numpy())
    assert np.all((np.abs(x[:2, 0]) > 8.5) & (np.abs(x[:2, 0]) < 11))
    assert np.all(traj["h_lambda_max"][:2] >= 1.9)
    rk, _ = outcomes(p, DormandPrince(), start, 2500.0)
    assert rk == ["escape_spurious", "escape_spurious", "converged_global"]
    prox, _ = outcomes(p, ProximalPoint(tau=1.0), start, 2500.0)
    assert prox == ["escape_spurious", "escape_spurious", "converged_global"]


def test_example1_escape_without_certificate_is_found_by_the_growth_law():
    p = dataclasses.replace(factorization.mc2x2_example1(), certificate=None)
    got, traj = outcomes(p, DormandPrince(), ESCAPING + CONVERGING, 2000.0)
    assert got == ["escape_spurious", "escape_spurious", "converged_global"]
    # (8t)^(1/4): growth exponent near 1/4, and f tends to 1
    np.testing.assert_allclose(traj["growth_exponent"][:2], 0.25, atol=0.05)
    np.testing.assert_allclose(traj["f_limit"][:2], 1.0, atol=0.02)


def test_negative_control_never_escapes_or_converges():
    got, _ = outcomes(one_dimensional.cubic_blowup_1d(), DormandPrince(), [[1.0], [2.0]], 5.0)
    assert set(got) <= {"diverged", "failed"}


def test_unattained_infimum_means_escape():
    p = linear_networks.deep_linear_logistic()
    got, _ = outcomes(p, DormandPrince(), p.sample(np.random.default_rng(0), 6), 1000.0)
    assert got == ["escape_global"] * 6


def test_remark2_slow_approach_to_a_flat_inflection_is_bounded():
    got, _ = outcomes(one_dimensional.remark2_infinite_critvals_1d(), DormandPrince(),
                      [[-1.0], [0.5], [1.0], [2.5], [3.0]], 200.0)
    assert got == ["converged_global", "converged_spurious", "converged_spurious",
                   "converged_spurious", "converged_spurious"]


# -- the fitted quantities on synthetic tails -----------------------------------------------


def synthetic_tail(t, f, norm):
    tail = {"t": t, "f": f, "norm": norm}
    return tail


def test_growth_exponent_and_limit_fit_recover_the_power_laws():
    t = np.geomspace(100, 1600, 5)[None, :].repeat(2, axis=0)
    norm = np.stack([(8 * t[0]) ** 0.25, 3.0 + 0 * t[0]])
    growth, rising = _growth(synthetic_tail(t, None, norm))
    np.testing.assert_allclose(growth, [0.25, 0.0], atol=1e-12)
    assert rising.tolist() == [True, False]
    # converging to a limit: |x| rises too, but its growth collapses: not an escape
    converging = 3.0 - np.exp(-t / 200.0)
    _, rising = _growth(synthetic_tail(t, None, converging))
    assert rising.tolist() == [False, False]
    f = np.stack([1.0 + 2.0 * t[0] ** -0.5, 0.5 + 1.0 / t[1]])
    np.testing.assert_allclose(_f_limit(synthetic_tail(t, f, norm)), [1.0, 0.5], atol=1e-3)


def test_lambda_max_by_power_iteration():
    p = factorization.mc2x2_example1()
    x = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(lambda_max(p, x), [4 + 2 * math.sqrt(2), math.sqrt(5) + 1],
                               rtol=1e-4)


def test_outcome_column_is_categorical_with_every_label():
    _, traj = outcomes(factorization.xy_minus_one(), DormandPrince(), [[1.0, 2.0]], 20.0)
    assert isinstance(traj["outcome"].dtype, pd.CategoricalDtype)
    assert tuple(traj["outcome"].cat.categories) == OUTCOMES
    assert not np.isnan(traj["t_to_0.001"][0]) and traj["evals_to_0.001"][0] > 0


@pytest.mark.parametrize("eps", [1e-1, 1e-4])
def test_time_to_target_is_monotone_in_eps(eps):
    _, traj = outcomes(factorization.xy_minus_one(), DormandPrince(), [[1.0, 2.0]], 20.0)
    assert traj[f"t_to_{eps:g}"][0] <= traj["t_to_1e-06"][0]
