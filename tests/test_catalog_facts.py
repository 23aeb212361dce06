"""The catalog's known facts, each checked numerically: critical points and values with their
Hessian signs, invariants along an accurate flow, closed-form limits and trajectories, the
constructions of Yun et al., and batched evaluation without a Python loop over points."""

from __future__ import annotations

import math
import sys
from itertools import combinations

import numpy as np
import pytest
from conftest import PROBLEMS, by_name
from scipy.integrate import solve_ivp

from benchsuite_problems import (
    factorization,
    l1_factorization,
    linear_networks,
    one_dimensional,
    relu,
    sigmoid,
    yun,
)

SQ2, SQ5 = math.sqrt(2.0), math.sqrt(5.0)


def hessian(problem, x, eps=1e-5):
    """Central differences of the gradient, symmetrized, at one point x (n,)."""
    n = x.size
    E = np.eye(n) * eps
    H = (problem.grad(x + E) - problem.grad(x - E)) / (2 * eps)
    return (H + H.T) / 2


def flow(problem, x0, t_end, rtol=1e-12, atol=1e-12, t_eval=None):
    """The exact gradient flow of a batch, as one ODE system (DOP853, tight tolerances)."""
    batch, n = x0.shape

    def rhs(_, y):
        return -problem.first_order(y.reshape(batch, n)).ravel()

    sol = solve_ivp(rhs, (0, t_end), x0.ravel(), method="DOP853", rtol=rtol, atol=atol,
                    t_eval=t_eval)
    assert sol.success, sol.message
    return sol.y.T.reshape(-1, batch, n)


def assert_critical(problem, x, value, atol=1e-10):
    x = np.atleast_2d(x)
    np.testing.assert_allclose(problem.first_order(x), 0.0, atol=atol)
    np.testing.assert_allclose(problem.f(x), value, rtol=1e-12, atol=1e-12)


# -- critical points, values and Hessian signs ---


def test_example1_critical_families_values_and_strict_saddles():
    p = factorization.mc2x2_example1()
    for t in (0.5, 1.0, -2.0):
        assert_critical(p, [t, t, 1 / t, 1 / t], 0.0)  # C1, global
        assert_critical(p, [t, 0, 1 / t, -1 / t], 2.0)  # C2
        assert_critical(p, [t, -t, 0, -1 / t], 2.0)  # C3
    assert_critical(p, [0, 0, 0, 0], 3.0)  # C4
    spectra = {
        (1, 1, 1, 1): [0, 4 - 2 * SQ2, 4, 4 + 2 * SQ2],
        (2, 0, 0.5, -0.5): [(1 - math.sqrt(65)) / 4, 0, (1 + math.sqrt(65)) / 4, 9],
        (1, -1, 0, -1): [1 - SQ5, 0, 1 + SQ5, 6],
        (0, 0, 0, 0): [-(SQ5 + 1), -(SQ5 - 1), SQ5 - 1, SQ5 + 1],
    }
    for point, expected in spectra.items():
        eig = np.linalg.eigvalsh(hessian(p, np.array(point, dtype=float)))
        np.testing.assert_allclose(eig, sorted(expected), atol=1e-6)
    assert p.critical_values == (0.0, 2.0, 3.0)


def test_example1_certificate_region_has_no_critical_point_and_f_above_one():
    """{f < 2, x2 y1 < 0} contains no critical point, and f > 1 there (the stuck region)."""
    p = factorization.mc2x2_example1()
    X = np.random.default_rng(0).uniform(-3, 3, size=(200_000, 4))
    inside = (p.f(X) < 2) & (X[:, 1] * X[:, 2] < 0)
    assert inside.sum() > 500
    assert np.all(p.f(X[inside]) > 1.0)
    assert np.all(np.linalg.norm(p.grad(X[inside]), axis=1) > 1e-3)


def test_xy_saddle_at_origin():
    p = factorization.xy_minus_one()
    assert_critical(p, [0.0, 0.0], 1.0)
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian(p, np.zeros(2))), [-2, 2], atol=1e-8)


def test_remark3_global_maxima():
    p = one_dimensional.remark3_rational_1d()
    c = one_dimensional.REMARK3_CRITICAL_POINT
    np.testing.assert_allclose(c, 1.5537739740300374, rtol=1e-15)
    for x in (c, -c):
        assert_critical(p, [x], (1 + SQ2) / 2, atol=1e-14)
        assert hessian(p, np.array([x]))[0, 0] < 0
    assert_critical(p, [0.0], 0.0)
    big = np.array([[1e5], [1e160], [-1e300]])
    np.testing.assert_allclose(p.f(big), 1.0, atol=1e-9)  # no overflow: f -> 1 at infinity
    assert np.all(np.isfinite(p.grad(big)))


