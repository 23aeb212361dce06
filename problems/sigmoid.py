"""Sigmoid networks: Figure 3 (P06), Example 2 (P07), the deep sigmoid chain (P09), and the
over-parameterized probe of the open question at the end of [JL] Section 4.2 (P23).

P06, P07 and P23 are one model, ``f(a, c) = 1/2 sum_j (sum_k c_k sigma(a_k x_j) - y_j)^2`` with
scalar data and no biases, at width 1 (P06, P07: parameters (w1, w2) = (a, c)) or more (P23).
The sigmoid and its derivative are computed in log space (see :mod:`benchsuite.arrays`): the
naive ``sigma(w) sigma(-w)`` underflows to an exact 0 at |w| ~ 745, a false critical point.
"""

from __future__ import annotations

import math

import numpy as np

from benchsuite import Problem, Theory, Verdict, gaussian, hookimpl, uniform_box
from benchsuite.arrays import asarray_like, namespace, sigmoid, sigmoid_prime

#: Figure 3's saddle is at w1 = ln 3: the side of it decides the limit value (9/2 or 1/2).
LN3 = math.log(3.0)
#: Largest exponent whose exp is finite in float64: the invariant of P09 saturates beyond it.
EXP_MAX = 709.0


def _shallow_sigmoid(xs: tuple[float, ...], ys: tuple[float, ...], width: int):
    """f, grad for f(a, c) = 1/2 sum_j (sum_k c_k sigma(a_k x_j) - y_j)^2; rows are (a, c)."""
    x_np, y_np = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)

    def parts(W):
        xp = namespace(W)
        a, c = W[:, :width], W[:, width:]
        x = asarray_like(xp, x_np, W)
        z = xp.reshape(a, (-1, width, 1)) * xp.reshape(x, (1, 1, -1))  # (B, width, N)
        s = sigmoid(xp, z)
        r = xp.sum(xp.reshape(c, (-1, width, 1)) * s, axis=1) - asarray_like(xp, y_np, W)
        return xp, a, c, x, z, s, r

    def f(W):
        xp, *_, r = parts(W)
        return 0.5 * xp.sum(r * r, axis=1)

    def grad(W):
        xp, _, c, x, z, s, r = parts(W)
        r3 = xp.reshape(r, (-1, 1, r.shape[1]))
        g_c = xp.sum(r3 * s, axis=2)
        g_a = xp.reshape(c, (-1, width, 1)) * sigmoid_prime(xp, z) * xp.reshape(x, (1, 1, -1))
        g_a = xp.sum(r3 * g_a, axis=2)
        return xp.concat([g_a, g_c], axis=1)

    return f, grad


def _fig3_certificate(X, f):
    # {f < 5} is cut by w1 = ln 3 (where f >= 5) into two critical-point-free halves
    side = np.where(X[:, 0] > LN3, "escape_spurious", "escape_global")
    return np.where(f < 5.0, side, "")


def _example2_certificate(X, f):
    # {f < 1} is cut by w1 = 0 and holds no critical point; the limit is the infimum 1/2
    return np.where(f < 1.0, "escape_global", "")


def sigmoid2pt_fig3() -> Problem:
    """[JL] Figure 3: f = 1/2[(w2 s(w1) - 1)^2 + (w2 s(-w1) + 3)^2], data (1, 1), (-1, -3)."""
    f, grad = _shallow_sigmoid((1.0, -1.0), (1.0, -3.0), 1)
    return Problem(
        name="sigmoid2pt_fig3",
        n=2,
        f=f,
        grad=grad,
        certificate=_fig3_certificate,
        sample=uniform_box(-4.0, 4.0, 2),
        f_star=0.5,
        attained=False,
        smooth=True,
        coercive=False,
        critical_values=(5.0,),
        critical_values_complete=True,
        description=(
            "One sigmoid unit, data (1,1), (-1,-3) (Figure 3): every trajectory from f < 5 "
            "escapes; to the spurious value 9/2 if w1 > ln 3, to the infimum 1/2 if w1 < ln 3"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.YES,
            source="[JL] Section 2.1, Figure 3; slides",
            note=(
                "Unique critical point (ln 3, 0), a strict saddle with f = 5. Certificates: "
                "f < 5 and w1 > ln 3 -> escape_spurious (f -> 9/2); f < 5 and w1 < ln 3 -> "
                "escape_global. Growth is logarithmic: w1 ~ +-log(3t), f - limit ~ 1/t."
            ),
        ),
    )


