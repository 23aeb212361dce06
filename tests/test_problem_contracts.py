"""Contract tests, parametrized over every registered problem (built-in or installed plugin)."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
from conftest import PROBLEMS, by_name

from benchsuite.arrays import to_numpy

SAMPLE = 64


def points(problem, batch=SAMPLE, seed=0):
    return problem.sample(np.random.default_rng(seed), batch)


@pytest.fixture(params=by_name(PROBLEMS))
def problem(request):
    return request.param


def test_shapes_dtype_and_finiteness(problem):
    X = points(problem)
    assert X.shape == (SAMPLE, problem.n) and X.dtype == np.float64
    f, g = problem.f(X), problem.first_order(X)
    assert f.shape == (SAMPLE,) and g.shape == X.shape
    assert f.dtype == np.float64 and g.dtype == np.float64
    if problem.role != "negative control":
        assert np.all(np.isfinite(f)) and np.all(np.isfinite(g))
    if problem.invariant is not None:
        inv = problem.invariant(X)
        assert inv.ndim == 2 and inv.shape[0] == SAMPLE


def test_rows_are_independent(problem):
    """Evaluating a batch equals evaluating each row alone: no mixing across the batch axis."""
    X = points(problem, 8)
    f, g = problem.f(X), problem.first_order(X)
    for i in (0, 3, 7):
        np.testing.assert_allclose(problem.f(X[i:i + 1]), f[i:i + 1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(problem.first_order(X[i:i + 1]), g[i:i + 1], rtol=1e-12,
                                   atol=1e-14)


def test_sampler_is_deterministic_for_a_seed(problem):
    np.testing.assert_array_equal(points(problem, 5, seed=3), points(problem, 5, seed=3))
    assert not np.array_equal(points(problem, 5, seed=3), points(problem, 5, seed=4))


def test_values_not_below_the_infimum(problem):
    if not np.isfinite(problem.f_star):
        pytest.skip("not bounded below")
    X = points(problem, 256)
    assert np.all(problem.f(X) >= problem.f_star - 1e-9 * (1 + abs(problem.f_star)))


def test_gradient_matches_central_differences(problem):
    """Directional derivative along random directions, at random points (a.s. off any kink)."""
    rng = np.random.default_rng(1)
    X = points(problem, 32, seed=2)
    D = rng.standard_normal(X.shape)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    scale = 1.0 + np.linalg.norm(X, axis=1, keepdims=True)
    eps = 1e-6 * scale
    fd = (problem.f(X + eps * D) - problem.f(X - eps * D)) / (2 * eps[:, 0])
    g = problem.first_order(X)
    analytic = np.sum(g * D, axis=1)
    tol = 1e-5 * (np.abs(analytic) + np.linalg.norm(g, axis=1) + 1.0)
    bad = np.abs(fd - analytic) > tol
    # a nonsmooth problem may have a difference step straddle a kink at a few points
    assert bad.sum() <= (0 if problem.smooth else 2), (
        f"gradient mismatch at {np.flatnonzero(bad)}: fd {fd[bad]}, analytic {analytic[bad]}")


def test_same_values_under_array_api_strict(problem):
    if not problem.array_api:
        pytest.skip("this plugin declares itself numpy-only")
    X = points(problem, 16)
    Xs = array_api_strict.asarray(X)
    np.testing.assert_allclose(to_numpy(problem.f(Xs)), problem.f(X), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(to_numpy(problem.first_order(Xs)), problem.first_order(X),
                               rtol=1e-12, atol=1e-13)
    if problem.invariant is not None:
        np.testing.assert_allclose(to_numpy(problem.invariant(Xs)), problem.invariant(X),
                                   rtol=1e-12, atol=1e-13)
    if problem.prox is not None:
        np.testing.assert_allclose(to_numpy(problem.prox(Xs, 0.1)), problem.prox(X, 0.1),
                                   rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("tau", [0.01, 0.3, 2.0])
def test_prox_descends_and_is_stationary(problem, tau):
    """f(p) + |p - x|^2/(2 tau) <= f(x), and (x - p)/tau is a (sub)gradient at p."""
    if problem.prox is None:
        pytest.skip("no prox")
    X = points(problem, 64, seed=5)
    P = problem.prox(X, tau)
    lhs = problem.f(P) + np.sum((P - X) ** 2, axis=1) / (2 * tau)
    assert np.all(lhs <= problem.f(X) + 1e-9 * (1 + np.abs(problem.f(X))))
    if problem.smooth:
        resid = (P - X) / tau + problem.grad(P)
        assert np.max(np.linalg.norm(resid, axis=1) / (1 + np.linalg.norm(X, axis=1))) < 1e-6
    # no other point of a fine random probe beats the prox objective by much
    rng = np.random.default_rng(0)
    Y = P + 0.05 * rng.standard_normal(P.shape)
    probe = problem.f(Y) + np.sum((Y - X) ** 2, axis=1) / (2 * tau)
    assert np.all(probe >= lhs - 1e-9 * (1 + np.abs(lhs)))


def test_metadata_is_complete(problem):
    details = problem.details()
    for key in ("bounded_trajectories", "spurious_local_minima", "spurious_minima_at_infinity"):
        assert details[key] in {"yes", "no", "unknown", "open", "n/a"}
    assert problem.theory.source
    assert problem.summary()
    for value in problem.critical_values:
        assert value >= problem.f_star - 1e-12
