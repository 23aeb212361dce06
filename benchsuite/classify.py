"""What each trajectory did: the outcome taxonomy and the tests that decide it.

Labels (:data:`OUTCOMES`):

``converged_global``
    bounded and stationary at the infimum.
``converged_spurious``
    bounded and stationary above the infimum: a saddle, a spurious local minimum, a flat region.
``escape_global``
    unbounded, with f tending to the infimum (Example 2).
``escape_spurious``
    unbounded, with f tending to a value above the infimum: a spurious local minimum at infinity.
``step_limited``
    explicit Euler stalled at its stability limit (h lambda_max near 2): the Example 1 trap.
``diverged``
    non-finite values or blow-up.
``failed``
    an exception, or an integrator that could not continue (no prox step, step-size collapse),
    with its message.
``undetermined``
    none of the tests is conclusive within the budget.

Rules, first match wins (catalog section F):

1. how the run stopped (``error``, ``prox_failed``, ``step_collapse`` -> failed; ``nonfinite`` ->
   diverged), and blow-up (|x| > ``BLOWUP_NORM`` or f < -``BLOWUP_VALUE``);
2. the step-limit test, for integrators with a fixed explicit step h on smooth problems:
   lambda_max of the Hessian at the final point by batched power iteration on finite-difference
   Hessian-vector products; h lambda_max >= ``STEP_LIMIT``, or f rising between the last
   checkpoints with h lambda_max >= ``STALL_LIMIT``, -> step_limited. So a trajectory is never
   called bounded from explicit Euler alone when Euler has stalled;
3. the problem's exact certificate, if it has one and it is conclusive;
4. the growth law of |x| on the last checkpoints (log-log slope) and an extrapolated limit of f
   (fit of f(t) = f_inf + c t^-q on the last checkpoints), compared with f_star and the known
   critical values. f tending to an infimum that is not attained means escape_global (a bounded
   trajectory attains the value of its limit points). Rows whose |x| rises with a positive
   log-log slope, not stationary and not heading for a known critical value, escape: to the
   infimum or above it. Stationary rows (vanishing gradient, or |x| and f both settled) are
   converged_global or converged_spurious by their gap to f_star; bounded rows at the infimum
   (within ``GAP_TOL``) are converged_global; rows heading for a known critical value above it
   are converged_spurious.

Everything is vectorized over trajectories: no Python loop per trajectory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from benchsuite.columns import points

OUTCOMES = ("converged_global", "converged_spurious", "escape_global", "escape_spurious",
            "step_limited", "diverged", "failed", "undetermined")

#: Targets f - f_star <= eps at which flow time and oracle calls are reported.
TARGETS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)
#: Trailing checkpoints used for the growth law and the limit of f (about two doublings of t).
TAIL = 5
BLOWUP_NORM = 1e50
BLOWUP_VALUE = 1e30
#: h * lambda_max at or above this means explicit Euler sits at its stability limit.
STEP_LIMIT = 1.9
#: With f rising between checkpoints, h * lambda_max at or above this means Euler has stalled.
STALL_LIMIT = 1.0
POWER_ITERATIONS = 40
#: f - f_star (relative to 1 + |f_star|) under which a value counts as the infimum.
GAP_TOL = 1e-3
#: Gradient norm (relative to 1 + |x|) under which a point counts as stationary.
GRAD_TOL = 1e-6
#: Relative change of |x| over the tail under which |x| counts as settled.
SETTLED_TOL = 1e-4
#: Log-log slope of |x| against t above which, with |x| increasing, a trajectory escapes.
ESCAPE_SLOPE = 0.02
#: Escape needs the growth slope of the tail's second half >= this share of the first half's.
SUSTAINED = 0.5


def classify(problem: Any, integrator: Any, trajectories: pd.DataFrame,
             checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Add outcome columns to a cell's trajectory table.

    Parameters
    ----------
    problem : Problem
    integrator : Integrator
    trajectories, checkpoints : DataFrame
        As produced by :func:`benchsuite.harness.run_cell`.

    Returns
    -------
    DataFrame
        ``trajectories`` with ``outcome``, ``reason`` (which rule decided), ``growth_exponent``,
        ``f_limit``, ``h_lambda_max``, and ``t_to_<eps>``/``evals_to_<eps>`` for each target.
    """
    out = trajectories.copy()
    batch = len(out)
    if batch == 0:
        return out
    tail = _tail(checkpoints, batch)
    growth, rising = _growth(tail)
    f_limit = _f_limit(tail)
    x = points(out, "x")
    f = out["f"].to_numpy(dtype=float)
    norm = out["norm"].to_numpy(dtype=float)
    f_star = float(problem.f_star)
    gap_tol = GAP_TOL * (1.0 + (abs(f_star) if math.isfinite(f_star) else 0.0))

    outcome = np.full(batch, "", dtype=object)
    reason = np.full(batch, "", dtype=object)

    def decide(mask: np.ndarray, label: str, why: str) -> None:
        fresh = mask & (outcome == "")
        outcome[fresh], reason[fresh] = label, why

    stop = out["stop"].to_numpy(dtype=str)
    decide(np.isin(stop, ["error", "prox_failed", "step_collapse"]), "failed", "stop")
    decide(stop == "nonfinite", "diverged", "stop")
    with np.errstate(invalid="ignore"):
        decide(~np.isfinite(f) | (norm > BLOWUP_NORM) | (f < -BLOWUP_VALUE), "diverged",
               "blow-up")

    h_lambda = np.full(batch, np.nan)
    step = getattr(integrator, "explicit_step", None)
    if step is not None and problem.smooth:
        live = outcome == ""
        if live.any():
            h_lambda[live] = step * lambda_max(problem, x[live])
            decide(h_lambda >= STEP_LIMIT, "step_limited", "h*lambda_max")
            # Euler settles into an oscillation a little short of h lambda = 2 (Example 1 with
            # h = 0.05 stalls at h lambda ~ 1.8): f then rises between checkpoints, which the
            # flow never does, nor Euler below its stability limit (catalog F.1)
            with np.errstate(invalid="ignore"):
                decide(tail["f_rises"] & (h_lambda >= STALL_LIMIT), "step_limited",
                       "f rises, h*lambda_max near 2")

    if problem.certificate is not None:
        live = np.flatnonzero(outcome == "")
        if live.size:
            labels = np.asarray(problem.certificate(x[live], f[live]), dtype=object)
            certified = np.zeros(batch, dtype=bool)
            certified[live] = labels != ""
            outcome[live[labels != ""]] = labels[labels != ""]
            reason[certified] = "certificate"

    grad_norm = tail["grad_norm"][:, -1]
    # stationary: a vanishing gradient (smooth problems), or |x| and f both settled (a
    # subgradient selection need not vanish, and slow small steps alone settle |x| only)
    stationary = tail["settled"] & tail["f_settled"]
    if problem.smooth:
        stationary |= grad_norm <= GRAD_TOL * (1.0 + norm)
    limit = np.where(np.isfinite(f_limit), f_limit, f)
    crit = np.asarray([c for c in problem.critical_values if c > f_star + gap_tol])
    with np.errstate(invalid="ignore"):
        gap = f - f_star
        at_inf = limit - f_star <= gap_tol
        # heading for a known critical value: a slow approach to a degenerate critical point
        # (Remark 2's flat inflections) also has |x| rising, but is bounded
        near_crit = (np.min(np.abs(limit[:, None] - crit[None, :]), axis=1) <= gap_tol
                     if crit.size else np.zeros(batch, dtype=bool))
        escaping = rising & (growth > ESCAPE_SLOPE) & ~stationary & ~near_crit
        if not problem.attained:
            # a bounded trajectory attains the value of its limit points: f tending to an
            # infimum that no point attains means the trajectory is unbounded
            decide(at_inf & ~stationary, "escape_global", "unattained infimum")
        decide(escaping & at_inf, "escape_global", "growth+limit")
        decide(escaping & ~at_inf, "escape_spurious", "growth+limit")
        decide(stationary & (gap <= gap_tol), "converged_global", "stationary")
        decide(stationary & (gap > gap_tol), "converged_spurious", "stationary")
        decide((~rising | (growth <= ESCAPE_SLOPE)) & (gap <= gap_tol), "converged_global",
               "value")
        decide(near_crit & ~escaping, "converged_spurious", "critical value")
    decide(np.ones(batch, dtype=bool), "undetermined", "")

    out["outcome"] = pd.Categorical(outcome, categories=OUTCOMES)
    out["reason"] = reason.astype(str)
    out["growth_exponent"] = growth
    out["f_limit"] = f_limit
    out["h_lambda_max"] = h_lambda
    for eps, (t_hit, evals_hit) in _targets(checkpoints, batch).items():
        out[f"t_to_{eps:g}"] = t_hit
        out[f"evals_to_{eps:g}"] = evals_hit
    return out


