"""Adaptive embedded Runge-Kutta on the gradient flow x' = -grad f(x), one step size per row.

Every trajectory of the batch carries its own step size and is accepted or rejected on its own
(a rejected row keeps its point and retries with a smaller step in the next attempt), so a
stiff trajectory never slows down the others. Step-size control follows scipy's ``RK45``:
error norm = RMS of err / (atol + rtol max(|x|, |x_new|)), new step = h SAFETY err^(-1/(q+1))
clipped to [MIN_FACTOR, MAX_FACTOR], initial step from Hairer, Norsett & Wanner's heuristic.
With ``fixed_step`` set, the pair runs without error control (for convergence-order tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from benchsuite import hookimpl
from benchsuite.arrays import namespace
from benchsuite.integrator import Flag, Integrator, State, require_positive
from benchsuite.oracle import Oracle
from benchsuite.problem import Array

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
#: A step below this fraction of (1 + t) has collapsed: the field is discontinuous or blows up.
MIN_RELATIVE_STEP = 1e-13


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded pair: stages c, A; weights b (order p) and b_hat (order q)."""

    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    b_hat: np.ndarray
    order: int
    error_order: int
    fsal: bool


DORMAND_PRINCE_54 = Tableau(
    c=np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]),
    A=np.array([
        [0, 0, 0, 0, 0, 0, 0],
        [1 / 5, 0, 0, 0, 0, 0, 0],
        [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
        [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    ]),
    b=np.array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]),
    b_hat=np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100,
                    1 / 40]),
    order=5,
    error_order=4,
    fsal=True,
)

BOGACKI_SHAMPINE_32 = Tableau(
    c=np.array([0, 1 / 2, 3 / 4, 1]),
    A=np.array([[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 3 / 4, 0, 0], [2 / 9, 1 / 3, 4 / 9, 0]]),
    b=np.array([2 / 9, 1 / 3, 4 / 9, 0]),
    b_hat=np.array([7 / 24, 1 / 4, 1 / 3, 1 / 8]),
    order=3,
    error_order=2,
    fsal=True,
)


def real_stability_limit(tab: Tableau) -> float:
    """The largest x with |R(-y)| <= 1 for all y in [0, x], where R is the stability polynomial
    of the propagating weights b: R(z) = 1 + sum_k z^k b^T A^(k-1) 1 (A is strictly lower
    triangular, so the sum stops at the number of stages)."""
    stages = len(tab.b)
    coeffs, v = [1.0], np.ones(stages)
    for _ in range(stages):
        coeffs.append(float(tab.b @ v))
        v = tab.A @ v
    y = np.linspace(0.0, 2.0 * stages, 200_001)
    growth = np.abs(np.polynomial.polynomial.polyval(-y, coeffs))
    unstable = np.flatnonzero(growth > 1.0 + 1e-12)
    return float(y[unstable[0] - 1]) if unstable.size else float(y[-1])


@dataclass(frozen=True)
class RKState(State):
    """Adds each row's next step size, the field at x (first-same-as-last reuse), and the
    flow time not to step past."""

    h: Array
    k1: Array
    t_end: float = float("inf")


