"""Example third-party plugin: Polyak's heavy-ball method and the Rosenbrock function.

Numpy-only on purpose (``array_api = False``): a third-party plugin need not be array-API
generic, it only has to say so. Registered through ``[project.entry-points.benchsuite]`` in this
package's ``pyproject.toml``; see the plugin-writing guide in benchsuite's README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchsuite import Integrator, Problem, State, Theory, Verdict, hookimpl, uniform_box
from benchsuite.integrator import require_positive


@dataclass(frozen=True)
class HeavyBallState(State):
    """Adds the previous point, one row per trajectory."""

    x_prev: np.ndarray


@dataclass(frozen=True)
class HeavyBall(Integrator):
    """Heavy-ball momentum: x+ = x - h grad f(x) + beta (x - x_prev).

    For a small h the iterates follow the gradient flow sped up by 1/(1 - beta) (the momentum
    sums the geometric series of past steps), so each step advances flow time by
    h / (1 - beta): counting h alone would make the method inconsistent with the flow.

    Parameters
    ----------
    h : float
        Step size, > 0; flow time advances by h / (1 - beta) per step.
    beta : float
        Momentum in [0, 1); beta = 0 is explicit Euler.
    """

    h: float = 0.01
    beta: float = 0.5

    name = "heavyball"
    requires = frozenset({"grad"})
    order = 1
    array_api = False

    def __post_init__(self) -> None:
        require_positive(self.name, h=self.h)
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"heavyball: beta must be in [0, 1), got {self.beta!r}")

    # The fixed-step declaration: without it, a run stalled at the stability limit could not be
    # told from a converged one (the classifier's step-limit test needs h and the limit).
    @property
    def explicit_step(self):
        return self.h

    @property
    def stability_limit(self):
        return 2.0 * (1.0 + self.beta)  # x+ = x - h lambda x + beta (x - x_prev) on x' = -lambda x

    def init(self, oracle, x0):
        return HeavyBallState.start(x0, x_prev=np.array(x0, copy=True))

    def step(self, oracle, state):
        g = oracle.grad(state.x)
        x_new = state.x - self.h * g + self.beta * (state.x - state.x_prev)
        return state.replace(x=x_new, x_prev=state.x, t=state.t + self.h / (1.0 - self.beta))


def _rosenbrock_f(X):
    x, y = X[:, 0], X[:, 1]
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _rosenbrock_grad(X):
    x, y = X[:, 0], X[:, 1]
    w = y - x * x
    return np.stack([-2.0 * (1.0 - x) - 400.0 * x * w, 200.0 * w], axis=1)


def rosenbrock() -> Problem:
    """The Rosenbrock function, a coercive control: every trajectory is bounded."""
    return Problem(
        name="rosenbrock2d",
        n=2,
        f=_rosenbrock_f,
        grad=_rosenbrock_grad,
        sample=uniform_box(-2.0, 2.0, 2),
        f_star=0.0,
        attained=True,
        smooth=True,
        coercive=True,
        critical_values=(0.0,),
        description="Rosenbrock's banana (1 - x)^2 + 100 (y - x^2)^2: coercive control problem",
        theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO,
                      source="Rosenbrock (1960); coercive, so [JL] Prop. 2 applies"),
        array_api=False,
    )


@hookimpl
def benchsuite_problems():
    return [rosenbrock()]


@hookimpl
def benchsuite_integrators():
    return [HeavyBall()]
