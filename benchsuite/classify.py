"""What each trajectory did: evidence read from its checkpoints, and the rules that label it.

A label is a claim about the landscape (``escape_spurious`` says: here is a spurious minimum at
infinity), so a confident label needs evidence, and without it the answer is ``undetermined``.
The rules run in this order; the first that matches decides, and its name goes to the
``reason`` column (undetermined rows say which evidence was missing):

=================  ====================  ===========================================================
rule               label                 evidence
=================  ====================  ===========================================================
``fault``          failed                stopped on ``error``, ``prox_failed`` or ``step_collapse``
                                         (the ``message`` column says why)
``safety_net``     undetermined          stopped by the wall-time safety net: a property of the
                                         machine, never evidence about the trajectory
``nonfinite``      diverged              stopped because x or f became non-finite
``blowup``         diverged              |x| > ``BLOWUP_NORM`` or f < -``BLOWUP_VALUE``, or a
                                         non-finite final value after a budget stop
``step_limit``     step_limited          a declared fixed step h, f not within ``GAP_TOL`` of
                                         f_star, and h lambda_max (Hessian at the last
                                         point) at or beyond the method's stability limit (to
                                         ``LIMIT_RTOL``, its accuracy); or at
                                         least ``STALL_FRACTION`` of it with f rising between
                                         checkpoints of the last ``OCTAVES`` octaves (which the
                                         flow never does) and a gradient that does not vanish
``certificate``    the certificate's     the problem's exact certificate at the last point (skipped
                                         with ``certificates=False``; the ``generic_outcome``
                                         column always holds the label without it)
``at_infimum``     converged_global      f - f_star <= tol, the infimum is attained, and |x| is not
                                         growing, or moves less and less (finite length: an
                                         escape like sqrt(log t) also decelerates)
``unattained``     escape_global         f - f_star <= tol, the infimum is not attained, and |x|
                                         still moves: a bounded trajectory attains the value of its
                                         limit points, so this one is unbounded
``stationary``     converged_spurious    above the infimum and stationary: |x| settled over the
                                         last octave (relative change <= ``SETTLED_TOL``, and no
                                         more than over the octave before), f
                                         settled, and on smooth problems a vanished gradient
                                         (|g| <= ``GRAD_TOL`` |g(x0)|) or f at a listed critical
                                         value with |g| decaying geometrically (a degenerate
                                         minimum, approached slowly). Where
                                         the problem lists all its critical values, f must be
                                         one of them
``critical_`` ...   converged_spurious    ``critical_approach``: |x| moves less and less, by a
                                         factor ``MAX_RATIO`` or less per octave (finite length),
                                         and the limit of f is, within its error bar, one of the
                                         problem's listed critical values above the infimum (a
                                         slow approach to a degenerate critical point)
``escape``         escape_global or      a stable growth law of |x| over the last ``OCTAVES``
                   escape_spurious       octaves of flow time (below), no direction of negative
                                         curvature at the last point (lambda_min t_end >=
                                         -``SADDLE_TOL``: a saddle at infinity expels the
                                         trajectory later; smooth problems of dimension <=
                                         ``DENSE_MAX`` only), and a limit of f whose
                                         error bar separates it from f_star: escape_spurious when
                                         L - err > f_star + tol and L is no listed critical
                                         value, escape_global when |L - f_star| + err <= tol
(none)             undetermined          none of the above: the reason says what was missing
=================  ====================  ===========================================================

The gap tolerance is tol = ``GAP_TOL`` min(1 + |f_star|, |f_star| + f(x0) - f_star): relative to
the scale of f along the trajectory, so that scaling f does not change a label.

**Evidence.** Each trajectory is sampled (log-linear interpolation of its checkpoints) at the
octave times t_k = t_end 2^-k, k = 0..``OCTAVES``, so a rule sees the same quantities whatever the
integrator and the recording density. The *growth law* of |x| = R is stable when R increases
over every octave (by more than ``SETTLED_TOL`` (1 + R): less is noise), its increments do not
shrink (R_0 - R_1 >= ``SUSTAINED`` (R_3 - R_4), where a converging path has geometrically
shrinking increments), and the growth exponent per octave
p_k = log2(R_k / R_k+1) does not accelerate (p_0 <= ``ACCELERATION`` p_3: power laws keep p
constant, logarithmic growth lets it fall, while a trajectory gathering speed is in a transient,
such as a slow pass by a saddle). The *limit of f* is Aitken's delta-squared extrapolation of
f(t_k) (exact for f = L + c t^-q); its error bar comes from the three successive estimates
over the window, as |L_0 - L_1| / (1 - s) with s the ratio of their successive changes, and is
widened to cover the independent estimate f(t_end) - int |grad f|^2 over the rest of the flow
(from the gradient's decay law; see :func:`limit_of_f`), and is never below
``EXTRAPOLATION_SAFETY`` times the extrapolated rest f(t_end) - L. A limit below f_star minus its
error is not evidence: such rows stay undetermined.

Everything is vectorized over trajectories: no Python loop per trajectory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchsuite.columns import points
from benchsuite.vocabulary import (
    CONFIDENT,
    DETERMINISTIC_BUDGETS,
    FAULTS,
    OUTCOMES,
    Outcome,
    Stop,
)

#: Targets f - f_star <= eps at which flow time and oracle calls are reported.
TARGETS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)
#: Octaves of flow time (doublings of t) over which growth and limits are read.
OCTAVES = 4
BLOWUP_NORM = 1e50
BLOWUP_VALUE = 1e30
#: The step-limit test with f rising needs h lambda_max at least this share of the limit.
STALL_FRACTION = 0.5
POWER_ITERATIONS = 40
#: Relative accuracy of h lambda_max (finite-difference power iteration) at the limit.
LIMIT_RTOL = 1e-3
#: f - f_star (relative to 1 + |f_star|) under which a value counts as the infimum.
GAP_TOL = 1e-3
#: Gradient norm, relative to the trajectory's initial one, under which a point of a smooth
#: problem counts as stationary (scale-invariant: |x| far out with a tiny gradient is not).
GRAD_TOL = 1e-6
#: Relative change of |x| (and of f) over the last octave under which it counts as settled.
SETTLED_TOL = 1e-4
#: Relative changes below this are rounding and integration noise.
NOISE = 1e-7
#: Escape: the last octave's growth of |x| is at least this share of the window's first.
#: Shrinking increments mean a finite path (convergence to x* like t^-e gives a ratio of
#: 2^(-4e) over the window), so the resolution is e < 0.007: a slower approach is
#: indistinguishable from logarithmic growth within the window.
SUSTAINED = 0.98
#: Escape: the growth exponent of the last octave is at most this multiple of the first's.
ACCELERATION = 1.25
#: The limit of f is unknown when f's decrease per octave, or the change of the successive
#: estimates of the limit, shrinks by less than this ratio.
MAX_RATIO = 0.9
#: The error bar of the limit of f is at least this multiple of the extrapolated rest of the
#: descent: an extrapolation is trusted to within twice what it adds (f - f_inf ~ 1/log t
#: fools any finite window, and this keeps such limits from looking separated from f_star).
EXTRAPOLATION_SAFETY = 2.0
#: Escape needs lambda_min of the Hessian at the last point times t_end >= -SADDLE_TOL. A
#: minimum at infinity is stable across the escape path (lambda_min t is +1/4 along Example
#: 1's escape, +1 along the sigmoid ones), while a saddle at infinity has a direction of
#: negative curvature that expels the trajectory in time ~ 1/|lambda_min|: deep_sigmoid_1d
#: [depth=2] lingers near one from t ~ 2.5 to 330, growing like log t, with lambda_min t ~
#: -0.3 to -0.6. The resolution: an instability that would act only after 1/SADDLE_TOL times
#: the horizon cannot be seen. Dimensionless, so the units of f and x do not matter. Nonsmooth
#: problems have no curvature to read, so their escapes are never claimed by this rule.
SADDLE_TOL = 1e-3

CERTIFICATE_RULE = "certificate"


@dataclass(frozen=True)
class Rule:
    """One row of the rule table: a name and a function of the evidence returning
    ``(mask, labels)``, the rows it decides and their labels (one label or an array)."""

    name: str
    decide: Callable[[dict[str, Any]], tuple[np.ndarray, Any]]


def classify(problem: Any, integrator: Any, trajectories: pd.DataFrame,
             checkpoints: pd.DataFrame, *, certificates: bool = True,
             problems_found: list[str] | None = None) -> pd.DataFrame:
    """Add the outcome columns to a cell's trajectory table.

    Parameters
    ----------
    problem : Problem
    integrator : Integrator
    trajectories, checkpoints : DataFrame
        As produced by :func:`benchsuite.harness.run_cell`.
    certificates : bool
        Let the problem's certificate decide where it speaks (the rule table's ``certificate``
        row). With False, the generic rules alone decide: the outcome equals
        ``generic_outcome``.
    problems_found : list of str, optional
        Plugin errors met while classifying (a certificate that raised or returned a label
        that is no outcome) are appended here as messages.

    Returns
    -------
    DataFrame
        ``trajectories`` with ``outcome``, ``reason`` (the rule that decided, or why nothing
        did), ``generic_outcome`` (the label without certificates), ``certificate`` (the
        certificate's label, "" where it is silent or absent), ``growth_exponent`` (of |x| over
        the last octaves), ``f_limit`` and ``f_limit_err``, ``octaves`` (flow-time octaves
        recorded), ``h_lambda_max``, and ``t_to_<eps>``/``evals_to_<eps>`` for each target.
    """
    out = trajectories.copy()
    batch = len(out)
    if batch == 0:
        return out
    try:
        with np.errstate(all="ignore"):  # NaN and inf are evidence here, not accidents
            return _classified(problem, integrator, out, checkpoints, certificates,
                               problems_found)
    except Exception as exc:  # an unreadable table: say so on every row, never raise
        for column in ("outcome", "generic_outcome"):
            out[column] = pd.Categorical([Outcome.UNDETERMINED] * batch, categories=OUTCOMES)
        out["reason"] = f"undetermined: the classifier failed: {type(exc).__name__}: {exc}"
        out["certificate"] = ""
        return out


def _classified(problem: Any, integrator: Any, out: pd.DataFrame, checkpoints: pd.DataFrame,
                certificates: bool, problems_found: list[str] | None) -> pd.DataFrame:
    batch = len(out)
    if "stop" not in out:
        raise ValueError("the table has no stop column: how each run ended is evidence")
    ev = evidence(problem, integrator, out, checkpoints, found=problems_found)
    generic, reason, rank = _apply(GENERIC_RULES, ev, batch)
    cert = _certificate_labels(problem, ev, problems_found)
    outcome, final_reason = generic.copy(), reason.copy()
    if certificates:
        # the certificate slot comes after the step-limit rule: only rows that no earlier
        # rule decided take the certificate's label
        slot = [r.name for r in GENERIC_RULES].index("step_limit")
        speaks = (cert != "") & (rank > slot)
        outcome[speaks], final_reason[speaks] = cert[speaks], CERTIFICATE_RULE

    wall = ev["stop"] == Stop.WALL_TIME
    out["outcome"] = _outcome_column(outcome)
    out["reason"] = final_reason.astype(str)
    out["generic_outcome"] = _outcome_column(generic)
    out["certificate"] = cert.astype(str)
    # a row cut by the safety net reports how it stopped and nothing else as a finding
    for column, values in (("growth_exponent", ev["growth"]), ("f_limit", ev["f_limit"]),
                           ("f_limit_err", ev["f_limit_err"]), ("octaves", ev["octaves"]),
                           ("h_lambda_max", ev["h_lambda"])):
        out[column] = np.where(wall, np.nan, values)
    for eps, (t_hit, evals_hit) in _targets(checkpoints, batch).items():
        out[f"t_to_{eps:g}"] = np.where(wall, np.nan, t_hit)
        out[f"evals_to_{eps:g}"] = np.where(wall, np.nan, evals_hit)
    return out


def _apply(rules: tuple[Rule, ...], ev: dict[str, Any], batch: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcome, reason and the index of the deciding rule (``len(rules)``: none) per row;
    the first rule that decides a row wins."""
    outcome = np.full(batch, "", dtype=object)
    reason = np.full(batch, "", dtype=object)
    rank = np.full(batch, len(rules))
    for i, rule in enumerate(rules):
        open_ = rank == len(rules)
        if not open_.any():
            break
        mask, labels = rule.decide(ev)
        fresh = np.asarray(mask, dtype=bool) & open_
        labels = np.broadcast_to(np.asarray(labels, dtype=object), (batch,))
        outcome[fresh], reason[fresh], rank[fresh] = labels[fresh], rule.name, i
    rest = rank == len(rules)
    if rest.any():
        outcome[rest] = Outcome.UNDETERMINED
        reason[rest] = _missing(ev)[rest]
    return outcome, reason, rank