@dataclass(frozen=True)
class EmbeddedRK(Integrator):
    """Adaptive embedded Runge-Kutta pair on the gradient flow, per-trajectory step control.

    Parameters
    ----------
    rtol, atol : float
        Relative and absolute tolerances of the local error, > 0.
    max_step : float
        Largest step size.
    fixed_step : float or None
        If set, take this constant step with no error control.
    """

    rtol: float = 1e-6
    atol: float = 1e-9
    max_step: float = np.inf
    fixed_step: float | None = None

    tableau: ClassVar[Tableau]
    requires = frozenset({"grad"})
    adaptive = True

    def __post_init__(self) -> None:
        require_positive(self.name, rtol=self.rtol, atol=self.atol)
        if not self.max_step > 0:
            raise ValueError(f"{self.name}: max_step must be > 0, got {self.max_step!r}")
        if self.fixed_step is not None:
            require_positive(self.name, fixed_step=self.fixed_step)

    @property
    def explicit_step(self) -> float | None:
        return self.fixed_step

    @property
    def stability_limit(self) -> float:
        return real_stability_limit(self.tableau)

    def with_step(self, h: float) -> EmbeddedRK:
        return self.with_params(fixed_step=float(h))

    def init(self, oracle: Oracle, x0: Array) -> RKState:
        xp = namespace(x0)
        k1 = -oracle.grad(x0)
        if self.fixed_step is not None:
            h = xp.full((x0.shape[0],), self.fixed_step, dtype=xp.float64)
        else:
            h = self._initial_step(oracle, x0, k1)
        return RKState.start(x0, h=h, k1=k1)

    def _initial_step(self, oracle: Oracle, x0: Array, k1: Array) -> Array:
        """Hairer-Norsett-Wanner's starting step, per row (as scipy's select_initial_step)."""
        xp = namespace(x0)
        n = x0.shape[1]
        scale = self.atol + xp.abs(x0) * self.rtol
        d0 = xp.sqrt(xp.sum((x0 / scale) ** 2, axis=1) / n)
        d1 = xp.sqrt(xp.sum((k1 / scale) ** 2, axis=1) / n)
        h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / xp.maximum(d1, 1e-300))
        x1 = x0 + xp.reshape(h0, (-1, 1)) * k1
        k2 = -oracle.grad(x1)
        d2 = xp.sqrt(xp.sum(((k2 - k1) / scale) ** 2, axis=1) / n) / h0
        big = xp.maximum(d1, d2)
        h1 = xp.where(big <= 1e-15, xp.maximum(1e-6, h0 * 1e-3),
                      (0.01 / xp.maximum(big, 1e-300)) ** (1.0 / (self.tableau.order + 1)))
        return xp.minimum(xp.minimum(100 * h0, h1), self.max_step)

    def with_horizon(self, state: RKState, t_end: float) -> RKState:
        return state.replace(t_end=t_end)

    def step(self, oracle: Oracle, state: RKState) -> RKState:
        xp = namespace(state.x)
        tab = self.tableau
        x = state.x
        # land exactly on t_end; rows already there take a zero step until they retire
        h = xp.minimum(state.h, xp.maximum(state.t_end - state.t, 0.0))
        hcol = xp.reshape(h, (-1, 1))
        ks = [state.k1]
        for i in range(1, len(tab.c)):
            dx = sum(float(tab.A[i, j]) * ks[j] for j in range(i) if tab.A[i, j] != 0)
            ks.append(-oracle.grad(x + hcol * dx))
        x_new = x + hcol * sum(float(w) * k for w, k in zip(tab.b, ks, strict=True) if w != 0)
        if tab.fsal:
            k_new = ks[-1]
        else:
            k_new = -oracle.grad(x_new)
            ks.append(k_new)
        if self.fixed_step is not None:
            return state.replace(x=x_new, t=state.t + h, k1=k_new)
        err = hcol * sum(float(e) * k for e, k in zip(tab.b - tab.b_hat, ks, strict=False)
                         if e != 0)
        scale = self.atol + xp.maximum(xp.abs(x), xp.abs(x_new)) * self.rtol
        norm = xp.sqrt(xp.mean((err / scale) ** 2, axis=1))
        finite = xp.isfinite(norm)
        accept = finite & (norm <= 1.0)
        exponent = -1.0 / (tab.error_order + 1)
        factor = xp.where(norm == 0.0, MAX_FACTOR,
                          SAFETY * xp.pow(xp.where(finite & (norm > 0), norm, 1.0), exponent))
        factor = xp.maximum(xp.where(finite, factor, MIN_FACTOR), MIN_FACTOR)
        factor = xp.where(accept, xp.minimum(factor, MAX_FACTOR), xp.minimum(factor, 1.0))
        h_next = xp.minimum(h * factor, self.max_step)
        acc = xp.reshape(accept, (-1, 1))
        collapsed = (h_next < MIN_RELATIVE_STEP * (1.0 + xp.abs(state.t))) & (
            state.t < state.t_end)
        flag = xp.where(collapsed & (state.flag == 0),
                        xp.asarray(int(Flag.STEP_COLLAPSE), dtype=state.flag.dtype), state.flag)
        return state.replace(
            x=xp.where(acc, x_new, x),
            t=xp.where(accept, state.t + h, state.t),
            k1=xp.where(acc, k_new, state.k1),
            h=h_next,
            flag=flag,
        )


@dataclass(frozen=True)
class DormandPrince(EmbeddedRK):
    """Dormand-Prince 5(4) with per-trajectory step-size control (FSAL, 6 gradients per step)."""

    name = "rk45"
    tableau = DORMAND_PRINCE_54
    order = 5


@dataclass(frozen=True)
class BogackiShampine(EmbeddedRK):
    """Bogacki-Shampine 3(2) with per-trajectory step-size control (FSAL, 3 gradients per step)."""

    name = "rk23"
    tableau = BOGACKI_SHAMPINE_32
    order = 3


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [DormandPrince(), BogackiShampine()]