def test_remark2_infinitely_many_critical_values():
    p = one_dimensional.remark2_infinite_critvals_1d()
    assert_critical(p, [-4.0], -8.0)
    assert_critical(p, [0.0], 0.0)
    for k in range(1, 8):
        assert_critical(p, [2.0 * k], -3 * (1 - 2.0**-k))
    # C^1 but not C^2: f'' jumps at x = -2 and at x = 2k + 1
    x = np.array([[-2 - 1e-7], [-2 + 1e-7], [-2 - 2e-7], [-2 + 2e-7]])
    g = p.grad(x)[:, 0]
    left, right = (g[0] - g[2]) / 1e-7, (g[3] - g[1]) / 1e-7
    assert abs(left - 2.0) < 1e-3 and abs(right + 2.0) < 1e-3
    # continuity at the breakpoints 2k + 1
    for k in range(4):
        x = 2 * k + 1
        np.testing.assert_allclose(p.f(np.array([[x - 1e-12]])), p.f(np.array([[x + 1e-12]])),
                                   atol=1e-9)
    assert np.all(p.grad(np.linspace(0, 40, 4001)[:, None]) <= 0)


def test_sigmoid_fig3_unique_saddle_and_reduced_limits():
    p = sigmoid.sigmoid2pt_fig3()
    assert_critical(p, [sigmoid.LN3, 0.0], 5.0)
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian(p, np.array([sigmoid.LN3, 0.0]))),
                               [-0.5, 1.125], atol=1e-7)
    # min over w2 tends to 9/2 as w1 -> +inf (w2 -> 1) and to 1/2 as w1 -> -inf (w2 -> -3)
    np.testing.assert_allclose(p.f(np.array([[40.0, 1.0], [-40.0, -3.0]])), [4.5, 0.5],
                               atol=1e-12)
    # no false critical point from underflow of sigma(w) sigma(-w) far out
    assert np.all(np.abs(p.grad(np.array([[700.0, 0.5], [-700.0, 0.5]]))).sum(axis=1) > 0)


def test_sigmoid_example2_saddle():
    p = sigmoid.sigmoid2pt_example2()
    assert_critical(p, [0.0, 0.0], 1.0)
    eig = np.linalg.eigvalsh(hessian(p, np.zeros(2)))
    np.testing.assert_allclose(eig, [(1 - SQ5) / 4, (1 + SQ5) / 4], atol=1e-7)
    np.testing.assert_allclose(p.f(np.array([[0.5, 0.5]])), 0.94379, atol=1e-5)


def test_pca_critical_values_from_svd():
    p = factorization.pca_factorization()
    assert p.critical_values == (5.0, 10.0, 13.0, 14.0, 26.0, 29.0, 30.0, 34.0, 35.0, 38.0,
                                 39.0)
    assert p.f_star == 5.0


def test_shallow_linear_net_gamma_critical_points():
    """Balanced critical points from the SVD hit every listed value, and only the global one is
    not a strict saddle ([ZSEW] Lemma 1, Thm. 3)."""
    p = linear_networks.shallow_linear_net()
    X, Y = linear_networks._zsew_data()
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    P, lam, Qt = np.linalg.svd(Y @ Vt.T, full_matrices=False)
    d1, found = 2, {}
    for size in range(d1 + 1):
        for gamma in combinations(range(len(lam)), size):
            W2, W1t = np.zeros((4, d1)), np.zeros((d1, 3))
            for slot, j in enumerate(gamma):
                W2[:, slot] = np.sqrt(lam[j]) * P[:, j]
                W1t[slot] = np.sqrt(lam[j]) * Qt[j]
            W1 = W1t @ np.diag(1 / S) @ U.T
            w = np.concatenate([W1.ravel(), W2.ravel()])[None]
            assert np.linalg.norm(p.grad(w)) < 1e-10
            value = float(p.f(w)[0])
            found[round(value, 9)] = np.linalg.eigvalsh(hessian(p, w[0]))[0]
    assert sorted(found) == pytest.approx(list(p.critical_values), abs=1e-8)
    for value, lam_min in found.items():
        if abs(value - p.f_star) > 1e-8:
            assert lam_min < -0.1  # strict saddle
        else:
            assert lam_min > -1e-6


