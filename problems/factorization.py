"""Smooth low-rank factorization: Example 1 (P01), (xy-1)^2 (P02), matrix sensing (P10), PCA (P13).

All share the gradient-flow invariant ``X^T X - Y^T Y``; they differ in the sensing operator,
which decides whether trajectories are bounded ([JL] Prop. 6: a lower-bounded operator bounds
them; Example 1's P_Omega is not lower bounded, and a positive fraction of its trajectories
escape to a spurious local minimum at infinity).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from benchsuite import Problem, Theory, Verdict, gaussian, hookimpl, uniform_box
from benchsuite.arrays import asarray_like, from_columns, namespace
from benchsuite_problems._matrices import factor_invariant, factor_residual, pack, unpack

# -- P01 ------------------------------------------------------------------------------------


def _mc2x2_parts(X):
    xp = namespace(X)
    x1, x2, y1, y2 = (X[:, i] for i in range(4))
    return xp, x1, x2, y1, y2, x1 * y1 - 1.0, x2 * y1 - 1.0, x2 * y2 - 1.0


def _mc2x2_f(X):
    _, *_, r1, r2, r3 = _mc2x2_parts(X)
    return r1 * r1 + r2 * r2 + r3 * r3


def _mc2x2_grad(X):
    xp = namespace(X)
    x1, x2, y1, y2 = (X[:, i] for i in range(4))
    # the doubled residuals 2 r_i from doubled y's: x (2 y) - 2 = 2 (x y - 1) exactly (scaling
    # by 2 commutes with rounding; only |y| > 9e307 differs, where 2 y overflows), 8 passes
    # over B numbers where 2 (x y - 1) takes 9
    y1_2, y2_2 = y1 + y1, y2 + y2
    r1, r2, r3 = x1 * y1_2 - 2.0, x2 * y1_2 - 2.0, x2 * y2_2 - 2.0
    return from_columns(xp, [r1 * y1, r2 * y1 + r3 * y2, r1 * x1 + r2 * x2, r3 * x2])


def _mc2x2_invariant(X):
    xp = namespace(X)
    sq = X * X
    return xp.reshape(sq[:, 0] + sq[:, 1] - sq[:, 2] - sq[:, 3], (-1, 1))


def _mc2x2_certificate(X, f):
    # {f < 2, x2 y1 < 0} is forward invariant, holds no critical point, and f > 1 on it: a
    # trajectory that enters it escapes with f -> 1 (catalog P01, verified on 20 000 runs)
    return np.where((f < 2.0) & (X[:, 1] * X[:, 2] < 0.0), "escape_spurious", "")


def mc2x2_example1() -> Problem:
    """[JL] Example 1: f = (x1 y1 - 1)^2 + (x2 y1 - 1)^2 + (x2 y2 - 1)^2 on R^4."""
    return Problem(
        name="mc2x2_example1",
        n=4,
        f=_mc2x2_f,
        grad=_mc2x2_grad,
        invariant=_mc2x2_invariant,
        certificate=_mc2x2_certificate,
        sample=uniform_box(-1.0, 1.0, 4),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=(0.0, 2.0, 3.0),
        critical_values_complete=True,
        description=(
            "2x2 rank-1 matrix completion (Example 1): no spurious local minimum, every saddle "
            "strict, yet ~8.5% of Uniform[-1,1]^4 trajectories escape to a spurious minimum at "
            "infinity with value 1"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.YES,
            source="[JL] Section 1, Example 1, Figure 1; slides 'Matrix completion'",
            note=(
                "Stuck iff at some time f < 2 and x2*y1 < 0 (forward-invariant region); escape "
                "|z| ~ sqrt(2)(8t)^(1/4), f - 1 ~ (2t)^(-1/2). Euler stalls at |x1| ~ h^(-1/2)."
            ),
        ),
    )


# -- P02 ------------------------------------------------------------------------------------


def _xy_f(X):
    r = X[:, 0] * X[:, 1] - 1.0
    return r * r


def _xy_grad(X):
    xp = namespace(X)
    r = X[:, 0] * X[:, 1] - 1.0
    return 2.0 * from_columns(xp, [r * X[:, 1], r * X[:, 0]])


def _xy_invariant(X):
    xp = namespace(X)
    return xp.reshape(X[:, 0] * X[:, 0] - X[:, 1] * X[:, 1], (-1, 1))


def xy_limit(x0: np.ndarray) -> np.ndarray:
    """Exact limit of the gradient flow of (xy-1)^2 from rows of x0 (off the line x = -y)."""
    x, y = x0[:, 0], x0[:, 1]
    c, s = x * x - y * y, np.sign(x + y)
    xs = s * np.sqrt((c + np.sqrt(c * c + 4.0)) / 2.0)
    return np.stack([xs, 1.0 / xs], axis=1)


def xy_minus_one() -> Problem:
    """f(x, y) = (xy - 1)^2: the scalar factorization prototype of the slides."""
    return Problem(
        name="xy_minus_one",
        n=2,
        f=_xy_f,
        grad=_xy_grad,
        invariant=_xy_invariant,
        sample=uniform_box(-2.0, 2.0, 2),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=(0.0, 1.0),
        critical_values_complete=True,
        description=(
            "(xy-1)^2: not coercive but trajectories are bounded (x^2 - y^2 is conserved); "
            "strict saddle at 0 with stable manifold x = -y"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[SL] 'Bounded subgradient trajectories - pictorial illustration'",
            note="Limit in closed form: x* = sign(x0+y0) sqrt((c + sqrt(c^2+4))/2), c = x0^2-y0^2.",
        ),
    )


# -- P10 ------------------------------------------------------------------------------------


def _sensing_operator(kind: str, n1: int, n2: int, m: int, rng: np.random.Generator,
                      delta: float) -> np.ndarray:
    """Rows vec(A_i), shape (m, n1*n2): Gaussian, or an exact RIP operator ([JL]-style (b))."""
    if kind == "gaussian":
        return rng.standard_normal((m, n1 * n2))
    if kind == "rip":
        if m != n1 * n2:
            raise ValueError("the exact-RIP operator needs m = n1*n2")
        q, _ = np.linalg.qr(rng.standard_normal((m, m)))
        u = np.linspace(-1.0, 1.0, m)
        return math.sqrt(m) * q * np.sqrt(1.0 + delta * u)
    raise ValueError(f"unknown sensing operator {kind!r}: use 'gaussian' or 'rip'")


def matrix_sensing(n1: int = 5, n2: int = 4, r: int = 2, m: int = 60, seed: int = 2,
                   operator: str = "gaussian", delta: float = 0.15,
                   name: str | None = None) -> Problem:
    """f(X, Y) = (1/2m) sum_i (<A_i, X Y^T> - b_i)^2 with b_i = <A_i, M>, rank M = r ([JL] (12)).

    Parameters
    ----------
    n1, n2, r : int
        X is n1 x r, Y is n2 x r.
    m : int
        Number of measurements.
    seed : int
        Seed of the operator, of M and of nothing else.
    operator : {"gaussian", "rip"}
        i.i.d. N(0,1) sensing matrices, or an operator whose (1/m) A^T A has spectrum exactly
        [1 - delta, 1 + delta] (so RIP with delta_4r = delta holds for every rank).
    """
    rng = np.random.default_rng(seed)
    A = _sensing_operator(operator, n1, n2, m, rng, delta)
    M = rng.standard_normal((n1, r)) @ rng.standard_normal((r, n2))
    b = A @ M.reshape(-1)
    gram, ctr = A.T @ A / m, A.T @ b / m
    eig = np.linalg.eigvalsh(gram)
    lower = float(eig[0])
    shapes = [(n1, r), (n2, r)]

    def f(X):
        xp = namespace(X)
        Xf, Yf = unpack(xp, X, shapes)
        P = xp.reshape(Xf @ xp.matrix_transpose(Yf), (X.shape[0], -1))
        R = P @ asarray_like(xp, A.T, X) - asarray_like(xp, b, X)
        return xp.sum(R * R, axis=1) / (2 * m)

    def grad(X):
        # S = (1/m) sum_i r_i A_i = gram vec(XY^T) - A^T b / m: with more measurements than
        # entries, the n1n2 x n1n2 Gram operator is cheaper than going through the residuals.
        xp = namespace(X)
        Xf, Yf = unpack(xp, X, shapes)
        P = xp.reshape(Xf @ xp.matrix_transpose(Yf), (X.shape[0], -1))
        if m > n1 * n2:
            S = P @ asarray_like(xp, gram, X) - asarray_like(xp, ctr, X)
        else:
            S = (P @ asarray_like(xp, A.T, X) - asarray_like(xp, b, X)) @ asarray_like(
                xp, A, X) / m
        S = xp.reshape(S, (X.shape[0], n1, n2))
        return pack(xp, [S @ Yf, xp.matrix_transpose(S) @ Xf])

    certified = operator == "rip" and delta <= 0.2
    return Problem(
        name=name or f"matrix_sensing[{operator},n1={n1},n2={n2},r={r},m={m}]",
        n=(n1 + n2) * r,
        f=f,
        grad=grad,
        invariant=factor_invariant(shapes),
        sample=gaussian(1.5, (n1 + n2) * r),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=False,
        params={"n1": n1, "n2": n2, "r": r, "m": m, "seed": seed, "operator": operator,
                "delta": delta if operator == "rip" else None,
                "lower_bound_c": lower, "rip_spectrum": (lower, float(eig[-1]))},
        description=(
            f"Matrix sensing, {operator} operator ({m} measurements of a rank-{r} "
            f"{n1}x{n2} matrix): lower bounded (c = {lower:.3g}) so trajectories are bounded"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES if lower > 1e-12 else Verdict.UNKNOWN,
            spurious_local_minima=Verdict.NO if certified else Verdict.UNKNOWN,
            spurious_minima_at_infinity=Verdict.NO if certified else Verdict.UNKNOWN,
            source="[JL] Section 4.3, eq. (12), Prop. 6, Cor. 1.3",
            note=(
                "Prop. 6 bound: |X|_F^4 + |Y|_F^4 <= r c4 with c4 = 2 c2/c + |C|_F^2, "
                "c2 = 4 f(X0,Y0) + (2/m) sum b_i^2 (catalog section H.8). "
                + ("RIP delta_4r <= 1/5 certifies no spurious minima." if certified else
                   "No RIP certificate for this operator.")
            ),
        ),
    )


# -- P13 ------------------------------------------------------------------------------------


def pca_factorization(m: int = 4, n: int = 4, r: int = 2,
                      singular_values: tuple[float, ...] = (5.0, 3.0, 2.0, 1.0),
                      seed: int = 8) -> Problem:
    """f(X, Y) = |X Y^T - M|_F^2 (no 1/2), M with the given singular values (Baldi-Hornik)."""
    rng = np.random.default_rng(seed)
    k = len(singular_values)
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    sv = np.asarray(singular_values, dtype=np.float64)
    M = q1 @ np.diag(sv) @ q2.T
    shapes = [(m, r), (n, r)]
    total = float(np.sum(sv**2))
    crit = sorted({round(total - sum(sv[list(g)] ** 2), 12)
                   for size in range(min(r, k) + 1) for g in combinations(range(k), size)})

    def f(X):
        xp = namespace(X)
        _, _, R = factor_residual(xp, X, shapes, M)
        return xp.sum(xp.reshape(R * R, (X.shape[0], -1)), axis=1)

    def grad(X):
        xp = namespace(X)
        Xf, Yf, R = factor_residual(xp, X, shapes, M)
        return pack(xp, [2 * R @ Yf, 2 * xp.matrix_transpose(R) @ Xf])

    return Problem(
        name=f"pca_factorization[m={m},n={n},r={r}]",
        n=(m + n) * r,
        f=f,
        grad=grad,
        invariant=factor_invariant(shapes),
        sample=gaussian(1.0, (m + n) * r),
        f_star=float(np.sum(sv[r:] ** 2)),
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=tuple(crit),
        critical_values_complete=True,
        params={"m": m, "n": n, "r": r, "singular_values": tuple(singular_values),
                "seed": seed},
        description=(
            f"PCA as factorization |XY^T - M|_F^2, rank {r}: the smooth, well-conditioned "
            "reference; every non-global critical point is a strict saddle"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[SL] 'Statistical estimation problems' item 1; [ZSEW] Section 3.2",
            note="Critical values sum_{i not in G} sigma_i^2 over |G| <= r (Eckart-Young).",
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [
        mc2x2_example1(),
        xy_minus_one(),
        matrix_sensing(),
        matrix_sensing(n1=5, n2=4, r=2, m=20, seed=12, operator="rip"),
        matrix_sensing(n1=20, n2=20, r=3, m=600, seed=5),
        pca_factorization(),
    ]
