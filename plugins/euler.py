"""Explicit Euler on the (sub)gradient flow: gradient descent with a constant step."""

from __future__ import annotations

from dataclasses import dataclass

from benchsuite import hookimpl
from benchsuite.integrator import Integrator, State, require_positive
from benchsuite.oracle import Oracle
from benchsuite.problem import Array


@dataclass(frozen=True)
class ExplicitEuler(Integrator):
    """Explicit Euler: x+ = x - h g, g the gradient (or a Clarke subgradient selection).

    First order; stable on a quadratic only while ``h * lambda_max < 2``, which is how it stalls
    on Example 1's escape (the "edge of stability"). With a subgradient oracle it is the
    constant-step subgradient method. Flow time after k steps is ``k h``.

    Parameters
    ----------
    h : float
        Step size, > 0.
    """

    h: float = 0.01

    name = "euler"
    requires = frozenset({"subgrad"})
    order = 1

    def __post_init__(self) -> None:
        require_positive(self.name, h=self.h)

    @property
    def explicit_step(self) -> float:
        return self.h

    def init(self, oracle: Oracle, x0: Array) -> State:
        return State.start(x0)

    def step(self, oracle: Oracle, state: State) -> State:
        g = oracle.grad(state.x)
        # x + (-h) g is x - h g exactly; written so, numpy reuses the temporary (-h) g for
        # the sum (commutative) instead of allocating a third (B, n) array
        return state.replace(x=state.x + (-self.h) * g, t=state.t + self.h)


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [ExplicitEuler()]
