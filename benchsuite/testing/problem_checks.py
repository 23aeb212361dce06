"""Conformance checks of a :class:`~benchsuite.problem.Problem` (one small function each).

Every check draws its points from the problem's own sampler with a fixed seed, so a finding is
reproducible. Tolerances are relative to the scale of the quantities compared, so that a problem
in other units gets the same findings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.integrate import DOP853
from scipy.optimize import minimize

from benchsuite.arrays import to_numpy
from benchsuite.oracle import OracleError, checked
from benchsuite.problem import ROLES, Problem, Verdict
from benchsuite.testing.findings import Context, check, fail, skip, warn
from benchsuite.testing.reference import descend
from benchsuite.vocabulary import CONFIDENT

EPS = np.finfo(np.float64).eps
#: Labels a certificate may return: a landscape outcome a theorem proves, or "" (silent).
CERTIFICATE_LABELS = frozenset({"", *(str(o) for o in CONFIDENT)})
TAUS = (0.01, 0.3, 2.0, 50.0)
#: Steps of the tight-tolerance flow solve before a problem counts as too stiff to test.
MAX_FLOW_STEPS = 20_000
#: What every check after them assumes: points to start from, oracles of the right shapes.
NEEDS = ("sampler", "oracle_shapes")


def _points(problem: Problem, batch: int, ctx: Context, offset: int = 0) -> np.ndarray:
    return np.asarray(problem.sample(ctx.rng(offset), batch), dtype=np.float64)


def _values(problem: Problem, X: np.ndarray) -> np.ndarray:
    return np.asarray(to_numpy(problem.f(X)), dtype=np.float64)


def _first_order(problem: Problem, X: np.ndarray) -> np.ndarray:
    return np.asarray(to_numpy(problem.first_order(X)), dtype=np.float64)


def _scales(problem: Problem, ctx: Context) -> tuple[float, float]:
    """The problem's own units: the median |f - f_star| (|f| when f_star = -inf) and the
    median |x| over 64 sampled points. Tolerances are relative to them, never absolute, so
    that f in other units (times 1e-10 or 1e10) gets the same findings."""
    def compute() -> tuple[float, float]:
        X = _points(problem, 64, ctx, 12)
        f = _values(problem, X)
        ref = problem.f_star if math.isfinite(problem.f_star) else 0.0
        spread = np.abs(f[np.isfinite(f)] - ref)
        f_scale = float(np.median(spread)) if spread.size else 0.0
        if not f_scale > 0.0:
            f_scale = float(spread.max()) if spread.size and spread.max() > 0 else 1.0
        x_scale = float(np.median(np.linalg.norm(X, axis=1)))
        return f_scale, x_scale if x_scale > 0.0 else 1.0
    return ctx.cached("scales", compute)


def _descended(problem: Problem, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """32 sampled points after 300 Armijo descent steps (shared by several checks)."""
    return ctx.cached("descended", lambda: descend(problem, _points(problem, 32, ctx, 11)))


def _oracles(problem: Problem) -> list[tuple[str, Any]]:
    """(name, function of X) for every batched oracle the problem has."""
    found = [("f", problem.f), ("grad" if problem.smooth else "subgrad", problem.first_order)]
    if problem.prox is not None:
        found += [(f"prox(tau={tau})", lambda X, tau=tau: problem.prox(X, tau))
                  for tau in (0.01, 1.0)]
    if problem.invariant is not None:
        found.append(("invariant", problem.invariant))
    return found


def _where_rows(mask: np.ndarray, limit: int = 3) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    return f"row{'s' if rows.size > 1 else ''} {shown}{', ...' if rows.size > limit else ''}"


@check("problem")
def check_metadata(problem: Problem, ctx: Context) -> str:
    """Description, role, theory and critical values are well formed and consistent with
    f_star: verdicts are Verdict values with a source, no critical value lies below f_star, an
    attained infimum is finite and, where the critical values are declared complete, among
    them."""
    # the name's alphabet, n >= 1 and grad-or-subgrad are refused by Problem itself
    if not problem.description.strip():
        fail("description is empty: its first line is the listing")
    if problem.role not in ROLES:
        fail(f"role {problem.role!r} is none of {ROLES}")
    theory = problem.theory
    for key in ("bounded_trajectories", "spurious_local_minima", "spurious_minima_at_infinity"):
        if not isinstance(getattr(theory, key), Verdict):
            fail(f"theory.{key} is {getattr(theory, key)!r}, not a benchsuite.Verdict")
    if not theory.source.strip():
        fail("theory.source is empty: cite the paper, section or equation")
    if problem.attained and not math.isfinite(problem.f_star):
        fail(f"attained=True with f_star = {problem.f_star}: an infinite infimum is never "
             "attained")
    low = [v for v in problem.critical_values
           if not v >= problem.f_star - 1e-12 * (1 + abs(problem.f_star))]
    if low:
        fail(f"critical values {low} lie below f_star = {problem.f_star}")
    if problem.critical_values_complete and problem.attained and not any(
            abs(v - problem.f_star) <= 1e-12 * (1 + abs(v)) for v in problem.critical_values):
        fail(f"critical_values_complete=True, but the attained infimum f_star = "
             f"{problem.f_star} (the value of every global minimizer, a critical point) is "
             "not listed")
    if problem.coercive and not math.isfinite(problem.f_star):
        fail("coercive=True with f_star = -inf: a continuous coercive function is bounded below")
    if problem.coercive and theory.bounded_trajectories is Verdict.NO:
        fail("coercive=True but theory.bounded_trajectories is NO: the sublevel sets of a "
             "coercive function are bounded, and descent trajectories stay in them")
    if not isinstance(problem.params, Mapping) or any(
            not isinstance(k, str) for k in problem.params):
        fail("params must map parameter names (str) to values")
    return f"role {problem.role}, f_star {problem.f_star}, {len(problem.critical_values)} "\
           "critical value(s)"


@check("problem")
def check_sampler(problem: Problem, ctx: Context) -> str:
    """``sample(rng, B)`` returns a finite float64 numpy array of shape (B, n), the same for
    the same seed and different for another seed, for B = 1 and B = 64."""
    for batch in (1, 64):
        X = problem.sample(ctx.rng(), batch)
        if not isinstance(X, np.ndarray):
            fail(f"sample returned {type(X).__name__}, expected a numpy array (initial points "
                 "are drawn on the host, then moved to the backend)")
        if X.shape != (batch, problem.n):
            fail(f"sample(rng, {batch}) has shape {X.shape}, expected {(batch, problem.n)}")
        if X.dtype != np.float64:
            fail(f"sample returned dtype {X.dtype}, expected float64")
        if not np.all(np.isfinite(X)):
            fail(f"sample returned non-finite points at {_where_rows(~np.isfinite(X).all(1))}")
    again = problem.sample(ctx.rng(), 64)
    if not np.array_equal(X, again):
        fail("two generators with the same seed gave different points: draw only from the rng "
             "argument, never from numpy's global state")
    if np.array_equal(X, problem.sample(ctx.rng(1), 64)):
        fail("two different seeds gave the same points: the rng argument is ignored")
    return "seeded, (B, n) float64, finite"


@check("problem")
def check_oracle_shapes(problem: Problem, ctx: Context) -> str:
    """f returns (B,), the gradient or subgradient and the prox (B, n), the invariant (B, k):
    real floating arrays (float64, else a warning), finite at sampled points (a negative
    control may warn), and the first-order oracle finite wherever f is, at x = 0 and at points
    with zero coordinates (kinks)."""
    X = _points(problem, 16, ctx)
    odd = []  # oracles with a floating dtype other than float64
    for name, fn in _oracles(problem):
        out = fn(X)
        shape = tuple(getattr(out, "shape", ()))
        if name == "invariant" and (len(shape) != 2 or shape[0] != 16):
            fail(f"invariant returned shape {shape}, expected (B, k) = (16, k)")
        # checked as the harness checks them (the invariant's k columns are its own)
        expected = shape if name == "invariant" else (16,) if name == "f" else (16, problem.n)
        try:
            checked(out, expected, problem.name, name)
        except OracleError as exc:
            fail(str(exc))
        if np.asarray(to_numpy(out)).dtype != np.float64:
            odd.append(name)
        bad = ~np.isfinite(np.asarray(to_numpy(out), dtype=np.float64).reshape(16, -1)).all(1)
        if bad.any():
            message = f"{name} is not finite at sampled points ({_where_rows(bad)})"
            if problem.role == "negative control":
                warn(message)
            fail(message + ": trajectories starting there fail at once")
    # kinks sit where coordinates vanish (|x|, relu, x/|x|): a Clarke selection and a
    # gradient are finite wherever f is, and a NaN there would fail every run that lands on one
    kinks = X.copy()
    kinks[ctx.rng(14).random(X.shape) < 0.5] = 0.0
    kinks[0] = 0.0
    finite_f = np.isfinite(_values(problem, kinks))
    g = _first_order(problem, kinks)
    bad = finite_f & ~np.isfinite(g).all(axis=1)
    if bad.any():
        fail(f"{'grad' if problem.smooth else 'subgrad'} is not finite where f is, at points "
             f"with zero coordinates ({_where_rows(bad)}; row 0 is x = 0): return an element "
             "of the Clarke subdifferential there (0 for |x| at 0, say)")
    if odd:
        warn(f"{', '.join(odd)} return(s) a floating dtype other than float64: campaigns run "
             "in float64, and a lower precision limits what the classifier can resolve")
    return f"{', '.join(name for name, _ in _oracles(problem))}: shapes and dtypes"


@check("problem", needs=NEEDS)
def check_rows_independent(problem: Problem, ctx: Context) -> str:
    """A row's values do not depend on the rest of the batch: each oracle on a batch equals
    the same oracle on the rows alone, on a permuted batch and on a batch whose other rows
    changed."""
    X = _points(problem, 8, ctx)
    other = _points(problem, 8, ctx, 1)
    perm = np.array([3, 0, 7, 1, 6, 2, 5, 4])
    mixed = other.copy()
    mixed[0] = X[0]
    for name, fn in _oracles(problem):
        full = np.asarray(to_numpy(fn(X)), dtype=np.float64)
        scale = 1e-10 * (np.abs(full) + np.median(np.abs(full[np.isfinite(full)]))
                         if np.isfinite(full).any() else np.abs(full))
        cases = [("alone", fn(X[:1]), full[:1], scale[:1]),
                 ("in a permuted batch", fn(X[perm]), full[perm], scale[perm]),
                 ("with other rows changed", fn(mixed)[:1], full[:1], scale[:1]),
                 ("in a batch of 3", fn(X[5:8]), full[5:8], scale[5:8])]
        for how, got, want, tol in cases:
            got = np.asarray(to_numpy(got), dtype=np.float64)
            if got.shape != want.shape or not np.all(
                    (np.abs(got - want) <= tol) | (np.isnan(got) & np.isnan(want))
                    | (got == want)):
                fail(f"{name}: rows evaluated {how} differ from the same rows in the full "
                     "batch: each row must depend on its own point only (no batch "
                     "statistics, no shared state)")
    return "every oracle, 4 batchings"


@check("problem", needs=NEEDS)
def check_deterministic(problem: Problem, ctx: Context) -> str:
    """The same input gives bit-identical output twice, and no oracle modifies its input."""
    X = _points(problem, 8, ctx)
    for name, fn in _oracles(problem):
        before = X.copy()
        first = np.asarray(to_numpy(fn(X)), dtype=np.float64)
        if not np.array_equal(X, before):
            fail(f"{name} modified its input array in place: the integrator still needs it")
        second = np.asarray(to_numpy(fn(X)), dtype=np.float64)
        if not np.array_equal(first, second, equal_nan=True):
            fail(f"{name} returned different values for the same input: results must be a "
                 "function of the seed (no hidden randomness or state)")
    if problem.certificate is not None:
        f = _values(problem, X)
        first = np.asarray(problem.certificate(X.copy(), f.copy()), dtype=object)
        second = np.asarray(problem.certificate(X.copy(), f.copy()), dtype=object)
        if not np.array_equal(first.astype(str), second.astype(str)):
            fail("the certificate returned different labels for the same points")
    return "bit-identical, inputs untouched"


def _directional(problem: Problem, X: np.ndarray, D: np.ndarray, eps: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Central difference of f along D with per-row step eps (B,), and max |f| of the two
    values differenced (the scale of its rounding error)."""
    step = eps[:, None] * D
    ahead, behind = _values(problem, X + step), _values(problem, X - step)
    return (ahead - behind) / (2.0 * eps), np.maximum(np.abs(ahead), np.abs(behind))