def _outcome_column(labels: np.ndarray) -> pd.Categorical:
    """The labels as a categorical over :data:`OUTCOMES` (hashing the few distinct labels
    once: 3x faster than ``pd.Categorical(labels, categories)`` on an object array)."""
    codes, distinct = pd.factorize(labels)
    known = pd.Index(OUTCOMES).get_indexer(distinct)
    return pd.Categorical.from_codes(np.where(codes >= 0, known[codes], -1),
                                     categories=OUTCOMES)


# -- the evidence -------------------------------------------------------------------------------


def evidence(problem: Any, integrator: Any, trajectories: pd.DataFrame,
             checkpoints: pd.DataFrame, found: list[str] | None = None) -> dict[str, Any]:
    """Everything the rules read, as arrays over the trajectories of a cell."""
    batch = len(trajectories)
    f_star = float(problem.f_star)
    def column(name: str, default: Any) -> np.ndarray:
        if name not in trajectories:  # a hand-made table: the rules see no evidence there
            return np.full(batch, default)
        return trajectories[name].to_numpy(dtype=type(default))

    try:
        x = points(trajectories, "x")
        if x.shape != (batch, problem.n):
            raise ValueError(f"x has shape {x.shape}")
    except (KeyError, ValueError):
        x = np.full((batch, problem.n), np.nan)
    ev: dict[str, Any] = {
        "problem": problem,
        "found": found,
        "stop": column("stop", "").astype(str),
        "f": column("f", np.nan),
        "norm": column("norm", np.nan),
        "x": x,
        "f_star": f_star,
        "gap_tol": _gap_tolerance(f_star, column("f0", np.nan)),
    }
    with np.errstate(all="ignore"):
        ev["gap"] = ev["f"] - f_star
        samples = _octave_samples(checkpoints, batch)
        ev.update(samples)
        ev.update(_growth_law(samples["R"]))
        ev["f_limit"], ev["f_limit_err"] = limit_of_f(samples["F"], samples["G"],
                                                      samples["t_end"])
        ev["h_lambda"], ev["limit"] = _step_limit_evidence(problem, integrator, ev)
        ev["curvature"] = _transverse_curvature(problem, ev)
    return ev


