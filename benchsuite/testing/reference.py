"""Reference problems with known flows, and a batched descent, for the conformance checks.

The integrator checks need problems whose exact gradient flow is known (a quadratic: x(t) =
exp(-A t) x0), one of each oracle shape (smooth with and without a prox, nonsmooth with and
without one) and a nonconvex one; the problem checks need points of low value (descent). All
reference oracles are array-API generic, so they also serve the array-API checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import expm

from benchsuite.arrays import asarray_like, namespace
from benchsuite.problem import Array, Problem, Theory, Verdict, gaussian

_THEORY = Theory(Verdict.YES, Verdict.NO, Verdict.NO, source="benchsuite.testing reference")

#: A symmetric positive definite matrix with well separated eigenvalues (about 0.8, 2.2, 3.0).
A_REF = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])
#: Start points for the order check: generic directions, two rows.
X0_REF = np.array([[1.0, -0.5, 0.8], [0.3, 0.9, -1.2]])


def quadratic(A: np.ndarray = A_REF, *, with_prox: bool = True) -> Problem:
    """f = x^T A x / 2 (A symmetric positive definite): the flow is x(t) = exp(-A t) x0, and
    the prox is (I + tau A)^{-1} x."""
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]

    def f(X: Array) -> Array:
        xp = namespace(X)
        return 0.5 * xp.sum((X @ asarray_like(xp, A, X)) * X, axis=1)

    def grad(X: Array) -> Array:
        xp = namespace(X)
        return X @ asarray_like(xp, A, X)

    def prox(X: Array, tau: Any) -> Array:
        xp = namespace(X)
        tau = np.asarray(tau, dtype=np.float64).reshape(-1)
        if tau.size == 1:  # one matrix for the whole batch
            return X @ asarray_like(xp, np.linalg.inv(np.eye(n) + tau[0] * A).T, X)
        inv = np.linalg.inv(np.eye(n)[None] + tau[:, None, None] * A[None])
        return xp.sum(asarray_like(xp, inv, X) * X[:, None, :], axis=2)

    name = f"reference_quadratic{n}" + ("" if with_prox else "_noprox")
    return Problem(name=name, n=n, f=f, grad=grad,
                   prox=prox if with_prox else None, sample=gaussian(1.0, n), f_star=0.0,
                   attained=True, smooth=True, coercive=True, theory=_THEORY,
                   critical_values=(0.0,), critical_values_complete=True,
                   description="reference quadratic x^T A x / 2")


def exact_flow(A: np.ndarray, x0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """exp(-A t_i) x0_i per row: the exact gradient flow of :func:`quadratic`."""
    return np.stack([expm(-A * ti) @ xi for xi, ti in zip(x0, t, strict=True)])


def product() -> Problem:
    """f = (x y - 1)^2: smooth, nonconvex, not coercive (a hyperbola of minima), no prox."""
    def f(X: Array) -> Array:
        return (X[:, 0] * X[:, 1] - 1.0) ** 2

    def grad(X: Array) -> Array:
        xp = namespace(X)
        r = 2.0 * (X[:, 0] * X[:, 1] - 1.0)
        return xp.stack([r * X[:, 1], r * X[:, 0]], axis=1)

    return Problem(name="reference_product", n=2, f=f, grad=grad, sample=gaussian(1.0, 2),
                   f_star=0.0, attained=True, smooth=True, coercive=False, theory=_THEORY,
                   description="reference (x y - 1)^2")


def weighted_l1(*, with_prox: bool = True) -> Problem:
    """f = |x1| + 2 |x2|: nonsmooth; sign is its minimal-norm Clarke selection off zero, and
    the prox is soft thresholding."""
    weights = np.array([1.0, 2.0])

    def f(X: Array) -> Array:
        xp = namespace(X)
        return xp.sum(xp.abs(X) * asarray_like(xp, weights, X), axis=1)

    def subgrad(X: Array) -> Array:
        xp = namespace(X)
        return xp.sign(X) * asarray_like(xp, weights, X)

    def prox(X: Array, tau: Any) -> Array:
        xp = namespace(X)
        tau = np.asarray(tau, dtype=np.float64).reshape(-1, 1)
        cut = asarray_like(xp, tau * weights, X)
        return xp.sign(X) * xp.maximum(xp.abs(X) - cut, 0.0)

    name = "reference_l1" + ("" if with_prox else "_noprox")
    return Problem(name=name, n=2, f=f, subgrad=subgrad,
                   prox=prox if with_prox else None, sample=gaussian(1.0, 2), f_star=0.0,
                   attained=True, smooth=False, coercive=True, theory=_THEORY,
                   critical_values=(0.0,), critical_values_complete=True,
                   description="reference |x1| + 2 |x2|")


def oracle_variants() -> list[Problem]:
    """One reference problem per oracle shape: smooth with and without a prox, nonsmooth with
    and without one."""
    return [quadratic(), quadratic(with_prox=False), weighted_l1(), weighted_l1(with_prox=False)]


def descend(problem: Problem, X: np.ndarray, iterations: int = 300,
            stop_norm: float = 1e8) -> tuple[np.ndarray, np.ndarray]:
    """Batched (sub)gradient descent with a per-row Armijo step, from the rows of ``X``.

    Each row doubles its step after a sufficient decrease and quarters it otherwise, so a
    smooth problem is descended at its own scale; a row stops where no step decreases f, or
    once |x| exceeds ``stop_norm`` (a trajectory that escapes). Returns the points and values.
    """
    x = np.array(X, dtype=np.float64, copy=True)
    # copies: an oracle may return a read-only array (a cache, a broadcast, a pandas Series)
    fx = np.array(problem.f(x), dtype=np.float64, copy=True)
    g = np.array(problem.first_order(x), dtype=np.float64, copy=True)
    g2 = np.sum(g * g, axis=1)
    alpha = 1.0 / (1.0 + np.sqrt(g2))
    live = np.isfinite(fx) & np.isfinite(g2)
    for _ in range(iterations):
        if not live.any():
            break
        trial = x - alpha[:, None] * g
        ft = np.asarray(problem.f(trial), dtype=np.float64)
        ok = live & np.isfinite(ft) & (ft <= fx - 1e-4 * alpha * g2)
        x[ok], fx[ok] = trial[ok], ft[ok]
        alpha = np.where(ok, 2.0 * alpha, alpha / 4.0)
        if ok.any():
            g[ok] = np.asarray(problem.first_order(x[ok]), dtype=np.float64)
            g2 = np.sum(g * g, axis=1)
        live &= (alpha * np.sqrt(g2) > 1e-15 * (1.0 + np.linalg.norm(x, axis=1)))
        live &= np.linalg.norm(x, axis=1) < stop_norm
        live &= np.isfinite(g2)
    return x, fx