def _derivative_points(problem: Problem, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """32 sampled points, 16 of them scaled by 10 (trajectories leave the sampling box) and,
    for a smooth problem, 16 descended points (a nonsmooth descent stalls on kinks, where f
    is not differentiable), with a random unit direction each."""
    X = _points(problem, 32, ctx, 2)
    parts = [X, 10.0 * X[:16]]
    if problem.smooth:
        parts.append(_descended(problem, ctx)[0][:16])
    X = np.concatenate(parts)
    D = ctx.rng(3).standard_normal(X.shape)
    return X, D / np.linalg.norm(D, axis=1, keepdims=True)


def _mismatch(problem: Problem, ctx: Context, X: np.ndarray, D: np.ndarray,
              analytic: np.ndarray, g_norm: np.ndarray, relative_step: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """The central difference of f along d (step ``relative_step`` times |x|,
    Richardson-halved) and whether it disagrees with the oracle's g.d beyond the tolerance:
    1e-6 of |g|, plus the difference's own truncation error (the change under halving) and
    rounding error (relative to the values of f differenced). Nothing absolute: f in other
    units gets the same test. Rows where anything is not finite never disagree."""
    _, x_scale = _scales(problem, ctx)
    eps = relative_step * (np.linalg.norm(X, axis=1) + x_scale)
    fd, _ = _directional(problem, X, D, eps)
    fd_half, size = _directional(problem, X, D, eps / 2.0)
    size = np.maximum(size, np.abs(_values(problem, X)))
    tol = (1e-6 * (np.abs(analytic) + g_norm) + 4.0 * np.abs(fd - fd_half)
           + 1e3 * EPS * size / eps)
    return fd_half, np.abs(analytic - fd_half) > tol


def _first_order_mismatch(problem: Problem, ctx: Context
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At the derivative points: g.d, the difference of f, the rows where both are finite and
    the rows where they disagree. On a nonsmooth problem a disagreement is re-measured with a
    64 times smaller step, as the difference may straddle a kink."""
    X, D = _derivative_points(problem, ctx)
    g = _first_order(problem, X)
    analytic, g_norm = np.sum(g * D, axis=1), np.linalg.norm(g, axis=1)
    fd, bad = _mismatch(problem, ctx, X, D, analytic, g_norm, 1e-5)
    finite = np.isfinite(analytic) & np.isfinite(fd)
    if not finite.any():
        skip(f"f or {'grad' if problem.smooth else 'subgrad'} is not finite at any sampled "
             "point")
    bad &= finite
    if bad.any() and not problem.smooth:
        _, still = _mismatch(problem, ctx, X[bad], D[bad], analytic[bad], g_norm[bad],
                             1e-5 / 64)
        bad[np.flatnonzero(bad)] = still
    return analytic, fd, finite, bad


@check("problem", needs=NEEDS)
def check_gradient(problem: Problem, ctx: Context) -> str:
    """grad matches central differences of f along random directions at 64 points (sampled,
    sampled times 10, descended), within a tolerance relative to f, to the gradient and to the
    difference's own error."""
    if not problem.smooth:
        skip("nonsmooth problem: see subgradient")
    analytic, fd, finite, bad = _first_order_mismatch(problem, ctx)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        fail(f"grad disagrees with finite differences of f at {bad.sum()} of {finite.sum()} "
             f"points (row {i}: grad.d = {analytic[i]:.6g}, difference {fd[i]:.6g}): a sign, a "
             "factor or a missing term")
    return f"{finite.sum()} points"


@check("problem", needs=NEEDS)
def check_subgradient(problem: Problem, ctx: Context) -> str:
    """The Clarke selection's first-order model: at 48 random points (sampled, and times 10;
    f is differentiable there almost surely) g.d equals the derivative of f along
    random directions d; a point where the difference straddles a kink is re-measured with a
    64 times smaller step."""
    if problem.smooth:
        skip("smooth problem: see gradient")
    analytic, fd, finite, bad = _first_order_mismatch(problem, ctx)
    if bad.sum() > 1:  # one kink hit at both steps is possible, two is a wrong selection
        i = int(np.flatnonzero(bad)[0])
        fail(f"subgrad disagrees with the derivative of f at {bad.sum()} of {finite.sum()} "
             f"random points (row {i}: g.d = {analytic[i]:.6g}, difference {fd[i]:.6g}): "
             "where f is differentiable its Clarke subdifferential is the gradient")
    return f"{finite.sum()} points, {bad.sum()} at a kink"


def _prox_objective(problem: Problem, Y: np.ndarray, X: np.ndarray, tau: float) -> np.ndarray:
    return _values(problem, Y) + np.sum((Y - X) ** 2, axis=1) / (2.0 * tau)


@check("problem", needs=NEEDS)
def check_prox_optimal(problem: Problem, ctx: Context) -> str:
    """prox(x, tau) minimizes phi(y) = f(y) + |y - x|^2 / (2 tau): phi at the prox is not
    above f(x), not beaten by random perturbations at three radii nor by a fresh local solve
    (L-BFGS from x and from the prox), and for a smooth f, (x - prox)/tau = grad f(prox)."""
    if problem.prox is None:
        skip("no prox")
    X = _points(problem, 16, ctx, 4)
    rng = ctx.rng(5)
    f_scale, x_scale = _scales(problem, ctx)
    fx = _values(problem, X)
    tol = 1e-9 * (np.abs(fx) + f_scale)
    g_scale = np.median(np.linalg.norm(_first_order(problem, X), axis=1))
    for tau in TAUS:
        P = np.asarray(to_numpy(problem.prox(X, tau)), dtype=np.float64)
        phi = _prox_objective(problem, P, X, tau)
        worse = ~(phi <= fx + tol)
        if worse.any():
            fail(f"tau={tau}: phi(prox(x)) > phi(x) = f(x) at {_where_rows(worse)}: the prox "
                 "is worse than not moving")
        if problem.smooth:
            gp = _first_order(problem, P)
            size = np.linalg.norm((P - X) / tau, axis=1) + np.linalg.norm(gp, axis=1) + g_scale
            # P - X loses the digits P and X share: when the prox barely moves (a tiny f or
            # tau), rounding alone leaves eps |x| / tau in the residual
            rounding = 1e2 * EPS * (np.linalg.norm(X, axis=1) + np.linalg.norm(P, axis=1)) / tau
            rel = np.maximum(np.linalg.norm((P - X) / tau + gp, axis=1) - rounding, 0.0) \
                / np.maximum(size, 1e-300)
            if rel.max() > 1e-6:
                fail(f"tau={tau}: (x - prox)/tau differs from grad f(prox) by {rel.max():.2g} "
                     "(relative): the prox is not a stationary point of phi")
        for radius in (1e-4, 1e-2, 0.3):
            Y = P + radius * np.sqrt(tau) * (np.linalg.norm(P, axis=1, keepdims=True) + x_scale) \
                * rng.standard_normal(P.shape) / np.sqrt(problem.n)
            beaten = _prox_objective(problem, Y, X, tau) < phi - tol
            if beaten.any():
                fail(f"tau={tau}: a random point at relative distance {radius} of the prox has "
                     f"a lower phi at {_where_rows(beaten)}: the prox is not a minimizer")
        for i in range(4):  # a fresh local solve, from x and from the prox
            best = _local_prox_solve(problem, X[i], P[i], tau)
            if best is not None and best < phi[i] - tol[i] - 1e-7 * (abs(phi[i]) + f_scale):
                fail(f"tau={tau}, row {i}: a local solve of the prox subproblem reached "
                     f"phi = {best:.10g} < phi(prox) = {phi[i]:.10g}: the prox is not the "
                     "global minimizer of phi")
    return f"tau in {TAUS}, 16 points"


def _local_prox_solve(problem: Problem, x: np.ndarray, p: np.ndarray, tau: float
                      ) -> float | None:
    """The lowest phi that L-BFGS (smooth) or Powell (nonsmooth, n <= 20) reaches from x and
    from p, or None where no solver applies."""
    def phi(y: np.ndarray) -> float:
        return float(_prox_objective(problem, y[None], x[None], tau)[0])

    if problem.smooth:
        def jac(y: np.ndarray) -> np.ndarray:
            return _first_order(problem, y[None])[0] + (y - x) / tau
        runs = [minimize(phi, y0, jac=jac, method="L-BFGS-B", options={"maxiter": 200})
                for y0 in (x, p)]
    elif problem.n <= 20:
        runs = [minimize(phi, y0, method="Powell", options={"maxiter": 2000, "xtol": 1e-10,
                                                            "ftol": 1e-14}) for y0 in (x, p)]
    else:
        return None
    values = [r.fun for r in runs if np.isfinite(r.fun)]
    return min(values) if values else None


@check("problem", needs=NEEDS)
def check_prox_fixed_points(problem: Problem, ctx: Context) -> str:
    """A global minimizer is a fixed point of the prox for every tau: at descended points with
    f - f_star = gap, |prox(x, tau) - x|^2 <= 2 tau gap (plus rounding)."""
    if problem.prox is None:
        skip("no prox")
    if not math.isfinite(problem.f_star):
        skip("no finite infimum")
    X, fx = _descended(problem, ctx)
    f_scale, x_scale = _scales(problem, ctx)
    gap = fx - problem.f_star
    near = np.isfinite(gap) & (gap <= 1e-6 * f_scale)
    if not near.any():
        skip("descent found no point within 1e-6 of f_star")
    X, gap = X[near], np.maximum(gap[near], 0.0)
    for tau in TAUS:
        P = np.asarray(to_numpy(problem.prox(X, tau)), dtype=np.float64)
        move = np.linalg.norm(P - X, axis=1)
        bound = np.sqrt(2.0 * tau * gap) + 1e-7 * (np.linalg.norm(X, axis=1) + x_scale)
        moved = move > bound
        if moved.any():
            i = int(np.flatnonzero(moved)[0])
            fail(f"tau={tau}: the prox moves a point at f - f_star = {gap[i]:.2g} by "
                 f"{move[i]:.3g} (at most {bound[i]:.3g} for a minimizer of phi)")
    return f"{near.sum()} near-minimizers"


@check("problem", needs=NEEDS)
def check_invariant_conserved(problem: Problem, ctx: Context) -> str:
    """The invariant is conserved along the flow: constant to 1e-6 (relative) along a
    tight-tolerance solve_ivp trajectory (smooth), or with an explicit-Euler drift that
    shrinks at least twofold when the step is quartered (nonsmooth: a Clarke flow has no
    high-order solver)."""
    if problem.invariant is None:
        skip("no invariant")
    X = _points(problem, 3, ctx, 6)
    inv0 = np.asarray(to_numpy(problem.invariant(X)), dtype=np.float64)
    typical = np.asarray(to_numpy(problem.invariant(_points(problem, 16, ctx, 13))))
    scale = max(float(np.abs(inv0).max()), float(np.median(np.abs(typical))), 1e-300)
    _, x_scale = _scales(problem, ctx)
    g0 = np.linalg.norm(_first_order(problem, X), axis=1)
    with np.errstate(divide="ignore"):
        # a quarter of the time the flow takes to move by |x|: the flow's own clock, so that
        # f in other units (a faster or slower flow) is tested over the same path
        T = 0.25 * float(np.median((np.linalg.norm(X, axis=1) + x_scale) / g0))
    if not 0.0 < T < math.inf:
        skip("the sampled points are stationary: the flow does not move")
    if problem.smooth:
        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            return -_first_order(problem, y.reshape(X.shape)).ravel()
        solver = DOP853(rhs, 0.0, X.ravel(), T, rtol=1e-11, atol=1e-12 * x_scale)
        for _ in range(MAX_FLOW_STEPS):
            if solver.status != "running":
                break
            solver.step()
        if solver.status != "finished":
            skip(f"the flow could not be integrated to t = {T:.3g} in {MAX_FLOW_STEPS} steps "
                 "(too stiff, or it blows up)")
        end = solver.y.reshape(X.shape)
        drift = np.abs(np.asarray(to_numpy(problem.invariant(end))) - inv0).max() / scale
        if drift > 1e-6:
            fail(f"the invariant changed by {drift:.3g} (relative) along the flow from t = 0 "
                 f"to {T:.3g}; it must stay constant")
        return f"drift {drift:.2g} over t = {T:.3g}"
    drifts = []
    for steps in (50, 200):
        x = X.copy()
        h = T / steps
        for _ in range(steps):
            x = x - h * _first_order(problem, x)
        drifts.append(np.abs(np.asarray(to_numpy(problem.invariant(x))) - inv0).max() / scale)
    if not np.all(np.isfinite(drifts)):
        skip("explicit Euler did not stay finite")
    floor = 1e-9
    if drifts[1] > floor and drifts[1] > 0.5 * drifts[0]:
        fail(f"the invariant's drift along explicit Euler does not vanish with the step "
             f"({drifts[0]:.3g} at h = T/50, {drifts[1]:.3g} at h = T/200): it is not conserved "
             "by the flow")
    return f"Euler drift {drifts[0]:.2g} -> {drifts[1]:.2g} as h / 4"


@check("problem", needs=NEEDS)
def check_f_star(problem: Problem, ctx: Context) -> str:
    """f_star is not beaten: no sampled point (256) nor point found by descent (32) has f below
    f_star. (Whether an infimum is attained cannot be told from floating-point values, which
    underflow to it; ``metadata`` checks that an attained one is finite.)"""
    if not math.isfinite(problem.f_star):
        skip("f_star = -inf: nothing to beat")
    X = _points(problem, 256, ctx, 7)
    D, fd = _descended(problem, ctx)
    values = np.concatenate([_values(problem, X), fd])
    points = np.concatenate([X, D])
    tol = 1e-9 * (abs(problem.f_star) + _scales(problem, ctx)[0])
    below = np.isfinite(values) & (values < problem.f_star - tol)
    if below.any():
        i = int(np.flatnonzero(below)[0])
        where = "a sampled point" if i < len(X) else "a point found by descent"
        fail(f"f = {values[i]:.10g} < f_star = {problem.f_star} at {where} "
             f"(|x| = {np.linalg.norm(points[i]):.3g}): f_star is not the infimum")
    best = np.nanmin(fd) - problem.f_star
    return f"lowest f - f_star found: {best:.3g}"


def _stationary_values(problem: Problem, ctx: Context) -> np.ndarray:
    """Values at the points where a long descent from 64 sampled points became stationary:
    the gradient fell below 1e-8 of its start, and 2000 more descent steps change f by less
    than 1e-10 of its scale (a stiff valley has a small gradient too, but f still moves)."""
    f_scale, _ = _scales(problem, ctx)
    X0 = _points(problem, 64, ctx, 8)
    X, fx = descend(problem, X0, iterations=5000, stop_norm=1e4)
    X2, fx2 = descend(problem, X, iterations=2000, stop_norm=1e4)
    g0 = np.linalg.norm(_first_order(problem, X0), axis=1)
    g = np.linalg.norm(_first_order(problem, X2), axis=1)
    stationary = (np.isfinite(fx2) & (g <= 1e-8 * g0) & (np.linalg.norm(X2, axis=1) < 1e4)
                  & (np.abs(fx - fx2) <= 1e-10 * (np.abs(fx2) + f_scale)))
    if not problem.attained and math.isfinite(problem.f_star):
        # no point has an unattained infimum as value: f and its gradient underflowed there
        # (a logistic loss far out), which is the infimum approached at infinity
        stationary &= fx2 > problem.f_star + 1e-12 * (abs(problem.f_star) + f_scale)
    return fx2[stationary]


@check("problem", slow=True, needs=NEEDS)
def check_critical_values(problem: Problem, ctx: Context) -> str:
    """Stationary points reached by a long descent from 64 sampled points (gradient below 1e-8
    of its start, f no longer moving) have listed critical values (a failure where the list is
    declared complete, a warning otherwise). Slow: run it with ``slow=True`` or
    ``benchsuite check --slow``."""
    if not problem.smooth:
        skip("nonsmooth: descent does not find stationary points reliably")
    if not problem.critical_values:
        skip("no critical values listed")
    values = _stationary_values(problem, ctx)
    if values.size == 0:
        skip("descent reached no stationary point")
    listed = np.asarray(problem.critical_values, dtype=np.float64)
    f_scale, _ = _scales(problem, ctx)
    close = np.abs(values[:, None] - listed[None, :]) <= 1e-6 * (np.abs(listed[None, :])
                                                                 + f_scale)
    unlisted = np.unique(np.round(values[~close.any(axis=1)], 8))
    if unlisted.size:
        message = (f"descent found stationary points with f = {unlisted[:5].tolist()}, not among "
                   f"the listed critical values {problem.critical_values}")
        if problem.critical_values_complete:
            fail(message + ", which are declared complete")
        warn(message)
    return f"{values.size} stationary points, all at listed values"


@check("problem", needs=NEEDS)
def check_certificate(problem: Problem, ctx: Context) -> str:
    """The certificate returns, for every row, one of the landscape outcomes or "" (never a
    run label such as "failed"), with shape (B,), row by row, at sampled, descended and far
    points (x 10, x 1000), without raising or modifying its inputs."""
    if problem.certificate is None:
        skip("no certificate")
    X = _points(problem, 32, ctx, 9)
    D, _ = _descended(problem, ctx)
    points = np.concatenate([X, D, 10.0 * X, 1e3 * X])
    values = _values(problem, points)
    keep = np.isfinite(values) & np.isfinite(points).all(axis=1)
    points, values = points[keep], values[keep]
    before = points.copy(), values.copy()
    said = np.asarray(problem.certificate(points, values), dtype=object)
    if not (np.array_equal(points, before[0]) and np.array_equal(values, before[1])):
        fail("the certificate modified its input arrays")
    if said.shape != (len(points),):
        fail(f"the certificate returned shape {said.shape}, expected ({len(points)},)")
    labels = said.astype(str)
    unknown = sorted(set(labels) - CERTIFICATE_LABELS)
    if unknown:
        fail(f"the certificate returned {unknown}: allowed are "
             f"{sorted(CERTIFICATE_LABELS - {''})} or \"\" where nothing is proved")
    if problem.coercive and any(label.startswith("escape") for label in labels):
        fail("the certificate claims an escape on a coercive problem, whose trajectories are "
             "bounded")
    single = np.asarray(problem.certificate(points[:1], values[:1]), dtype=object)
    if single.shape != (1,) or str(single.astype(str)[0]) != labels[0]:
        fail(f"for a batch of one row the certificate returned {single!r}, expected shape (1,) "
             f"and {labels[0]!r} (a squeeze or a scalar?)")
    alone = np.asarray(problem.certificate(points[1::3], values[1::3]), dtype=object).astype(str)
    if not np.array_equal(alone, labels[1::3]):
        fail("the certificate's label of a row depends on the other rows of the batch")
    counts = {label or "silent": int((labels == label).sum()) for label in sorted(set(labels))}
    return ", ".join(f"{k} {v}" for k, v in counts.items())


@check("problem", needs=NEEDS)
def check_array_api(problem: Problem, ctx: Context) -> str:
    """Under ``array_api_strict`` (the standard and nothing more), every oracle returns an
    array of that namespace with the numpy values, when the problem claims array-API
    genericity (``array_api=True``)."""
    if not problem.array_api:
        skip("numpy-only problem (array_api=False)")
    try:
        import array_api_strict as xps
    except ImportError:
        skip("array_api_strict is not installed (pip install array-api-strict)")
    X = _points(problem, 8, ctx)
    for name, fn in _oracles(problem):
        out = fn(xps.asarray(X))
        if isinstance(out, np.ndarray) or type(out).__module__.split(".")[0] != "array_api_strict":
            fail(f"{name} returned {type(out).__module__}.{type(out).__name__} for "
                 "array_api_strict input: compute in the input's namespace "
                 "(array_api_compat.array_namespace(X))")
        want = np.asarray(to_numpy(fn(X)), dtype=np.float64)
        got = np.asarray(to_numpy(out), dtype=np.float64)
        rtol = 1e-9 if name.startswith("prox") else 1e-12
        if not np.allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max()):
            fail(f"{name} under array_api_strict differs from numpy by "
                 f"{np.abs(got - want).max():.3g}")
    return "values equal under array_api_strict"


#: How far a hand-written gradient may be from JAX's derivative of f, relative to the
#: gradient's scale: both are exact formulas, so they differ by rounding only (1e-14 on the
#: catalog); 1e-8 leaves room for a gradient computed as a difference of large terms, and is
#: a hundred times finer than what finite differences resolve (1e-6, ``gradient``).
AUTODIFF_RTOL = 1e-8


def _vector(v: np.ndarray) -> str:
    """A row for a message: all of it in low dimension, its ends in high dimension."""
    return np.array2string(v, precision=6, threshold=8, edgeitems=3, separator=", ",
                           max_line_width=10**9)


# after ``gradient`` and ``array_api``, which it needs: a grad that finite differences already
# reject, or an f that is not array-API generic, would only fail here a second time. Slow: it
# imports JAX and compiles one gradient per problem (a third of the catalog's fast run) to
# catch only what ``gradient`` cannot see, errors below 1e-6
@check("problem", slow=True, needs=(*NEEDS, "gradient", "array_api"))
def check_autodiff(problem: Problem, ctx: Context) -> str:
    """A hand-written grad equals JAX's automatic derivative of f at the 64 points of
    ``gradient``, to 1e-8 of the gradient's scale (finite differences cannot see an error
    below 1e-6, such as a constant with too few digits): smooth array-API problems, when JAX
    is installed. Slow: run it with ``slow=True`` or ``benchsuite check --slow``."""
    if not problem.smooth:
        skip("nonsmooth problem: autodiff gives no Clarke subgradient selection")
    if problem.autodiff:
        skip("the gradient is the autodiff one")
    if not problem.array_api:
        skip("numpy-only problem (array_api=False): JAX cannot trace f")
    from benchsuite.autodiff import AutodiffError, AutodiffUnavailable, autodiff_gradient

    try:
        # compiled with XLA's optimizations off: evaluated once, it is the compile that costs
        derived = autodiff_gradient(problem.f, quick=True)
    except AutodiffUnavailable:
        skip("jax is not installed (pip install jax)")
    X, _ = _derivative_points(problem, ctx)
    hand = _first_order(problem, X)
    try:
        auto = np.asarray(derived(X), dtype=np.float64)
    except AutodiffError as exc:
        fail(f"{exc} (the problem claims array_api=True, and the JAX backend traces f too)")
    # where f or either gradient overflows there is nothing to compare (a hand-written grad
    # in a stable form may stay finite where autodiff's intermediate terms do not)
    rows = (np.isfinite(_values(problem, X)) & np.isfinite(hand).all(axis=1)
            & np.isfinite(auto).all(axis=1))
    if not rows.any():
        skip("f, grad or the autodiff gradient is not finite at any point")
    norm = np.linalg.norm(hand, axis=1)
    g_scale = float(np.median(norm[rows]))  # floors rows near a critical point
    if not g_scale > 0.0:
        f_scale, x_scale = _scales(problem, ctx)
        g_scale = f_scale / x_scale
    rel = np.where(rows, np.linalg.norm(auto - hand, axis=1) / (norm + g_scale), 0.0)
    bad = rel > AUTODIFF_RTOL
    if bad.any():
        i = int(np.argmax(rel))
        j = int(np.argmax(np.abs(auto[i] - hand[i])))
        fail(f"grad differs from the autodiff gradient of f at {bad.sum()} of {rows.sum()} "
             f"points; worst row {i}, relative difference {rel[i]:.3g}, largest in coordinate "
             f"{j} ({hand[i, j]:.10g} against {auto[i, j]:.10g}): x = {_vector(X[i])}, "
             f"grad = {_vector(hand[i])}, autodiff = {_vector(auto[i])}: a sign, a factor or "
             "a missing term in grad (or f)")
    left = int((~rows).sum())
    out = f", {left} left out (not finite)" if left else ""
    return f"{rows.sum()} points{out}, largest difference {rel.max():.2g} (relative)"
