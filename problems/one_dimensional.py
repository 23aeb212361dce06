"""One-dimensional counterexamples of [JL]: which assumption of Theorem 1 does what.

P03 (Remark 3) needs bounded trajectories; P04 (Remark 2) needs finitely many critical values;
P14 (Section 2.3) needs bounded below; P15 (Remark 1) is a valley that is not a setwise local
minimum. Every oracle is written so that large |x| never overflows and values near the minimum
keep full relative precision.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from benchsuite import Problem, Theory, Verdict, hookimpl, uniform_box
from benchsuite.arrays import namespace
from benchsuite_problems._prox import prox_1d

# -- P03 ------------------------------------------------------------------------------------

#: The two global maxima of Remark 3's f: +-sqrt(1 + sqrt 2), value (1 + sqrt 2)/2.
REMARK3_CRITICAL_POINT = math.sqrt(1.0 + math.sqrt(2.0))


def _remark3_f(X):
    # |x| <= 1: u (1 + u)/(1 + u^2) with u = x^2, exact near the minimum at 0.
    # |x| > 1: 1 + (v - v^2)/(1 + v^2) with v = 1/x^2, so nothing overflows, even at 1e300.
    xp = namespace(X)
    a = xp.abs(X[:, 0])
    u = xp.minimum(a, 1.0) ** 2
    v = (1.0 / xp.maximum(a, 1.0)) ** 2
    return xp.where(a <= 1.0, u * (1.0 + u) / (1.0 + u * u), 1.0 + (v - v * v) / (1.0 + v * v))


def _remark3_grad(X):
    # f' = -2x (u^2 - 2u - 1)/(u^2 + 1)^2; for |x| > 1 divide through by u^4 (r = 1/x, v = r^2)
    xp = namespace(X)
    x = X[:, 0]
    inside = xp.abs(x) <= 1.0
    xi = xp.where(inside, x, 0.0)
    u = xi * xi
    near = -2.0 * xi * (u * u - 2.0 * u - 1.0) / (u * u + 1.0) ** 2
    r = 1.0 / xp.where(inside, 2.0, x)
    v = r * r
    far = -2.0 * (v * r) * (1.0 - 2.0 * v - v * v) / (1.0 + v * v) ** 2
    return xp.reshape(xp.where(inside, near, far), (-1, 1))


def remark3_g(x: np.ndarray) -> np.ndarray:
    """The separated-variables primitive of Remark 3: g(x(t)) = 2t + g(x0) for x > 1.5538."""
    s2 = math.sqrt(2.0)
    return (x**4 / 4 + x**2 + (2 + s2) * np.log(x**2 - s2 - 1) + (2 - s2) * np.log(x**2 + s2 - 1)
            - np.log(x))


def _remark3_certificate(X, f):
    # beyond the global maxima +-sqrt(1 + sqrt 2) the flow runs off to infinity with f -> 1
    return np.where(np.abs(X[:, 0]) > REMARK3_CRITICAL_POINT, "escape_spurious", "")


def remark3_rational_1d() -> Problem:
    """[JL] Remark 3: f(x) = x^2 (1 + x^2)/(1 + x^4)."""
    f = _remark3_f
    return Problem(
        name="remark3_rational_1d",
        n=1,
        f=f,
        grad=_remark3_grad,
        prox=prox_1d(f, 0.0),
        certificate=_remark3_certificate,
        sample=uniform_box(-3.0, 3.0, 1),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=(0.0, (1.0 + math.sqrt(2.0)) / 2.0),
        critical_values_complete=True,
        description=(
            "x^2(1+x^2)/(1+x^4) (Remark 3): no spurious local minimum, but trajectories from "
            "|x0| > 1.5538 escape like (8t)^(1/4) with f -> 1 > 0"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.YES,
            source="[JL] Remark 3 (p. 13-14); slides 'Main result - a closer look'",
            note="Certificate: |x| > sqrt(1 + sqrt 2) = 1.5538 means escape_spurious (f -> 1).",
        ),
    )


# -- P04 ------------------------------------------------------------------------------------


def _remark2_parts(X):
    """For x >= 0: k with x in [2k - 1, 2k + 1] and d = x - 2k in [-1, 1]."""
    xp = namespace(X)
    x = X[:, 0]
    xpos = xp.maximum(x, 0.0)
    k = xp.round(xpos / 2.0)
    d = xpos - 2.0 * k
    return xp, x, k, d


def _remark2_f(X):
    xp, x, k, d = _remark2_parts(X)
    # 2^(-k) |d|^(2^(k+1)) underflows to 0 for large k: the landscape flattens there (catalog
    # pitfall P04.3), which is the true value to double precision.
    power = xp.pow(xp.abs(d), xp.pow(2.0, k + 1.0))
    scale = xp.pow(2.0, -k)
    right = xp.where(d >= 0.0, -scale * power, scale * power) - 3.0 * (1.0 - scale)
    xm = xp.minimum(x, 0.0)
    return xp.where(x >= 0.0, right, xp.where(xm <= -2.0, (xm + 4.0) ** 2 - 8.0, -xm * xm))


def _remark2_grad(X):
    xp, x, k, d = _remark2_parts(X)
    right = -2.0 * xp.pow(xp.abs(d), xp.pow(2.0, k + 1.0) - 1.0)
    xm = xp.minimum(x, 0.0)
    g = xp.where(x >= 0.0, right, xp.where(xm <= -2.0, 2.0 * (xm + 4.0), -2.0 * xm))
    return xp.reshape(g, (-1, 1))


def remark2_infinite_critvals_1d() -> Problem:
    """[JL] Remark 2 and Figure 4: C^1, infinitely many critical values accumulating at -3."""
    f = _remark2_f
    critical = (-8.0, 0.0, *(-3.0 * (1.0 - 2.0**-k) for k in range(1, 41)))
    return Problem(
        name="remark2_infinite_critvals_1d",
        n=1,
        f=f,
        grad=_remark2_grad,
        prox=prox_1d(f, -8.0),
        sample=uniform_box(-7.0, 7.0, 1),
        f_star=-8.0,
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=tuple(sorted(critical)),
        description=(
            "Piecewise polynomial of Remark 2: bounded trajectories, but infinitely many "
            "critical values (-3(1 - 2^-k) at x = 2k) and [a, inf) is a spurious minimum at "
            "infinity"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.YES,
            source="[JL] Remark 2, Figure 4; slides 'Main result - a closer look'",
            note=(
                "x0 < 0 goes to -4; 2k < x0 <= 2k+2 goes to the flat inflection point 2k+2, "
                "sublinearly ((4t)^(-1/2) for k = 0): compare f with the critical values."
            ),
        ),
    )


# -- P14 ------------------------------------------------------------------------------------


def _cubic_f(X):
    return -(X[:, 0] ** 3) / 3.0


def _cubic_grad(X):
    return -(X * X)


def cubic_blowup_1d() -> Problem:
    """[JL] Section 2.3: f(x) = -x^3/3, not bounded below; the flow blows up at t = 1/x0."""
    return Problem(
        name="cubic_blowup_1d",
        n=1,
        f=_cubic_f,
        grad=_cubic_grad,
        sample=uniform_box(0.5, 2.0, 1),
        f_star=-math.inf,
        attained=False,
        smooth=True,
        coercive=False,
        role="negative control",
        description=(
            "-x^3/3, the negative control: not bounded below, x(t) = x0/(1 - x0 t) blows up "
            "in finite time; every integrator must end in failure, never in escape"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NOT_APPLICABLE,
            spurious_minima_at_infinity=Verdict.NOT_APPLICABLE,
            source="[JL] Section 2.3; slides 'Subgradient trajectory may not exist'",
            note="No prox exists (the prox objective is unbounded below).",
        ),
    )


# -- P15 ------------------------------------------------------------------------------------


def _oscillatory_f(X):
    xp = namespace(X)
    x = X[:, 0]
    xs = xp.where(x > 0.0, x, 1.0)  # keeps 1/x finite where the branch is not used
    return xp.where(x > 0.0, xs * xs * xp.sin(1.0 / xs), 0.0)


def _oscillatory_subgrad(X):
    xp = namespace(X)
    x = X[:, 0]
    xs = xp.where(x > 0.0, x, 1.0)
    g = 2.0 * xs * xp.sin(1.0 / xs) - xp.cos(1.0 / xs)
    # at 0 the Clarke subdifferential is [-1, 1]: its minimal-norm element is 0
    return xp.reshape(xp.where(x > 0.0, g, 0.0), (-1, 1))


def _oscillatory_minimum() -> tuple[float, float]:
    """The global minimum, the largest positive critical point (catalog: 0.2339300, -0.04957)."""
    res = minimize_scalar(lambda x: x * x * math.sin(1.0 / x), bounds=(0.15, 0.35),
                          method="bounded", options={"xatol": 1e-14})
    return float(res.x), float(res.fun)


def remark1_oscillatory_1d() -> Problem:
    """[JL] Remark 1: f = x^2 sin(1/x) for x > 0, 0 for x <= 0."""
    _, f_star = _oscillatory_minimum()
    f = _oscillatory_f
    return Problem(
        name="remark1_oscillatory_1d",
        n=1,
        f=f,
        subgrad=_oscillatory_subgrad,
        prox=prox_1d(f, f_star),
        sample=uniform_box(-1.0, 1.0, 1),
        f_star=f_star,
        attained=True,
        smooth=False,
        coercive=False,
        description=(
            "x^2 sin(1/x) for x > 0, 0 for x <= 0 (Remark 1): differentiable but not C^1, "
            "infinitely many critical values accumulating at 0, flat spurious minima x < 0"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.YES,
            spurious_minima_at_infinity=Verdict.NOT_APPLICABLE,
            source="[JL] Remark 1",
            note="Global minimum -0.0495666 at x = 0.2339300; below x ~ 1e-3 the oscillation "
                 "is unresolvable in floating point.",
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [remark3_rational_1d(), remark2_infinite_critvals_1d(), cubic_blowup_1d(),
            remark1_oscillatory_1d()]