def test_deep_linear_origin_is_a_nonstrict_saddle_and_cor5_test():
    p = linear_networks.deep_linear_net()
    assert np.linalg.norm(p.grad(np.zeros((1, p.n)))) == 0.0
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian(p, np.zeros(p.n))), 0.0, atol=1e-8)


def test_deep_linear_logistic_only_critical_value():
    p = linear_networks.deep_linear_logistic()
    assert_critical(p, np.zeros(p.n), 6 * math.log(2.0))
    assert p.critical_values == (6 * math.log(2.0),)


# -- nonsmooth: the selection lies in the Clarke subdifferential at the named kinks ---


def test_relu_selection_at_the_kink_is_the_minimal_norm_element():
    p = relu.relu_flat_fig2()
    X = np.array([[0.0, -2.0], [0.0, 3.0], [-0.5, 1.0]])
    np.testing.assert_array_equal(p.subgrad(X), 0.0)  # in {(-2 x2 theta, 0)}, minimal norm
    np.testing.assert_array_equal(p.f(X), 1.0)


def test_l1_selection_at_ties_is_in_the_clarke_set():
    p = l1_factorization.l1_rank1_factorization()
    # at X = Y = 0 every entry is tied to -M_ij != 0 only through M: sign(-M) is unique
    g = p.subgrad(np.zeros((1, p.n)))
    np.testing.assert_array_equal(g, 0.0)  # Lambda Y = Lambda^T X = 0
    assert p.f(np.zeros((1, p.n)))[0] == 30.0
    # an exact tie x_i y_j = M_ij: the selection uses Lambda_ij = 0 in [-1, 1]
    u, v = np.array([1.0, -2.0, 3.0]), np.array([2.0, 1.0, -1.0, 1.0])
    at_min = np.concatenate([u, v])[None]
    assert p.f(at_min)[0] == 0.0
    np.testing.assert_array_equal(p.subgrad(at_min), 0.0)


def test_oscillatory_global_minimum_and_clarke_selection_at_zero():
    p = one_dimensional.remark1_oscillatory_1d()
    np.testing.assert_allclose(p.f_star, -0.0495666079, atol=1e-9)
    x_min, _ = one_dimensional._oscillatory_minimum()
    np.testing.assert_allclose(x_min, 0.2339300, atol=1e-6)
    assert abs(p.subgrad(np.array([[x_min]]))[0, 0]) < 1e-7
    assert p.subgrad(np.array([[0.0]]))[0, 0] == 0.0  # 0 in [-1, 1]


# -- invariants along an accurate flow ---


SMOOTH_WITH_INVARIANT = [p for p in PROBLEMS if p.invariant is not None and p.smooth
                         and p.n <= 200]


@pytest.mark.parametrize("problem", by_name(SMOOTH_WITH_INVARIANT))
def test_invariant_is_conserved_along_the_flow(problem):
    x0 = problem.sample(np.random.default_rng(0), 3) * 0.5
    traj = flow(problem, x0, 1.0, t_eval=[0.0, 0.5, 1.0])
    inv0 = problem.invariant(traj[0])
    scale = 1.0 + np.abs(inv0).max()
    for xs in traj[1:]:
        assert np.abs(problem.invariant(xs) - inv0).max() < 1e-8 * scale
    assert np.all(problem.f(traj[-1]) <= problem.f(traj[0]) + 1e-12)


def test_matrix_sensing_trajectories_respect_the_prop6_bound():
    p = factorization.matrix_sensing()
    x0 = p.sample(np.random.default_rng(2), 4)
    traj = flow(p, x0, 20.0, rtol=1e-9, atol=1e-9, t_eval=np.linspace(0, 20, 41))
    n1, n2, r, m = 5, 4, 2, 60
    c = p.params["lower_bound_c"]
    rng = np.random.default_rng(2)  # rebuild b = A vec(M) as the problem does
    A = rng.standard_normal((m, n1 * n2))
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    b = A @ M.ravel()
    Xf, Yf = x0[:, :n1 * r].reshape(-1, n1, r), x0[:, n1 * r:].reshape(-1, n2, r)
    C = np.swapaxes(Xf, 1, 2) @ Xf - np.swapaxes(Yf, 1, 2) @ Yf
    c2 = 4 * p.f(x0) + 2 / m * np.sum(b**2)
    c4 = 2 * c2 / c + np.sum(C**2, axis=(1, 2))
    Xt, Yt = traj[..., :n1 * r], traj[..., n1 * r:]
    quartic = np.sum(Xt**2, axis=2) ** 2 + np.sum(Yt**2, axis=2) ** 2
    assert np.all(quartic <= r * c4)


