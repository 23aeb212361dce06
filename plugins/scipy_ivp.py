"""scipy's ``solve_ivp`` solvers as a reference integrator: the correctness baseline.

Each trajectory gets its own scipy ``OdeSolver`` (RK45, DOP853, ...) and one step of this
integrator advances each of them by one of their steps, in a Python loop over trajectories. It is
the reference the batched Runge-Kutta pairs are checked against, not the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import integrate

from benchsuite import hookimpl
from benchsuite.integrator import Flag, Integrator, RowErrors, State, require_positive
from benchsuite.oracle import Oracle

METHODS = {"RK45": integrate.RK45, "RK23": integrate.RK23, "DOP853": integrate.DOP853,
           "Radau": integrate.Radau, "BDF": integrate.BDF, "LSODA": integrate.LSODA}


class _RowSolver:
    """One trajectory's scipy solver; ``row`` is its current row in the batch, for counting."""

    def __init__(self, oracle: Oracle, solver_class, x0: np.ndarray, row: int, rtol: float,
                 atol: float) -> None:
        self.oracle, self.row = oracle, row
        self.solver = solver_class(self.rhs, 0.0, x0, np.inf, rtol=rtol, atol=atol)

    def rhs(self, _t: float, y: np.ndarray) -> np.ndarray:
        return -self.oracle.grad(y[None, :], rows=np.array([self.row]))[0]


@dataclass(frozen=True)
class ScipyState(State):
    """Adds one scipy OdeSolver per row (an object array, so the harness can subset it)."""

    solvers: np.ndarray


@dataclass(frozen=True)
class ScipyIVP(Integrator):
    """scipy.integrate's solvers on the gradient flow, one solver per trajectory (reference).

    Parameters
    ----------
    method : str
        One of RK45, RK23, DOP853, Radau, BDF, LSODA.
    rtol, atol : float
        Tolerances, as in ``solve_ivp``.
    """

    method: str = "RK45"
    rtol: float = 1e-6
    atol: float = 1e-9

    name = "scipy_ivp"
    requires = frozenset({"grad"})
    adaptive = True
    array_api = False
    pure = False  # scipy's solvers are stateful: a step consumes the old state

    def __post_init__(self) -> None:
        require_positive(self.name, rtol=self.rtol, atol=self.atol)
        if self.method not in METHODS:
            raise ValueError(f"scipy_ivp: method must be one of {sorted(METHODS)}, "
                             f"got {self.method!r}")

    @property
    def order(self) -> int:  # type: ignore[override]
        return {"RK23": 3, "RK45": 5, "DOP853": 8}.get(self.method, 1)

    def init(self, oracle: Oracle, x0: np.ndarray) -> ScipyState:
        x0 = np.asarray(x0, dtype=np.float64)
        solvers = np.empty(x0.shape[0], dtype=object)
        for i in range(x0.shape[0]):  # the reference loops over trajectories by design
            solvers[i] = _RowSolver(oracle, METHODS[self.method], x0[i].copy(), i, self.rtol,
                                    self.atol)
        return ScipyState.start(x0, solvers=solvers)

    def with_horizon(self, state: ScipyState, t_end: float) -> ScipyState:
        for row_solver in state.solvers:
            row_solver.solver.t_bound = t_end  # scipy clips its last step to t_bound
        return state

    def step(self, oracle: Oracle, state: ScipyState) -> ScipyState:
        # scipy's solvers are stateful: a row, once stepped, cannot be stepped again from the
        # old state. So a row's exception is caught here, and the others keep their step
        # (RowErrors), instead of letting the harness re-step the batch by bisection.
        x = np.array(state.x, copy=True)
        t = np.array(state.t, copy=True)
        flag = np.array(state.flag, copy=True)
        errors: dict[int, str] = {}
        for i, row_solver in enumerate(state.solvers):
            if flag[i] != 0 or row_solver.solver.status != "running":
                continue
            row_solver.row = i  # rows shift as other trajectories retire
            try:
                row_solver.solver.step()
            except Exception as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
                flag[i] = Flag.ERROR
                continue
            if row_solver.solver.status == "failed":
                flag[i] = Flag.STEP_COLLAPSE
            x[i], t[i] = row_solver.solver.y, row_solver.solver.t
        new = state.replace(x=x, t=t, flag=flag)
        if errors:
            raise RowErrors(new, errors)
        return new


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [ScipyIVP()]