def _transverse_curvature(problem: Any, ev: dict[str, Any]) -> np.ndarray:
    """lambda_min of the Hessian at the last point times t_end, for the rows with a stable
    growth law on smooth problems (the only ones the escape rule asks about); NaN elsewhere."""
    curvature = np.full(len(ev["f"]), np.nan)
    rows = ev["steady"] & np.all(np.isfinite(ev["x"]), axis=1)
    if problem.smooth and rows.any():
        try:
            curvature[rows] = lambda_min(problem, ev["x"][rows]) * ev["t_end"][rows]
        except Exception:  # an oracle failing here leaves the escape without this evidence
            pass
    return curvature


def _gap_tolerance(f_star: float, f0: np.ndarray) -> np.ndarray:
    """GAP_TOL relative to the scale of f along each trajectory: 1 + |f_star|, or less for a
    trajectory that started within that of f_star (its own initial gap), so that a function
    scaled by 1e-4 is judged as the unscaled one."""
    base = 1.0 + (abs(f_star) if math.isfinite(f_star) else 0.0)
    with np.errstate(invalid="ignore"):
        own = (abs(f_star) if math.isfinite(f_star) else 0.0) + np.maximum(f0 - f_star, 0.0)
    scale = np.where(np.isfinite(own), np.minimum(base, own), base)
    return GAP_TOL * scale + 1e-12 * base