# -- closed-form limits and trajectories ---


def test_xy_limit_from_one_two():
    p = factorization.xy_minus_one()
    start = np.array([[1.0, 2.0], [0.7, -0.2], [-1.5, 0.3]])
    end = flow(p, start, 60.0, t_eval=[60.0])[-1]
    np.testing.assert_allclose(end[0], [0.5502505227, 1.8173540210], atol=1e-9)
    np.testing.assert_allclose(end, factorization.xy_limit(start), atol=1e-9)


def test_remark3_exact_trajectory_from_two():
    p = one_dimensional.remark3_rational_1d()
    times = [1.0, 10.0, 100.0, 1000.0]
    xs = flow(p, np.array([[2.0]]), 1000.0, rtol=1e-12, atol=1e-12, t_eval=times)[:, 0, 0]
    np.testing.assert_allclose(xs, [2.0970791312, 2.8179939472, 5.1242865078, 9.3453365865],
                               rtol=1e-8)
    np.testing.assert_allclose(one_dimensional.remark3_g(np.array([2.0])), 9.75087307175072,
                               rtol=1e-13)
    # the separated-variables identity g(x(t)) = 2t + g(2)
    np.testing.assert_allclose(one_dimensional.remark3_g(xs) - 2 * np.array(times),
                               9.75087307175072, rtol=1e-7)


def test_cubic_blows_up_at_one_over_x0():
    p = one_dimensional.cubic_blowup_1d()
    x = flow(p, np.array([[1.0]]), 0.9, t_eval=[0.5, 0.9])[:, 0, 0]
    np.testing.assert_allclose(x, [2.0, 10.0], rtol=1e-9)  # x(t) = 1/(1 - t)


def test_relu_flow_limits():
    p = relu.relu_flat_fig2()
    end = flow(p, np.array([[2.0, -1.0]]), 50.0, t_eval=[50.0])[-1, 0]
    np.testing.assert_allclose(end, [math.sqrt((3 + math.sqrt(13)) / 2),
                                     1 / math.sqrt((3 + math.sqrt(13)) / 2)], atol=1e-8)
    # from (1, -2) x1^2 - x2^2 = -3 is conserved until x1 hits 0, at (0, -sqrt 3)
    x = np.array([[1.0, -2.0]])
    for _ in range(4000):  # explicit Euler, fine step, to the kink
        x = x - 1e-3 * p.subgrad(x)
    # Euler overshoots the kink by O(h) and freezes in the flat region (catalog P05 pitfall 1)
    assert -1e-2 < x[0, 0] <= 0.0
    np.testing.assert_allclose(x[0, 1], -math.sqrt(3), atol=5e-3)
    assert p.f(x)[0] == 1.0 and np.all(p.subgrad(x) == 0.0)


def test_sigmoid_fig3_escapes_to_nine_halves_and_one_half():
    p = sigmoid.sigmoid2pt_fig3()
    end = flow(p, np.array([[2.0, 0.5], [0.5, 0.5]]), 1e4, rtol=1e-10, atol=1e-12,
               t_eval=[1e4])[-1]
    np.testing.assert_allclose(end[0], [10.3083, 0.99993], atol=1e-4)
    np.testing.assert_allclose(p.f(end), [4.500100, 0.500100], atol=1e-6)
    np.testing.assert_allclose(end[1], [-10.3094, -3.00007], atol=1e-4)


def test_sigmoid_example2_escape_is_logarithmic():
    p = sigmoid.sigmoid2pt_example2()
    end = flow(p, np.array([[0.5, 0.5]]), 1e4, rtol=1e-10, atol=1e-12, t_eval=[1e4])[-1, 0]
    assert abs(end[0] - math.log(1e4)) < 1e-3
    np.testing.assert_allclose(1e4 * (p.f(end[None])[0] - 0.5), 1.0, atol=2e-3)


def test_deep_linear_flow_reaches_the_reduced_rank_minimum():
    p = linear_networks.deep_linear_net()
    x0 = p.sample(np.random.default_rng(1), 2)
    end = flow(p, x0, 200.0, rtol=1e-10, atol=1e-12, t_eval=[200.0])[-1]
    np.testing.assert_allclose(p.f(end), p.f_star, atol=1e-7)


