"""Nonsmooth l1 (robust-PCA) factorization: general rank (P11) and rank one (P12).

f(X, Y) = |X Y^T - M|_1. The Clarke subdifferential is {(Lambda Y, Lambda^T X)} over the
entrywise sign set of X Y^T - M ([JL] Section 4.4); the selection here is Lambda = sign(.),
0 at ties. X^T X - Y^T Y is conserved by every subgradient trajectory ([JL] Prop. 7), which
bounds them: no trajectory escapes, whatever M and r.
"""

from __future__ import annotations

import numpy as np

from benchsuite import Problem, Theory, Verdict, gaussian, hookimpl
from benchsuite.arrays import namespace
from benchsuite_problems._matrices import factor_invariant, factor_residual, pack


def _l1_factorization(name, M, r, *, description, theory, params):
    m, n = M.shape
    shapes = [(m, r), (n, r)]

    def f(W):
        xp = namespace(W)
        _, _, R = factor_residual(xp, W, shapes, M)
        return xp.sum(xp.reshape(xp.abs(R), (W.shape[0], -1)), axis=1)

    def subgrad(W):
        xp = namespace(W)
        Xf, Yf, R = factor_residual(xp, W, shapes, M)
        Lam = xp.sign(R)
        return pack(xp, [Lam @ Yf, xp.matrix_transpose(Lam) @ Xf])

    return Problem(name=name, n=(m + n) * r, f=f, subgrad=subgrad,
                   invariant=factor_invariant(shapes),
                   sample=gaussian(1.0, (m + n) * r), f_star=0.0, attained=True, smooth=False,
                   coercive=False, params={**params, "m": m, "n": n, "r": r},
                   description=description, theory=theory)


def _prop7_note(m, n):
    return (f"Prop. 7 bound (spectral norms): |X|^4 + |Y|^4 <= |X0^T X0 - Y0^T Y0|_F^2 + "
            f"2 {m * n} (|X0 Y0^T - M|_1 + |M|_1)^2. f is sqrt({m * n})-weakly convex.")


def l1_matrix_factorization(M: np.ndarray | None = None, r: int = 2, name: str | None = None,
                            seed: int | None = None) -> Problem:
    """[JL] eq. (13): |X Y^T - M|_1 with M realizable at rank r (catalog generator (a))."""
    if M is None:
        U = np.array([[1.0, 2.0], [-2.0, 1.0], [3.0, 0.0], [1.0, -1.0]])
        Vt = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 1.0]])
        M = U @ Vt
    m, n = M.shape
    return _l1_factorization(
        name or f"l1_matrix_factorization[m={m},n={n},r={r}]", M, r,
        params={"seed": seed},
        description=(
            f"l1 matrix factorization |XY^T - M|_1, {m}x{n}, rank {r}: nonsmooth, bounded "
            "subgradient trajectories for any M (Prop. 7); spurious minima unknown"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.UNKNOWN,
            spurious_minima_at_infinity=Verdict.UNKNOWN,
            source="[JL] Section 4.4, eq. (13), Prop. 7",
            note=_prop7_note(m, n) + " Constant steps chatter at O(alpha) and drift the "
                 "invariant by O(alpha^2 k): use diminishing steps.",
        ),
    )


def l1_rank1_factorization() -> Problem:
    """[JL] eq. (16), Cor. 1.4: sum_ij |x_i y_j - M_ij| with rank M = 1, all M_ij != 0."""
    u, v = np.array([1.0, -2.0, 3.0]), np.array([2.0, 1.0, -1.0, 1.0])
    M = np.outer(u, v)
    return _l1_factorization(
        "l1_rank1_factorization", M, 1, params={"u": tuple(u), "v": tuple(v)},
        description=(
            "Rank-one l1 factorization (Cor. 1.4): no spurious local minima and bounded "
            "subgradient trajectories, hence no spurious minimum at infinity"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[JL] eq. (16), Cor. 1.4 (via Josz & Lai 2021); slides item 4",
            note=_prop7_note(3, 4) + " (0, 0) is Clarke-critical with f = |M|_1 = 30 but not "
                 "a local minimum; any stuck outcome is an integrator artefact.",
        ),
    )


def _random_low_rank(m, n, r, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n))


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [
        l1_matrix_factorization(),
        l1_matrix_factorization(_random_low_rank(20, 15, 3, seed=7), r=3, seed=7),
        l1_rank1_factorization(),
    ]
