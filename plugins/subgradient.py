"""The subgradient method x+ = x - alpha_k g, g a Clarke subgradient, with a step schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchsuite import hookimpl
from benchsuite.arrays import namespace
from benchsuite.integrator import Integrator, State, require_positive
from benchsuite.oracle import Oracle
from benchsuite.problem import Array, Problem

SCHEDULES = ("constant", "sqrt", "harmonic", "polyak")


@dataclass(frozen=True)
class SubgradientState(State):
    """Adds the step counter (a 0-d integer array, shared by the rows) and the best value and
    point seen (it is not a descent method)."""

    k: Array
    f_best: Array
    x_best: Array


@dataclass(frozen=True)
class SubgradientMethod(Integrator):
    """Subgradient method with a constant, c/sqrt(k+1), c/(k+1) or Polyak step; keeps the best.

    Parameters
    ----------
    schedule : {"constant", "sqrt", "harmonic", "polyak"}
        alpha_k = c, c/sqrt(k+1), c/(k+1), or Polyak's (f(x_k) - f_star)/|g_k|^2 (needs a finite
        f_star; capped at c times 10^3 so a near-zero subgradient cannot throw the point away).
    c : float
        Scale of the schedule, > 0.

    Flow time is the sum of the steps, t_k = sum_{i<k} alpha_i, so trajectories are compared
    with the flow at equal t.
    """

    schedule: str = "sqrt"
    c: float = 0.05

    name = "subgradient"
    requires = frozenset({"subgrad"})
    order = 1

    def __post_init__(self) -> None:
        require_positive(self.name, c=self.c)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"subgradient: schedule must be one of {SCHEDULES}, "
                             f"got {self.schedule!r}")

    @property
    def explicit_step(self) -> float | None:
        # a constant schedule is explicit Euler with h = c, and stalls like it
        return self.c if self.schedule == "constant" else None

    def with_step(self, h: float) -> SubgradientMethod:
        return self.with_params(schedule="constant", c=float(h))

    def skip(self, problem: Problem) -> str | None:
        if self.schedule == "polyak" and not math.isfinite(problem.f_star):
            return f"Polyak steps need a finite f_star, and {problem.name} is unbounded below"
        return super().skip(problem)

    def init(self, oracle: Oracle, x0: Array) -> SubgradientState:
        xp = namespace(x0)
        return SubgradientState.start(x0, k=xp.asarray(0, dtype=xp.int64), f_best=oracle.f(x0),
                                      x_best=x0)

    def step(self, oracle: Oracle, state: SubgradientState) -> SubgradientState:
        xp = namespace(state.x)
        g = oracle.grad(state.x)
        k = state.k
        if self.schedule == "polyak":
            fx = oracle.f(state.x)
            gap = xp.maximum(fx - oracle.problem.f_star, 0.0)
            g2 = xp.sum(g * g, axis=1)
            alpha = xp.minimum(gap / xp.where(g2 > 0.0, g2, 1.0), 1e3 * self.c)
            alpha = xp.where(g2 > 0.0, alpha, 0.0)
        else:  # k is an array (traced on compiled backends): no host arithmetic on it
            alpha = xp.full(state.t.shape, self.c, dtype=xp.float64)
            if self.schedule != "constant":  # c * (1/s), the order of the original formula
                steps = xp.astype(k, xp.float64) + 1.0
                alpha = alpha * (1.0 / (xp.sqrt(steps) if self.schedule == "sqrt" else steps))
        x_new = state.x - xp.reshape(alpha, (-1, 1)) * g
        f_new = oracle.f(x_new)
        better = f_new < state.f_best
        return state.replace(
            x=x_new, t=state.t + alpha, k=k + 1,
            f_best=xp.where(better, f_new, state.f_best),
            x_best=xp.where(xp.reshape(better, (-1, 1)), x_new, state.x_best),
        )


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [SubgradientMethod()]