def test_deep_sigmoid_flow_reaches_zero():
    p = sigmoid.deep_sigmoid_1d(4)
    end = flow(p, np.array([[-0.8, 1.3, -0.4, 0.9]]), 500.0, t_eval=[500.0])[-1]
    assert p.f(end)[0] < 1e-20


# -- Yun et al.'s constructions ---


@pytest.mark.parametrize("activation", list(yun.ACTIVATIONS))
def test_yun_spurious_point_has_loss_one_third_and_is_critical(activation):
    p = yun.yun_3pt_counterexample(activation)
    x = yun.spurious_point(activation)[None]
    np.testing.assert_allclose(p.f(x), 1 / 3, rtol=1e-14)
    assert np.abs(p.first_order(x)).max() < 1e-7
    # no perturbation of radius <= 1e-2 lowers the loss below 1/3
    rng = np.random.default_rng(0)
    D = rng.standard_normal((20_000, p.n))
    D *= 1e-2 * rng.uniform(0, 1, (20_000, 1)) / np.linalg.norm(D, axis=1, keepdims=True)
    assert p.f(x + D).min() >= 1 / 3 - 1e-10


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "arctan", "quadratic", "relu"])
def test_yun_zero_loss_point(activation):
    p = yun.yun_3pt_counterexample(activation)
    assert p.f(yun.zero_loss_point(activation)[None])[0] < 1e-20


@pytest.mark.parametrize(("s_plus", "s_minus"), [(1.0, 0.5), (1.0, 0.0), (1.01, 1.0)])
def test_yun_theorem1_step1_and_step2(s_plus, s_minus):
    p = yun.relu_like_lls_spurious(s_plus, s_minus)
    step1 = yun.step1_point(yun.P19_X, yun.P19_Y, 2, s_plus)[None]
    np.testing.assert_allclose(p.f(step1), 2.0, rtol=1e-14)
    np.testing.assert_array_less(np.abs(p.subgrad(step1)), 1e-12)
    c = (s_plus - s_minus) / (s_plus + s_minus)
    S = -1.0  # sum_{i <= j0} (yhat_i - y_i) with j0 = 1
    gamma = 0.75 * np.sign(S * (s_plus - s_minus))  # the sign rule of Step 2
    step2 = yun.step2_point(yun.P19_X, yun.P19_Y, s_plus, s_minus, 1, gamma)[None]
    expected = 2.0 - 2 * c * gamma * S + 2.0 * c**2 * gamma**2
    np.testing.assert_allclose(p.f(step2), expected, rtol=1e-12)
    assert expected < 2.0
    if (s_plus, s_minus) in {(1.0, 0.5), (1.0, 0.0)}:
        np.testing.assert_allclose(expected, 1.625)
    else:
        np.testing.assert_allclose(expected, 1.99257, atol=1e-5)


def test_yun_step1_is_a_local_minimum():
    p = yun.relu_like_lls_spurious(1.0, 0.5)
    x = yun.step1_point(yun.P19_X, yun.P19_Y, 2, 1.0)[None]
    rng = np.random.default_rng(1)
    D = rng.standard_normal((20_000, p.n))
    D *= 1e-2 * rng.uniform(0, 1, (20_000, 1)) / np.linalg.norm(D, axis=1, keepdims=True)
    assert p.f(x + D).min() >= 2.0 - 5e-13


# -- batched evaluation: 10^5 points, no Python loop over points ---


def python_calls(fn, X):
    """fn(X), and the number of Python-level function calls made while evaluating it."""
    count = 0

    def profiler(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profiler)
    try:
        out = fn(X)
    finally:
        sys.setprofile(None)
    return out, count


@pytest.mark.parametrize("problem", by_name(PROBLEMS))
def test_batch_of_1e5_points_without_python_loop_over_points(problem):
    big = problem.sample(np.random.default_rng(0), 100_000)
    small = big[:16]
    for oracle in (problem.f, problem.first_order):
        oracle(small)  # warm caches (namespace lookups, lazy imports) before counting
        out, calls = python_calls(oracle, big)
        out_small, calls_small = python_calls(oracle, small)
        # a loop over points makes >= 10^5 calls; a few more or fewer come from outside the
        # oracle (a garbage collection callback, a cache filled by another test), by chance
        assert calls <= calls_small + 100, (calls, calls_small)
        assert out.shape[0] == 100_000
        np.testing.assert_allclose(out[:16], out_small, rtol=1e-12, atol=1e-14)