def sigmoid2pt_example2() -> Problem:
    """[JL] Example 2, eq. (11): data (1, 1), (-1, -1); escapes to the global infimum 1/2."""
    f, grad = _shallow_sigmoid((1.0, -1.0), (1.0, -1.0), 1)
    return Problem(
        name="sigmoid2pt_example2",
        n=2,
        f=f,
        grad=grad,
        certificate=_example2_certificate,
        sample=uniform_box(-2.0, 2.0, 2),
        f_star=0.5,
        attained=False,
        smooth=True,
        coercive=False,
        critical_values=(1.0,),
        critical_values_complete=True,
        description=(
            "One sigmoid unit, data (1,1), (-1,-1) (Example 2): trajectories from f < 1 are "
            "unbounded but reach the global infimum 1/2: escaping, not stuck"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[JL] Section 4.2, Example 2, eq. (11)",
            note=(
                "Only critical point (0, 0), a strict saddle with f = 1. Certificate: f < 1 -> "
                "escape_global. w1(t) = log t + o(1), t (f - 1/2) -> 1."
            ),
        ),
    )


def sigmoid_1hidden_overparam_probe(width: int) -> Problem:
    """P23: width-w sigmoid layer on Example 2's data; zero loss is attainable for w >= 2."""
    f, grad = _shallow_sigmoid((1.0, -1.0), (1.0, -1.0), width)
    return Problem(
        name=f"sigmoid_1hidden_overparam_probe[w={width}]",
        n=2 * width,
        f=f,
        grad=grad,
        sample=gaussian(1.0, 2 * width),
        f_star=0.0,
        attained=width >= 2,
        smooth=True,
        coercive=False,
        params={"width": width, "data": "(1, 1), (-1, -1)"},
        role="exploratory probe",
        description=(
            f"Width-{width} sigmoid layer on Example 2's data: are gradient trajectories "
            "bounded once a global minimum exists? (open question)"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.OPEN,
            spurious_local_minima=Verdict.OPEN,
            spurious_minima_at_infinity=Verdict.OPEN,
            source="[JL] end of Section 4.2 (open question)",
            note="Exploratory: record the fraction of unbounded runs against the width.",
        ),
    )


# -- P09 ------------------------------------------------------------------------------------


def deep_sigmoid_1d(layers: int = 4, x: float = 1.5, y: float = 2.0) -> Problem:
    """[JL] eq. (8): f(w) = 1/2 (w_L s(w_{L-1} ... s(w_1 x)) - y)^2, w in R^L."""
    if layers < 1:
        raise ValueError("deep_sigmoid_1d needs at least one layer")

    def forward(W):
        xp = namespace(W)
        p = xp.full((W.shape[0],), x, dtype=xp.float64)
        ps, zs = [p], []
        for i in range(layers - 1):
            z = W[:, i] * p
            p = sigmoid(xp, z)
            zs.append(z)
            ps.append(p)
        r = W[:, layers - 1] * p - y
        return xp, ps, zs, r

    def f(W):
        *_, r = forward(W)
        return 0.5 * r * r

    def grad(W):
        xp, ps, zs, r = forward(W)
        grads = [None] * layers
        grads[layers - 1] = r * ps[layers - 1]
        delta = r * W[:, layers - 1]
        for i in range(layers - 2, -1, -1):
            local = delta * sigmoid_prime(xp, zs[i])
            grads[i] = local * ps[i]
            delta = local * W[:, i]
        return xp.stack(grads, axis=1)

    def invariant(W):
        # [JL] proof of Prop. 5: I = w1 x + e^(w1 x) - x^2 w2^2 / 2 is conserved (L >= 2)
        xp = namespace(W)
        z = W[:, 0] * x
        value = z + xp.exp(xp.minimum(z, EXP_MAX)) - x * x * W[:, 1] ** 2 / 2.0
        return xp.reshape(value, (-1, 1))

    return Problem(
        name=f"deep_sigmoid_1d[depth={layers}]",
        n=layers,
        f=f,
        grad=grad,
        invariant=invariant if layers >= 2 else None,
        sample=gaussian(1.0, layers),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=False,
        critical_values=(0.0,),
        critical_values_complete=True,
        params={"layers": layers, "x": x, "y": y},
        description=(
            f"Deep sigmoid chain, {layers} layers, one data point (x, y) = ({x}, {y}): every "
            "critical point is global and trajectories are bounded (Prop. 5)"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[JL] Section 4.2, eq. (8), Prop. 5, Cor. 1.2",
            note="Invariant w1 x + exp(w1 x) - x^2 w2^2/2 (saturates for w1 x > 709).",
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [
        sigmoid2pt_fig3(),
        sigmoid2pt_example2(),
        *(deep_sigmoid_1d(layers) for layers in (2, 4, 6)),
        *(sigmoid_1hidden_overparam_probe(width) for width in (2, 3, 4)),
    ]

