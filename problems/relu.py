"""[JL] Figure 2 (P05): one ReLU unit, f(x1, x2) = (x2 max(x1, 0) - 1)^2.

Every point with x1 <= 0 is Clarke-critical with f = 1 (a flat, spurious region), and
trajectories are bounded: a trajectory that reaches x1 = 0 stops there.
"""

from __future__ import annotations

import numpy as np

from benchsuite import Problem, Theory, Verdict, hookimpl, uniform_box
from benchsuite.arrays import from_columns, namespace
from benchsuite_problems._prox import minimize_1d


def _f(X):
    xp = namespace(X)
    r = X[:, 1] * xp.maximum(X[:, 0], 0.0) - 1.0
    return r * r


def _subgrad(X):
    # x1 > 0: the gradient; x1 < 0: 0; x1 = 0: the Clarke set is {(-2 x2 theta, 0)}, theta in
    # [0, 1], whose minimal-norm element is 0.
    xp = namespace(X)
    x1, x2 = X[:, 0], X[:, 1]
    r = x1 * x2 - 1.0
    active = x1 > 0.0
    return from_columns(xp, [xp.where(active, 2.0 * r * x2, 0.0),
                             xp.where(active, 2.0 * r * x1, 0.0)])


def _prox(X, tau):
    """Exact prox: the better of the minimizers over {x1 <= 0} (where f = 1) and {x1 >= 0}.

    On {a >= 0} the optimal b for a given a is (x2 + 2 tau a)/(1 + 2 tau a^2), leaving a 1-D
    global minimization over a in [0, x1 + R], R = sqrt(2 tau f(x)) (no prox point is farther).
    """
    xp = namespace(X)
    x1, x2 = X[:, 0], X[:, 1]
    flat_a = xp.minimum(x1, 0.0)
    flat_value = 1.0 + (x1 - flat_a) ** 2 / (2.0 * tau)
    radius = xp.sqrt(2.0 * tau * _f(X)) + 1e-12
    lo = xp.maximum(x1 - radius, 0.0)
    hi = xp.maximum(x1 + radius, lo)

    def best_b(a):
        return (xp.reshape(x2, (-1, 1)) + 2.0 * tau * a) / (1.0 + 2.0 * tau * a * a)

    def psi(a):
        b = best_b(a)
        return ((a * b - 1.0) ** 2 + ((a - xp.reshape(x1, (-1, 1))) ** 2
                                       + (b - xp.reshape(x2, (-1, 1))) ** 2) / (2.0 * tau))

    a = minimize_1d(psi, lo, hi)
    b = best_b(xp.reshape(a, (-1, 1)))[:, 0]
    active_value = psi(xp.reshape(a, (-1, 1)))[:, 0]
    use_flat = flat_value <= active_value
    return xp.stack([xp.where(use_flat, flat_a, a), xp.where(use_flat, x2, b)], axis=1)


def _certificate(X, f):
    # every point with x1 <= 0 is Clarke-critical with f = 1: the flat spurious region
    return np.where(X[:, 0] <= 0.0, "converged_spurious", "")


def relu_flat_fig2() -> Problem:
    """[JL] Section 1, Figure 2: (x2 max(x1, 0) - 1)^2."""
    return Problem(
        name="relu_flat_fig2",
        n=2,
        f=_f,
        subgrad=_subgrad,
        prox=_prox,
        certificate=_certificate,
        sample=uniform_box(-1.0, 1.0, 2),
        f_star=0.0,
        attained=True,
        smooth=False,
        coercive=False,
        critical_values=(0.0, 1.0),
        critical_values_complete=True,
        description=(
            "One ReLU unit (Figure 2): f = 1 on the flat region x1 <= 0, a spurious local "
            "minimum; from Uniform[-1,1]^2 the flow ends there with probability 5/8"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.YES,
            spurious_minima_at_infinity=Verdict.YES,
            source="[JL] Section 1 and Figure 2; slides (valleys)",
            note=(
                "x1 <= 0 is flat and critical: converged_spurious, never global. From (1,-2) "
                "the flow stops at (0, -sqrt 3); from (2,-1) it reaches (1.8174, 0.5503). "
                "Witness at infinity: S = {x1 <= 0, x2 <= -1}, U = {x2 < -1/2}."
            ),
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [relu_flat_fig2()]