def lambda_max(problem: Any, x: np.ndarray, iterations: int = POWER_ITERATIONS) -> np.ndarray:
    """Largest (algebraic) Hessian eigenvalue at each row of x, batched.

    Power iteration on finite-difference Hessian-vector products finds the eigenvalue of
    largest *magnitude*, which at a saddle with a symmetric spectrum (Example 1's origin:
    +-3.24) oscillates and says nothing. So a first pass estimates rho = max |lambda|, and a
    second iterates on H + rho I, whose dominant eigenvalue is lambda_max + rho.
    """
    rng = np.random.default_rng(0)
    eps = 1e-5 * (1.0 + np.linalg.norm(x, axis=1, keepdims=True))

    def hvp(v: np.ndarray) -> np.ndarray:
        return np.asarray(problem.first_order(x + eps * v) - problem.first_order(x - eps * v)) / (
            2 * eps)

    def normalized(v: np.ndarray) -> np.ndarray:
        size = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(size > 0, size, 1.0)

    with np.errstate(all="ignore"):
        v = normalized(rng.standard_normal(x.shape))
        rho = np.zeros((x.shape[0], 1))
        for _ in range(iterations // 2):
            hv = hvp(v)
            rho = np.linalg.norm(hv, axis=1, keepdims=True)
            v = normalized(hv)
        v = normalized(rng.standard_normal(x.shape))
        for _ in range(iterations):
            v = normalized(hvp(v) + rho * v)
        return np.sum(v * hvp(v), axis=1)


def _tail(checkpoints: pd.DataFrame, batch: int) -> dict[str, np.ndarray]:
    """The last TAIL checkpoints (t > 0) of each trajectory as (batch, TAIL) arrays, left-padded
    with the earliest available value."""
    cols = ("t", "f", "norm", "grad_norm")
    cp = checkpoints[checkpoints["t"] > 0]
    cp = cp.sort_values(["traj", "step"]).groupby("traj").tail(TAIL)
    result = {c: np.full((batch, TAIL), np.nan) for c in cols}
    if len(cp):
        traj = cp["traj"].to_numpy()
        rank = cp.groupby("traj").cumcount(ascending=False).to_numpy()  # 0 = last
        slot = TAIL - 1 - rank
        for c in cols:
            result[c][traj, slot] = cp[c].to_numpy(dtype=float)
        for c in cols:  # left-pad short histories with their first value
            arr = result[c]
            first = np.where(np.isnan(arr), np.inf, np.arange(TAIL)[None, :]).min(axis=1)
            first = np.where(np.isfinite(first), first, TAIL - 1).astype(int)
            fill = arr[np.arange(batch), first]
            result[c] = np.where(np.isnan(arr), fill[:, None], arr)
    norm = result["norm"]
    with np.errstate(invalid="ignore", divide="ignore"):
        # fmax/fmin skip NaN without the all-NaN warning of nanmax (rows with no t > 0 record)
        change = (np.fmax.reduce(norm, axis=1) - np.fmin.reduce(norm, axis=1)) / (
            1.0 + norm[:, -1])
    result["settled"] = change <= SETTLED_TOL
    f = result["f"]
    with np.errstate(invalid="ignore"):
        result["f_rises"] = np.any(np.diff(f, axis=1) > 1e-12 * (1.0 + np.abs(f[:, :-1])),
                                   axis=1)
    with np.errstate(invalid="ignore"):
        spread = np.fmax.reduce(f, axis=1) - np.fmin.reduce(f, axis=1)
        result["f_settled"] = spread <= SETTLED_TOL * (1e-4 + np.abs(f[:, -1]))
    return result


def _slope(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of log y against log t, row by row."""
    with np.errstate(all="ignore"):
        lt, ly = np.log(t), np.log(np.maximum(y, 1e-300))
        lt_c = lt - lt.mean(axis=1, keepdims=True)
        slope = np.sum(lt_c * (ly - ly.mean(axis=1, keepdims=True)), axis=1) / np.sum(
            lt_c**2, axis=1)
    return np.where(np.isfinite(slope), slope, 0.0)


def _growth(tail: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Log-log slope of |x| against t over the tail, and whether |x| rose at every checkpoint
    *with a sustained slope*: escape is a power law (or log), so the slope over the second half
    of the tail stays at least ``SUSTAINED`` times the first half's; convergence makes it
    collapse (a trajectory still converging also has |x| rising over a short window)."""
    t, norm = tail["t"], tail["norm"]
    mid = TAIL // 2
    slope = _slope(t, norm)
    early, late = _slope(t[:, :mid + 1], norm[:, :mid + 1]), _slope(t[:, mid:], norm[:, mid:])
    with np.errstate(invalid="ignore"):
        rising = np.all(np.diff(norm, axis=1) > 0, axis=1) & (np.diff(t, axis=1) > 0).all(axis=1)
    return slope, rising & (late >= SUSTAINED * early)


def _f_limit(tail: dict[str, np.ndarray]) -> np.ndarray:
    """Extrapolated limit of f: fit f(t) = f_inf + c t^-q on the tail, through its derivative.

    D_j = (f_j - f_{j+1})/(t_{j+1} - t_j) ~ c q t^-(q+1): a log-log fit of D against the midpoint
    times gives q and c q, and f_inf = f_last - D(t_last) t_last / q. NaN where f does not
    decrease steadily (q <= 0.05) or the fit is not finite.
    """
    t, f = tail["t"], tail["f"]
    with np.errstate(all="ignore"):
        d = -np.diff(f, axis=1) / np.diff(t, axis=1)
        tm = np.sqrt(t[:, 1:] * t[:, :-1])
        ok = np.all(d > 0, axis=1)
        ld, lt = np.log(np.where(d > 0, d, 1.0)), np.log(tm)
        lt_c = lt - lt.mean(axis=1, keepdims=True)
        slope = np.sum(lt_c * (ld - ld.mean(axis=1, keepdims=True)), axis=1) / np.sum(
            lt_c**2, axis=1)
        q = -slope - 1.0
        intercept = ld.mean(axis=1) - slope * lt.mean(axis=1)
        d_last = np.exp(intercept + slope * np.log(t[:, -1]))
        f_inf = f[:, -1] - d_last * t[:, -1] / q
    return np.where(ok & (q > 0.05) & np.isfinite(f_inf), f_inf, np.nan)


def _targets(checkpoints: pd.DataFrame, batch: int) -> dict[float, tuple[np.ndarray, ...]]:
    """First recorded flow time and oracle calls with f - f_star <= eps, per trajectory."""
    cp = checkpoints.sort_values(["traj", "step"])
    evals = (cp["nfev"] + cp["ngev"] + cp["nprox"]).to_numpy(dtype=float)
    gap = cp["f_gap"].to_numpy(dtype=float)
    traj = cp["traj"].to_numpy()
    t = cp["t"].to_numpy(dtype=float)
    result = {}
    for eps in TARGETS:
        hit = gap <= eps
        t_hit, e_hit = np.full(batch, np.nan), np.full(batch, np.nan)
        if hit.any():
            first = pd.Series(np.flatnonzero(hit)).groupby(traj[hit]).first()
            t_hit[first.index.to_numpy()] = t[first.to_numpy()]
            e_hit[first.index.to_numpy()] = evals[first.to_numpy()]
        result[eps] = (t_hit, e_hit)
    return result