def _octave_samples(checkpoints: pd.DataFrame, batch: int) -> dict[str, np.ndarray]:
    """R = |x|, F = f, G = |gradient| at t_k = t_end 2^-k (k = 0..OCTAVES), interpolated
    linearly in log t between checkpoints; NaN where the history does not reach back that far.
    Also ``octaves`` (log2 of t_end over the first recorded t > 0), the last gradient norm, and
    ``f_rises``: f went up between consecutive checkpoints within the window."""
    k = OCTAVES + 1
    nan = np.full((batch, k), np.nan)
    result = {"R": nan.copy(), "F": nan.copy(), "G": nan.copy(),
              "octaves": np.zeros(batch), "g_end": np.full(batch, np.nan),
              "t_end": np.zeros(batch), "f_rises": np.zeros(batch, dtype=bool),
              "g0": np.full(batch, np.nan)}
    cp = _checkpoint_columns(checkpoints, batch, ("t", "f", "norm", "grad_norm"))
    if cp is None:
        return result
    first = cp["step"] == 0
    result["g0"][cp["traj"][first]] = cp["grad_norm"][first]
    later = cp["t"] > 0
    if not later.any():
        return result
    if not later.all():
        cp = {name: column[later] for name, column in cp.items() if name != "step"}
    traj = cp["traj"]
    # position of each checkpoint within its trajectory (traj is sorted)
    starts = np.flatnonzero(np.append(True, traj[1:] != traj[:-1]))
    slot = np.arange(traj.size) - np.repeat(starts, np.diff(np.append(starts, traj.size)))
    width = int(slot.max()) + 1
    padded = {}
    full = traj.size == batch * width  # every trajectory has every slot: a reshape
    flat = None if full else traj * width + slot
    for name, column in (("t", "t"), ("f", "f"), ("R", "norm"), ("G", "grad_norm")):
        if full:
            padded[name] = cp[column].reshape(batch, width)
            continue
        arr = np.full(batch * width, np.nan)
        arr[flat] = cp[column]
        padded[name] = arr.reshape(batch, width)
    count = np.bincount(traj, minlength=batch)
    has = count > 0
    last = np.maximum(count - 1, 0)
    rows = np.arange(batch)
    t = padded["t"]
    t_end = np.where(has, t[rows, last], 0.0)
    t_first = np.where(has, t[:, 0], np.nan)
    result["t_end"] = t_end
    result["octaves"] = np.where(has & (t_end > 0), np.log2(t_end / t_first), 0.0)
    result["g_end"] = np.where(has, padded["G"][rows, last], np.nan)
    log_t = np.log(np.where(np.isfinite(t) & (t > 0), t, np.inf))
    # gathers by flat index: one index array per octave instead of (rows, column) pairs
    base = rows * width
    flat_log_t = log_t.ravel()
    sources = {name: padded[source].ravel() for name, source in (("R", "R"), ("F", "f"),
                                                                   ("G", "G"))}
    for j in range(k):
        target = np.log(t_end) - j * math.log(2.0)
        below = np.sum(log_t <= target[:, None] + 1e-12, axis=1) - 1  # last checkpoint <= t_k
        lo = np.clip(below, 0, None)
        lo_at, hi_at = base + lo, base + np.minimum(lo + 1, last)
        log_lo = flat_log_t[lo_at]
        span = flat_log_t[hi_at] - log_lo
        w = np.where(span > 0, (target - log_lo) / np.where(span > 0, span, 1.0), 0.0)
        w = np.clip(w, 0.0, 1.0)
        ok = has & (below >= 0)
        for name, v in sources.items():
            v_lo = v[lo_at]
            result[name][:, j] = np.where(ok, v_lo + w * (v[hi_at] - v_lo), np.nan)
    # f rising between consecutive checkpoints inside the window (the flow never does that)
    window = t_end / 2.0**OCTAVES
    f = padded["f"]
    inside = (t[:, 1:] >= window[:, None]) & np.isfinite(f[:, 1:]) & np.isfinite(f[:, :-1])
    rise = (f[:, 1:] - f[:, :-1]) > 1e-12 * (1.0 + np.abs(f[:, :-1]))
    result["f_rises"] = np.any(inside & rise, axis=1)
    return result


def _growth_law(R: np.ndarray) -> dict[str, np.ndarray]:
    """Whether |x| follows a stable growth law over the window (see the module docstring)."""
    k = R.shape[1] - 1
    dR = R[:, :-1] - R[:, 1:]  # growth over each octave, most recent first
    p = np.log2(R[:, :-1] / R[:, 1:])
    covered = np.all(np.isfinite(R), axis=1)
    # growth below the settle tolerance is noise (an integrator drifting along a manifold of
    # minimizers), not growth
    rising = covered & np.all(dR > SETTLED_TOL * (1.0 + np.abs(R[:, :-1])), axis=1)
    sustained = dR[:, 0] >= SUSTAINED * dR[:, -1]
    steady = p[:, 0] <= ACCELERATION * p[:, -1]
    growth = np.where(covered, np.log2(R[:, 0] / R[:, -1]) / k, np.nan)
    # finite length (catalog F.3): the movement of |x| shrinks geometrically, octave by octave
    step = np.abs(dR)
    shrinking = covered & np.all(step[:, :-1] <= MAX_RATIO * step[:, 1:], axis=1)
    return {"covered": covered, "rising": rising, "sustained": rising & sustained,
            "steady": rising & sustained & steady, "growth": growth, "shrinking": shrinking}


