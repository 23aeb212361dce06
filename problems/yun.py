"""Yun, Sra & Jadbabaie: small nonlinearities create bad local minima (P19, P20).

One hidden layer, squared loss: l = 1/2 |W2 h(W1 X + b1 1^T) + b2 1^T - Y|_F^2, parameters packed
as (W1, b1, W2, b2). P19 starts at the Step-1 point of Theorem 1, a spurious local minimum with
the linear least-squares risk, for ReLU-like h; P20 starts at the Part-2 point of Theorem 2,
a spurious local minimum with loss 1/3, for many activations. Both add small Gaussian noise, so
the benchmark asks: do integrators stay stuck at the spurious value?
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import array_api_compat.numpy
import numpy as np

from benchsuite import Problem, Theory, Verdict, hookimpl
from benchsuite.arrays import asarray_like, namespace, sigmoid, sigmoid_prime
from benchsuite_problems._matrices import pack, unpack

NOISE = 1e-2  # radius of the perturbation of the spurious starting point


@dataclass(frozen=True)
class Activation:
    """An activation h with its derivative (for ReLU-like h, a fixed choice at the kink)."""

    name: str
    smooth: bool
    s_plus: float = 1.0
    s_minus: float = 0.0

    def value(self, xp, z):
        match self.name:
            case "sigmoid":
                return sigmoid(xp, z)
            case "tanh":
                return xp.tanh(z)
            case "arctan":
                return xp.atan(z)
            case "quadratic":
                return z * z
            case "elu":
                return xp.where(z > 0.0, z, xp.expm1(xp.minimum(z, 0.0)))
            case _:  # ReLU-like h_{s+, s-}(z) = max(s+ z, 0) + min(s- z, 0)
                return xp.where(z > 0.0, self.s_plus * z, self.s_minus * z)

    def derivative(self, xp, z):
        match self.name:
            case "sigmoid":
                return sigmoid_prime(xp, z)
            case "tanh":
                t = xp.tanh(z)
                return 1.0 - t * t
            case "arctan":
                return 1.0 / (1.0 + z * z)
            case "quadratic":
                return 2.0 * z
            case "elu":
                return xp.where(z > 0.0, xp.ones_like(z), xp.exp(xp.minimum(z, 0.0)))
            case _:  # s- at the kink: a Clarke-valid choice for each unit
                return self.s_minus + (self.s_plus - self.s_minus) * xp.astype(z > 0.0,
                                                                               z.dtype)

    def numpy(self, z):
        return np.asarray(self.value(array_api_compat.numpy, np.asarray(z, dtype=np.float64)))


def relu_like(s_plus: float, s_minus: float) -> Activation:
    return Activation("relu_like", smooth=False, s_plus=s_plus, s_minus=s_minus)


def one_hidden_layer(X: np.ndarray, Y: np.ndarray, d1: int, act: Activation):
    """f, grad and shapes of the one-hidden-layer squared loss on data X (dx x m), Y (1 x m)."""
    dx = X.shape[0]
    shapes = [(d1, dx), (d1, 1), (1, d1), (1, 1)]

    def forward(W):
        xp = namespace(W)
        W1, b1, W2, b2 = unpack(xp, W, shapes)
        Z = W1 @ asarray_like(xp, X, W) + b1  # (B, d1, m)
        A = act.value(xp, Z)
        R = W2 @ A + b2 - asarray_like(xp, Y, W)  # (B, 1, m)
        return xp, W2, Z, A, R

    def f(W):
        xp, *_, R = forward(W)
        return 0.5 * xp.sum(xp.reshape(R * R, (W.shape[0], -1)), axis=1)

    def grad(W):
        xp, W2, Z, A, R = forward(W)
        delta = (xp.matrix_transpose(W2) @ R) * act.derivative(xp, Z)  # (B, d1, m)
        Xt = asarray_like(xp, X.T, W)
        return pack(xp, [delta @ Xt, xp.sum(delta, axis=2, keepdims=True),
                         R @ xp.matrix_transpose(A), xp.sum(R, axis=2, keepdims=True)])

    return f, grad, shapes


def _noisy_start(point: np.ndarray):
    def sample(rng: np.random.Generator, batch: int) -> np.ndarray:
        return point + NOISE * rng.standard_normal((batch, point.size))

    return sample


# -- P19 ------------------------------------------------------------------------------------

P19_X = np.array([[0.0, 1.0, 2.0, 3.0]])
P19_Y = np.array([[0.0, 1.0, 4.0, 9.0]])


def least_squares_fit(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """W~ = argmin 1/2 |W [X; 1] - Y|^2, a row (dx + 1,)."""
    Xbar = np.vstack([X, np.ones((1, X.shape[1]))])
    return np.linalg.lstsq(Xbar.T, Y[0], rcond=None)[0]


def step1_point(X, Y, d1, s_plus, alpha=1.0) -> np.ndarray:
    """[YSJ] Thm. 1 Step 1: a local minimum whose risk is the linear least-squares risk."""
    dx = X.shape[0]
    wt = least_squares_fit(X, Y)
    yhat = wt @ np.vstack([X, np.ones((1, X.shape[1]))])
    eta = min(-1.0, 2.0 * yhat.min())
    W1 = np.zeros((d1, dx))
    W1[0] = alpha * wt[:dx]
    b1 = np.full((d1, 1), -alpha * eta)
    b1[0, 0] = alpha * (wt[dx] - eta)
    W2 = np.zeros((1, d1))
    W2[0, 0] = 1.0 / (alpha * s_plus)
    return np.concatenate([W1.ravel(), b1.ravel(), W2.ravel(), [eta]])


def step2_point(X, Y, s_plus, s_minus, j0: int, gamma: float) -> np.ndarray:
    """[YSJ] Thm. 1 Step 2 (Case 1, d1 = 2): a point strictly below the Step-1 risk.

    Its loss is l0 - 2 c gamma S + (m/2) c^2 gamma^2, c = (s+ - s-)/(s+ + s-),
    S = sum_{i <= j0} (yhat_i - y_i), data sorted by yhat (j0 is 1-based).
    """
    dx = X.shape[0]
    wt = least_squares_fit(X, Y)
    yhat = np.sort(wt @ np.vstack([X, np.ones((1, X.shape[1]))]))
    beta = (yhat[j0 - 1] + yhat[j0]) / 2.0
    W1 = np.vstack([wt[:dx], -wt[:dx]])
    b1 = np.array([[wt[dx] - beta + gamma], [-wt[dx] + beta + gamma]])
    W2 = np.array([[1.0, -1.0]]) / (s_plus + s_minus)
    return np.concatenate([W1.ravel(), b1.ravel(), W2.ravel(), [beta]])


def relu_like_lls_spurious(s_plus: float = 1.0, s_minus: float = 0.5) -> Problem:
    """[YSJ] Thm. 1: ReLU-like h_{s+,s-}, data X = [0,1,2,3], Y = [0,1,4,9], two hidden units."""
    act = relu_like(s_plus, s_minus)
    f, grad, _ = one_hidden_layer(P19_X, P19_Y, 2, act)
    start = step1_point(P19_X, P19_Y, 2, s_plus)
    return Problem(
        name=f"relu_like_lls_spurious[s_plus={s_plus:g},s_minus={s_minus:g}]",
        n=start.size, f=f, subgrad=grad, sample=_noisy_start(start),
        f_star=0.0, attained=True, smooth=False, coercive=False,
        critical_values=(0.0, 2.0),
        params={"s_plus": s_plus, "s_minus": s_minus, "hidden": 2, "start": "Step-1 point + "
                f"N(0, {NOISE}^2)", "data": "X = [0,1,2,3], Y = [0,1,4,9]"},
        description=(
            f"One hidden layer of 2 units h_(s+={s_plus:g}, s-={s_minus:g}) started next to the "
            "Step-1 spurious local minimum (risk 2 = linear least squares); 0 is attainable"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.UNKNOWN,
            spurious_local_minima=Verdict.YES,
            spurious_minima_at_infinity=Verdict.UNKNOWN,
            source="[YSJ] Section 2, Thm. 1, Steps 1-2, App. A2",
            note=(
                "Zero loss: x + 2 relu(x - 1) + 2 relu(x - 2) fits the data, and any h_{s+,s-} "
                "with s+ != s- builds it. Step 2 with j0 = 1, gamma = -3/4 reaches 1.625 for "
                "(1, 1/2) and for ReLU."
            ),
        ),
    )


# -- P20 ------------------------------------------------------------------------------------

P20_X = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
P20_Y = np.array([[0.0, 0.0, 1.0]])

#: (v1, v2, u1, u2) of the spurious point, verified substitutes for the OCR-damaged values.
SPURIOUS_PARAMETERS = {
    "sigmoid": (-math.log(3.0), -math.log(3.0), 2.0 / 3.0, 2.0 / 3.0),
    "tanh": (math.atanh(0.5), -math.atanh(0.5), 1.0, 1.0 / 3.0),
    "arctan": (-1.0, -0.5, 2.0, -(1.0 / 3.0 + math.pi / 2.0) / math.atan(0.5)),
    "quadratic": (1.0, 1.0, 1.0 / 6.0, 1.0 / 6.0),
    "elu": (0.5, -0.5, 3.0, (7.0 / 6.0) / (1.0 - math.exp(-0.5))),
    "relu": (0.25, 0.25, 2.0 / 3.0, 2.0 / 3.0),
}

ACTIVATIONS = {name: Activation(name, smooth=True) for name in
               ("sigmoid", "tanh", "arctan", "quadratic", "elu")} | {"relu": relu_like(1.0, 0.0)}


def spurious_point(activation: str) -> np.ndarray:
    """[YSJ] Thm. 2 Part 2: W1 = [[v1, v1], [v2, v2]], W2 = [u1, u2], zero biases; loss 1/3."""
    v1, v2, u1, u2 = SPURIOUS_PARAMETERS[activation]
    return np.array([v1, v1, v2, v2, 0.0, 0.0, u1, u2, 0.0])


def zero_loss_point(activation: str) -> np.ndarray:
    """[YSJ] Thm. 2 Part 1: a global minimum (loss 0) of the same network."""
    act = ACTIVATIONS[activation]
    if activation == "relu":
        return np.array([0.0, 2.0, -2.0, 2.0, 0.0, 0.0, 1.0, -1.0, 0.0])
    if activation == "quadratic":
        v = np.array([1.0, 0.5, 0.5, -0.25])
    else:
        inverse = {"sigmoid": lambda p: math.log(p / (1 - p)), "tanh": math.atanh,
                   "arctan": math.tan}[activation]
        v = np.array([inverse(p) for p in (0.5, 0.25, 0.25, 0.125)])
    h = act.numpy
    D = h(v[2]) * h((v[0] + v[1]) / 2) - h(v[0]) * h((v[2] + v[3]) / 2)
    W2 = np.array([h(v[2]), -h(v[0])]) / D
    return np.concatenate([v, [0.0, 0.0], W2, [0.0]])


def yun_3pt_counterexample(activation: str = "sigmoid") -> Problem:
    """[YSJ] Thm. 2: X = [[1, 0, 1/2], [0, 1, 1/2]], Y = [0, 0, 1], two hidden units."""
    act = ACTIVATIONS[activation]
    f, grad, _ = one_hidden_layer(P20_X, P20_Y, 2, act)
    start = spurious_point(activation)
    return Problem(
        name=f"yun_3pt_counterexample[h={activation}]",
        n=start.size, f=f, grad=grad if act.smooth else None,
        subgrad=None if act.smooth else grad, sample=_noisy_start(start),
        f_star=0.0, attained=True, smooth=act.smooth, coercive=False,
        critical_values=(0.0, 1.0 / 3.0),
        params={"activation": activation, "start": f"Part-2 point + N(0, {NOISE}^2)"},
        description=(
            f"Realizable 3-point data set, 2 hidden {activation} units, started next to a "
            "spurious local minimum of loss 1/3 (constant output 1/3); 0 is attainable"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.UNKNOWN,
            spurious_local_minima=Verdict.YES,
            spurious_minima_at_infinity=Verdict.UNKNOWN,
            source="[YSJ] Section 3, Thm. 2, Cor. 3, App. A3-A6",
            note="The spurious minimum is non-strict; saturating activations may also escape.",
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [
        relu_like_lls_spurious(1.0, 0.0),
        relu_like_lls_spurious(1.0, 0.5),
        relu_like_lls_spurious(1.01, 1.0),
        *(yun_3pt_counterexample(name) for name in ACTIVATIONS),
    ]