def limit_of_f(F: np.ndarray, G: np.ndarray, t_end: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The limit of f with an error bar that covers two independent estimates.

    Aitken's extrapolation of f (:func:`aitken_limit`) sees only the values; along a flow the
    rest of the descent is also f(t) - f_inf = int_t^inf |grad f|^2 ([JL] footnote 4), which
    with the gradient's decay over the last octave, |g| ~ t^-a (a > 1/2), is
    |g(t)|^2 t / (2a - 1). A transient that ends before its slow tail shows up fools the first
    and not the second, so the error bar is widened to cover their difference, and the limit is
    unknown (infinite error) where the gradient does not decay fast enough for a finite rest.
    """
    L, err = aitken_limit(F)
    with np.errstate(all="ignore"):
        a = np.log2(G[:, 1] / G[:, 0])
        rest = np.where(2.0 * a - 1.0 > 0.05, G[:, 0] ** 2 * t_end / (2.0 * a - 1.0), np.inf)
        rest = np.where(G[:, 0] == 0.0, 0.0, rest)
        from_gradient = F[:, 0] - rest
        err = np.maximum(err, np.abs(L - from_gradient))
        err = np.maximum(err, EXTRAPOLATION_SAFETY * (F[:, 0] - L))
    return L, np.where(np.isfinite(L), err, np.nan)


def aitken_limit(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Limit of f and its error bar from values at octave times (most recent first; at least
    five, for three estimates).

    Aitken's delta-squared on consecutive triples gives estimates L_0 (latest), L_1, L_2;
    err = |L_0 - L_1| / (1 - s), s = |L_0 - L_1| / |L_1 - L_2|, the remaining error of
    geometrically converging estimates. Where they do not converge geometrically
    (s > MAX_RATIO), err = max(|L_0 - L_1|, |L_1 - L_2|) / (1 - MAX_RATIO). NaN where f does not
    decrease over every octave, or its decrease does not shrink geometrically.
    """
    with np.errstate(all="ignore"):
        D = F[:, 1:] - F[:, :-1]  # decrease over each octave, most recent first
        rho = D[:, :-1] / D[:, 1:]
        estimates = F[:, :-2] - D[:, :-1] * rho / (1.0 - rho)
        valid = np.all(D > 0, axis=1) & np.all((rho > 0) & (rho < MAX_RATIO), axis=1)
        L = np.where(valid, estimates[:, 0], np.nan)
        change = np.abs(estimates[:, 0] - estimates[:, 1])
        previous = np.abs(estimates[:, 1] - estimates[:, 2])
        s = np.where(previous > 0, change / previous, 0.0)
        change = np.maximum(change, np.where(s > MAX_RATIO, previous, 0.0))
        floor = 1e-9 * (1.0 + np.abs(F[:, 0]))
        err = change / (1.0 - np.minimum(s, MAX_RATIO)) + floor
    return L, np.where(valid, err, np.nan)


def _step_limit_evidence(problem: Any, integrator: Any, ev: dict[str, Any]
                         ) -> tuple[np.ndarray, float]:
    """h lambda_max at the last point, for integrators that declare a fixed step on smooth
    problems (NaN elsewhere), and the method's stability limit."""
    batch = len(ev["f"])
    h_lambda = np.full(batch, np.nan)
    try:  # not getattr with a default: it would swallow an AttributeError of a broken property
        h = integrator.explicit_step
        limit = float(integrator.stability_limit)
    except Exception as exc:  # a broken declaration: no step-limit evidence, and say so
        _report(ev.get("found"), f"integrator {getattr(integrator, 'name', integrator)!r}: its "
                f"fixed-step declaration raised {type(exc).__name__}: {exc}")
        return h_lambda, 2.0
    if h is None or not problem.smooth:
        return h_lambda, limit
    live = _judged(ev) & ~_near_infimum(ev)
    if live.any():
        try:
            h_lambda[live] = float(h) * lambda_max(problem, ev["x"][live])
        except Exception:  # an oracle that fails here leaves the test without evidence
            pass
    return h_lambda, limit


#: Up to this dimension lambda_min comes from the whole Hessian (n batched products); above,
#: there is no curvature evidence (a power iteration's Rayleigh quotient was 100 times off on
#: a near-degenerate cluster, on the unsafe side).
DENSE_MAX = 1024
#: Hessian entries held at once when lambda_min is computed (rows are taken in chunks).
DENSE_ENTRIES = 2**24
#: Up to this dimension lambda_max comes from the whole Hessian too: its 2n gradient calls and
#: a small eigvalsh per row cost less than the power iteration's 3 POWER_ITERATIONS + 2 calls
#: and its vector arithmetic (measured on the catalog: 4 to 20 times less up to n = 9, half up
#: to n = 18, even at n = 30), and give lambda_max itself where a Rayleigh quotient stays below
#: it until the iteration has converged (by over 1e-3 on 2 to 17% of the rows at n = 14 to 18).
DENSE_LAMBDA_MAX = 24


def lambda_min(problem: Any, x: np.ndarray) -> np.ndarray:
    """Smallest Hessian eigenvalue at each row of x, batched; NaN above ``DENSE_MAX``.

    Exactly from the finite-difference Hessian (:func:`_hessian_eigenvalues`): an iterative
    estimate errs towards larger values, the unsafe side for the escape rule.
    """
    if x.shape[1] > DENSE_MAX:
        return np.full(x.shape[0], np.nan)
    return _hessian_eigenvalues(problem, x, 0)


def _hessian_eigenvalues(problem: Any, x: np.ndarray, which: int) -> np.ndarray:
    """Eigenvalue ``which`` (0: the smallest, -1: the largest) of the finite-difference Hessian
    at each row of x (one batched gradient difference per coordinate, then ``eigvalsh`` on the
    stack, over chunks of rows); NaN where the Hessian is not finite."""
    batch, n = x.shape
    out = np.full(batch, np.nan)
    chunk = max(1, DENSE_ENTRIES // (n * n))
    for start in range(0, batch, chunk):
        rows = x[start:start + chunk]
        eps = 1e-5 * (1.0 + np.linalg.norm(rows, axis=1, keepdims=True))
        H = np.empty((rows.shape[0], n, n))
        with np.errstate(all="ignore"):
            for j in range(n):  # a loop over coordinates, each a batched product
                e = np.zeros((1, n))
                e[0, j] = 1.0
                H[:, :, j] = np.asarray(problem.first_order(rows + eps * e)
                                        - problem.first_order(rows - eps * e)) / (2 * eps)
            H = 0.5 * (H + np.swapaxes(H, 1, 2))
            finite = np.all(np.isfinite(H), axis=(1, 2))
            if finite.any():
                out[start:start + chunk][finite] = np.linalg.eigvalsh(H[finite])[:, which]
    return out


def lambda_max(problem: Any, x: np.ndarray, iterations: int = POWER_ITERATIONS) -> np.ndarray:
    """Largest (algebraic) Hessian eigenvalue at each row of x, batched.

    Up to ``DENSE_LAMBDA_MAX`` coordinates, exactly from the finite-difference Hessian, as
    :func:`lambda_min`. Above, by power iteration on finite-difference Hessian-vector
    products, which finds the eigenvalue of largest *magnitude*, which at a saddle with a
    symmetric spectrum (Example 1's origin: +-3.24) oscillates and says nothing. So a first
    pass estimates rho = max |lambda|, and a second iterates on H + rho I, whose dominant
    eigenvalue is lambda_max + rho (``iterations`` of it, half as many for the first).
    """
    if x.shape[1] <= DENSE_LAMBDA_MAX:
        return _hessian_eigenvalues(problem, x, -1)
    # one start vector for every row: a row's estimate must not depend on its batch-mates
    start = np.random.default_rng(0).standard_normal((2, x.shape[1]))
    eps = 1e-5 * (1.0 + np.linalg.norm(x, axis=1, keepdims=True))

    def hvp(v: np.ndarray) -> np.ndarray:
        return np.asarray(problem.first_order(x + eps * v) - problem.first_order(x - eps * v)) / (
            2 * eps)

    def normalized(v: np.ndarray) -> np.ndarray:
        size = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(size > 0, size, 1.0)

    with np.errstate(all="ignore"):
        v = normalized(np.broadcast_to(start[0], x.shape))
        rho = np.zeros((x.shape[0], 1))
        for _ in range(iterations // 2):
            hv = hvp(v)
            rho = np.linalg.norm(hv, axis=1, keepdims=True)
            v = normalized(hv)
        v = normalized(np.broadcast_to(start[1], x.shape))
        for _ in range(iterations):
            v = normalized(hvp(v) + rho * v)
        return np.sum(v * hvp(v), axis=1)


# -- the rules ------------------------------------------------------------------------------------


def _budget_stop(ev: dict[str, Any]) -> np.ndarray:
    """Rows that ran until a deterministic budget ended them."""
    return np.isin(ev["stop"], [str(s) for s in DETERMINISTIC_BUDGETS])


def _judged(ev: dict[str, Any]) -> np.ndarray:
    """Rows whose last point can be examined (curvature, certificate): ended by a budget, with
    a finite point and value."""
    return (_budget_stop(ev) & np.isfinite(ev["f"])
            & np.all(np.isfinite(ev["x"]), axis=1))


def _near_infimum(ev: dict[str, Any]) -> np.ndarray:
    return ev["gap"] <= ev["gap_tol"]


def _settled(ev: dict[str, Any]) -> np.ndarray:
    """|x| moved less than SETTLED_TOL over the last octave, and no more than over the one
    before (a slow escape far out moves little, but more and more)."""
    R = ev["R"]
    last, before = np.abs(R[:, 0] - R[:, 1]), np.abs(R[:, 1] - R[:, 2])
    small = last <= SETTLED_TOL * (1.0 + np.abs(R[:, 0]))
    return small & (last <= np.maximum(before, NOISE * (1.0 + np.abs(R[:, 0]))))


def _stationary(ev: dict[str, Any]) -> np.ndarray:
    F = ev["F"]
    settled = _settled(ev)
    f_settled = np.abs(F[:, 0] - F[:, 1]) <= SETTLED_TOL * (1e-4 + np.abs(F[:, 0]))
    still = settled & f_settled
    if ev["problem"].smooth:
        # a vanished gradient, or settled at a listed critical value with a gradient that keeps
        # decaying geometrically (a degenerate minimum, approached slowly)
        G = ev["G"]
        decaying = np.all(G[:, :2] <= MAX_RATIO * G[:, 1:3], axis=1)
        listed = _at_known_critical_value(ev, listed_only=True) & decaying
        still &= _vanished_gradient(ev) | listed
    return still


def _vanished_gradient(ev: dict[str, Any]) -> np.ndarray:
    return ev["g_end"] <= GRAD_TOL * ev["g0"] + 1e-300


def _at_known_critical_value(ev: dict[str, Any], listed_only: bool = False) -> np.ndarray:
    """f is one of the problem's critical values; where the list is not complete, any value
    passes unless ``listed_only``."""
    problem = ev["problem"]
    if not problem.critical_values:
        return np.full(len(ev["f"]), not listed_only)
    if not (problem.critical_values_complete or listed_only):
        return np.ones(len(ev["f"]), dtype=bool)
    crit = np.asarray(problem.critical_values, dtype=float)
    tol = GAP_TOL * (1.0 + np.abs(crit))
    return np.any(np.abs(ev["f"][:, None] - crit[None, :]) <= tol[None, :], axis=1)


def _rule_step_limit(ev: dict[str, Any]) -> tuple[np.ndarray, str]:
    hl, limit = ev["h_lambda"], ev["limit"]
    moving = ~_vanished_gradient(ev)
    beyond = hl >= limit * (1.0 - LIMIT_RTOL)
    stalled = (hl >= STALL_FRACTION * limit) & ev["f_rises"] & moving
    return (beyond | stalled) & ~_near_infimum(ev), Outcome.STEP_LIMITED


def _limit_at_critical_value(ev: dict[str, Any], identified: bool = False) -> np.ndarray:
    """The limit of f, within its error bar, is one of the problem's listed critical values
    above the infimum.

    ``identified``: moreover the bar is finite, excludes the infimum, and contains no other
    listed critical value, so that it names that one value (the evidence a confident
    ``converged_spurious`` needs: an infinite bar "matches" every value); and that value is
    not above the last f, since f only decreases along the flow.
    """
    crit = np.asarray(ev["problem"].critical_values, dtype=float)
    if crit.size == 0:
        return np.zeros(len(ev["f"]), dtype=bool)
    above = crit[None, :] > ev["f_star"] + ev["gap_tol"][:, None]
    reach = ev["f_limit_err"][:, None] + GAP_TOL * (1.0 + np.abs(crit[None, :]))
    near = np.abs(ev["f_limit"][:, None] - crit[None, :]) <= reach
    found = np.any(near & above, axis=1)
    if not identified:
        return found
    limit, err = ev["f_limit"], ev["f_limit_err"]
    with np.errstate(invalid="ignore"):
        apart = np.abs(limit - ev["f_star"]) > err + ev["gap_tol"]  # False for NaN/inf
        reachable = crit[None, :] <= ev["f"][:, None] + ev["gap_tol"][:, None]
    unique = (near.sum(axis=1) == 1) & np.any(near & above & reachable, axis=1)
    return found & np.isfinite(limit) & np.isfinite(err) & apart & unique


def _rule_critical_approach(ev: dict[str, Any]) -> tuple[np.ndarray, str]:
    # a slow approach to a degenerate critical point (Remark 2's flat inflections): finite
    # length, and f tending to a critical value the problem lists, singled out by its bar
    return (ev["shrinking"] & _limit_at_critical_value(ev, identified=True),
            Outcome.CONVERGED_SPURIOUS)


def _rule_escape(ev: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    L, err, f_star, tol = ev["f_limit"], ev["f_limit_err"], ev["f_star"], ev["gap_tol"]
    spurious = (L - err > f_star + tol) & ~_limit_at_critical_value(ev)
    to_infimum = np.abs(L - f_star) + err <= tol
    labels = np.where(spurious, str(Outcome.ESCAPE_SPURIOUS), str(Outcome.ESCAPE_GLOBAL))
    return ev["steady"] & _transversally_stable(ev) & (spurious | to_infimum), labels


def _transversally_stable(ev: dict[str, Any]) -> np.ndarray:
    return ev["curvature"] >= -SADDLE_TOL  # NaN (nonsmooth, too large, failed): no evidence


GENERIC_RULES: tuple[Rule, ...] = (
    Rule("fault", lambda ev: (np.isin(ev["stop"], [str(s) for s in FAULTS]), Outcome.FAILED)),
    Rule("safety_net", lambda ev: (ev["stop"] == Stop.WALL_TIME, Outcome.UNDETERMINED)),
    Rule("nonfinite", lambda ev: (ev["stop"] == Stop.NONFINITE, Outcome.DIVERGED)),
    Rule("blowup", lambda ev: ((ev["norm"] > BLOWUP_NORM) | (ev["f"] < -BLOWUP_VALUE)
                               | (_budget_stop(ev)
                                  & ~(np.isfinite(ev["f"]) & np.isfinite(ev["norm"]))),
                               Outcome.DIVERGED)),
    Rule("step_limit", _rule_step_limit),
    Rule("at_infimum", lambda ev: (_near_infimum(ev) & bool(ev["problem"].attained)
                                   & (~ev["rising"] | ev["shrinking"]),
                                   Outcome.CONVERGED_GLOBAL)),
    Rule("unattained", lambda ev: (_near_infimum(ev) & (not ev["problem"].attained)
                                   & ev["covered"] & ~_settled(ev), Outcome.ESCAPE_GLOBAL)),
    Rule("stationary", lambda ev: (_stationary(ev) & ~_near_infimum(ev)
                                   & _at_known_critical_value(ev), Outcome.CONVERGED_SPURIOUS)),
    Rule("critical_approach", _rule_critical_approach),
    Rule("escape", _rule_escape),
)


def _missing(ev: dict[str, Any]) -> np.ndarray:
    """For rows no rule decided: which evidence was missing, as a short reason."""
    batch = len(ev["f"])
    why = np.full(batch, "undetermined: |x| neither settled nor growing steadily", dtype=object)
    L, err = ev["f_limit"], ev["f_limit_err"]
    stationary = _stationary(ev)
    cases = [  # later entries win
        (ev["rising"] & ~ev["sustained"], "undetermined: the growth of |x| is slowing down"),
        (ev["sustained"] & ~ev["steady"],
         "undetermined: the growth of |x| accelerates (a transient, e.g. a slow pass by a saddle)"),
        (ev["steady"] & ~np.isfinite(L), "undetermined: f has no extrapolable limit yet"),
        (ev["steady"] & np.isfinite(L) & ~np.isfinite(err),
         "undetermined: the estimates of the limit of f do not settle"),
        (ev["steady"] & np.isfinite(L) & np.isfinite(err),
         "undetermined: the limit of f is not separated from f_star by its error bar"),
        (ev["steady"] & (L + err < ev["f_star"] - ev["gap_tol"]),
         "undetermined: the extrapolated limit of f lies below f_star (no evidence)"),
        (ev["steady"] & _limit_at_critical_value(ev),
         "undetermined: f tends to a critical value: a slow approach or an escape"),
        (ev["steady"] & (ev["curvature"] < -SADDLE_TOL),
         "undetermined: a direction of negative curvature at the last point (a saddle at "
         "infinity: the growth may be a slow pass)"),
        (ev["steady"] & np.isnan(ev["curvature"]),
         "undetermined: no curvature evidence (nonsmooth, or too many dimensions) to tell a "
         "minimum at infinity from a saddle"),
        (stationary & ~_near_infimum(ev) & ~_at_known_critical_value(ev),
         "undetermined: stationary at a value that is none of the problem's critical values"),
        (~ev["covered"] & ~stationary,
         f"undetermined: fewer than {OCTAVES} octaves of flow time recorded"),
    ]
    for mask, text in cases:
        why[np.asarray(mask, dtype=bool)] = text
    return why


def _certificate_labels(problem: Any, ev: dict[str, Any], found: list[str] | None
                        ) -> np.ndarray:
    """The certificate's label per row ("" where silent), on the rows it may judge: finite,
    not stopped by a fault, a non-finite value or the safety net."""
    batch = len(ev["f"])
    labels = np.full(batch, "", dtype=object)
    if problem.certificate is None:
        return labels
    judged = np.flatnonzero(_judged(ev))
    if judged.size == 0:
        return labels
    try:
        said = np.asarray(problem.certificate(ev["x"][judged], ev["f"][judged]), dtype=object)
        if said.shape != (judged.size,):
            raise ValueError(f"returned shape {said.shape}, expected ({judged.size},)")
    except (Exception, SystemExit) as exc:
        _report(found, f"problem {problem.name!r}: its certificate raised "
                       f"{type(exc).__name__}: {exc}; the generic rules decided instead")
        return labels
    said = said.astype(str).astype(object)
    allowed = ["", *sorted(str(o) for o in CONFIDENT)]
    known = np.isin(said, allowed)
    if not known.all():
        bad = sorted(set(said[~known]))
        _report(found, f"problem {problem.name!r}: its certificate returned {bad}, which is no "
                       f"outcome a theorem can prove (allowed: {', '.join(allowed[1:])} or "
                       "\"\"); the generic rules decided those rows instead")
        said = np.where(known, said, "")
    labels[judged] = said
    return labels


def _report(found: list[str] | None, message: str) -> None:
    if found is None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    else:
        found.append(message)


def _targets(checkpoints: pd.DataFrame, batch: int) -> dict[float, tuple[np.ndarray, ...]]:
    """First recorded flow time and oracle calls with f - f_star <= eps, per trajectory."""
    result = {eps: (np.full(batch, np.nan), np.full(batch, np.nan)) for eps in TARGETS}
    cp = _checkpoint_columns(checkpoints, batch, ("t", "f_gap", "nfev", "ngev", "nprox"))
    if cp is None:
        return result
    evals = cp["nfev"] + cp["ngev"] + cp["nprox"]
    gap, traj, t = cp["f_gap"], cp["traj"], cp["t"]
    for eps in TARGETS:
        with np.errstate(invalid="ignore"):
            hit = gap <= eps
        t_hit, e_hit = result[eps]
        rows = np.flatnonzero(hit)
        if rows.size:  # traj is sorted: a trajectory's first hit is where traj changes
            rows = rows[np.append(True, traj[rows[1:]] != traj[rows[:-1]])]
            t_hit[traj[rows]], e_hit[traj[rows]] = t[rows], evals[rows]
    return result


def _checkpoint_columns(checkpoints: pd.DataFrame | None, batch: int, names: tuple[str, ...]
                        ) -> dict[str, np.ndarray] | None:
    """``traj``, ``step`` and the float columns ``names`` of a checkpoint table as numpy
    arrays, rows of trajectories 0..batch-1 only, ordered by (traj, step); None where the table
    lacks a column.

    Only the columns read are converted and masked: filtering the whole table (16 columns of
    580 000 rows for a 20 000-trajectory cell) cost more than the classification itself.
    """
    if checkpoints is None or checkpoints.empty or not {"traj", "step", *names} <= set(
            checkpoints.columns):
        return None
    traj = checkpoints["traj"].to_numpy(dtype=np.int64)
    step = checkpoints["step"].to_numpy(dtype=np.int64)
    keep = (traj >= 0) & (traj < batch)
    order: np.ndarray | slice = slice(None)
    if not keep.all():
        order = np.flatnonzero(keep)
        traj, step = traj[order], step[order]
    dt, ds = np.diff(traj), np.diff(step)
    if not np.all((dt > 0) | ((dt == 0) & (ds > 0))):  # the harness's tables come sorted
        resort = np.lexsort((step, traj))
        order = resort if isinstance(order, slice) else order[resort]
        traj, step = traj[resort], step[resort]
    columns = {"traj": traj, "step": step}
    for name in names:
        columns[name] = checkpoints[name].to_numpy(dtype=float)[order]
    return columns
