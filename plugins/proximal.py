"""The proximal scheme of [JL] Proposition 3 (Appendix D): implicit Euler on the gradient flow.

x+ in argmin_y f(y) + |y - x|^2 / (2 tau), so (x - x+)/tau is a (sub)gradient at x+, and
f(x+) + |x+ - x|^2/(2 tau) <= f(x) at every step: the discrete energy inequality
sum |dx|^2/(2 tau) <= f(x0) - f(x_k) holds along whole runs (the state keeps the left side).

With the problem's exact prox the step is that prox. Otherwise, for smooth f, the subproblem is
solved by a batched L-BFGS on phi(y) = f(y) + |y - x|^2/(2 tau), warm-started at the better of
x and the explicit-Euler predictor, with an Armijo line search on phi: phi never increases, so
the descent inequality holds by construction. A row whose inner solve does not reach
stationarity retries with half its tau (its flow time does not advance), and regains tau step by
step after success; below ``min_tau`` it stops with PROX_FAILED. For nonconvex f and large tau
the inner solve finds a stationary point of phi with descent, not always the global minimizer
that the proof uses; the exact proxes of the catalog's 1-D and ReLU problems are global.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchsuite import hookimpl
from benchsuite.arrays import namespace, to_numpy
from benchsuite.integrator import Flag, Integrator, State, require_positive
from benchsuite.oracle import Oracle
from benchsuite.problem import Array, Problem

ARMIJO = 1e-4
MAX_BACKTRACKS = 30
#: Armijo's test with slack for rounding: near the solution, decreases of phi fall below
#: rounding and an exact test would backtrack to nothing. The descent inequality itself is
#: still checked on the result.
ROUNDING_SLACK = 1e-15
#: Relative slack of the descent inequality for an exact prox (rounding of f and of the prox).
DESCENT_RTOL = 1e-12


@dataclass(frozen=True)
class ProxState(State):
    """Adds f at x, each row's current tau, and the discrete energy sum |dx|^2/(2 tau)."""

    fx: Array
    tau: Array
    energy: Array


def _where_rows(xp, mask: Array, new: Array, old: Array) -> Array:
    """Rows of ``new`` where ``mask`` holds, else rows of ``old`` (for (B,) or (B, n))."""
    if new.ndim == 2:
        mask = xp.reshape(mask, (-1, 1))
    return xp.where(mask, new, old)


def _on_rows(xp, fn, y: Array, mask: Array, fill: Array) -> Array:
    """Evaluate ``fn(y[mask], rows)`` on the masked rows only; other rows take ``fill``."""
    idx = xp.nonzero(mask)[0]
    if idx.shape[0] == y.shape[0]:
        return fn(y, None)
    if idx.shape[0] == 0:
        return fill
    sub = fn(xp.take(y, idx, axis=0), to_numpy(idx))  # the oracle counts on the host
    # scatter back without item assignment (not in the array API): gather sub by position
    pos = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    pos = xp.where(mask, pos, xp.zeros_like(pos))
    return _where_rows(xp, mask, xp.take(sub, pos, axis=0), fill)


@dataclass(frozen=True)
class ProximalPoint(Integrator):
    """Implicit Euler (the proximal scheme of Prop. 3): descent for any tau, unconditionally stable.

    Parameters
    ----------
    tau : float
        Step size (flow time per step), > 0.
    tol : float
        Inner stationarity tolerance, relative: |grad phi(y)| <= tol (1 + |grad f(x)|).
    max_inner : int
        L-BFGS iterations per step before the row retries with tau/2.
    memory : int
        L-BFGS memory.
    min_tau : float
        Relative floor of tau (as a fraction of ``tau``) below which the row fails.
    """

    tau: float = 0.1
    tol: float = 1e-9
    max_inner: int = 100
    memory: int = 8
    min_tau: float = 1e-8

    name = "proximal"
    requires = frozenset({"prox"})
    order = 1
    descent = True

    def __post_init__(self) -> None:
        require_positive(self.name, tau=self.tau, tol=self.tol, min_tau=self.min_tau,
                         max_inner=self.max_inner, memory=self.memory)

    def with_step(self, h: float) -> ProximalPoint:
        return self.with_params(tau=float(h))

    def skip(self, problem: Problem) -> str | None:
        if problem.prox is None and not problem.smooth:
            return (f"{problem.name} is nonsmooth and has no prox: the proximal subproblem has "
                    "no reliable batched solver here")
        return None

    def init(self, oracle: Oracle, x0: Array) -> ProxState:
        xp = namespace(x0)
        batch = x0.shape[0]
        return ProxState.start(x0, fx=oracle.f(x0), tau=xp.full((batch,), self.tau,
                               dtype=xp.float64), energy=xp.zeros((batch,), dtype=xp.float64))

    def step(self, oracle: Oracle, state: ProxState) -> ProxState:
        xp = namespace(state.x)
        if oracle.problem.prox is not None:
            y = oracle.prox(state.x, self.tau)
            fy = oracle.f(y)
            move = xp.sum((y - state.x) ** 2, axis=1) / (2.0 * self.tau)
            ok = fy + move <= state.fx + DESCENT_RTOL * (1.0 + xp.abs(state.fx))
            done = xp.ones_like(ok)
        else:
            y, fy, done = self._solve(oracle, state)
            move = xp.sum((y - state.x) ** 2, axis=1) / (2.0 * state.tau)
            ok = done & (fy + move <= state.fx + DESCENT_RTOL * (1.0 + xp.abs(state.fx)))
        tau = state.tau
        flag = state.flag
        if oracle.problem.prox is not None:
            flag = xp.where(ok, flag, xp.asarray(int(Flag.PROX_FAILED), dtype=flag.dtype))
            tau_next = tau
        else:
            tau_next = xp.where(ok, xp.minimum(2.0 * tau, self.tau), tau / 2.0)
            too_small = tau_next < self.min_tau * self.tau
            flag = xp.where(too_small & (flag == 0),
                            xp.asarray(int(Flag.PROX_FAILED), dtype=flag.dtype), flag)
        return state.replace(
            x=_where_rows(xp, ok, y, state.x),
            fx=xp.where(ok, fy, state.fx),
            t=xp.where(ok, state.t + tau, state.t),
            energy=xp.where(ok, state.energy + move, state.energy),
            tau=tau_next,
            flag=flag,
        )

    def _solve(self, oracle: Oracle, state: ProxState) -> tuple[Array, Array, Array]:
        """Batched L-BFGS on phi(y) = f(y) + |y - x|^2/(2 tau); returns y, f(y), converged."""
        xp = namespace(state.x)
        x, fx = state.x, state.fx
        tau = xp.reshape(state.tau, (-1, 1))
        batch = x.shape[0]

        def phi_parts(y, fy, gy):
            d = y - x
            return fy + xp.sum(d * d, axis=1) / (2.0 * state.tau), gy + d / tau

        g = oracle.grad(x)
        gnorm = xp.linalg.vector_norm(g, axis=1)
        # warm start: the explicit-Euler predictor, unless it is worse than staying at x
        pred = x - tau * g
        f_pred = oracle.f(pred)
        phi_pred = f_pred + state.tau * gnorm**2 / 2.0
        use_pred = xp.isfinite(phi_pred) & (phi_pred < fx)
        y = _where_rows(xp, use_pred, pred, x)
        fy = xp.where(use_pred, f_pred, fx)
        gy = _on_rows(xp, oracle.grad, y, use_pred, g)
        phi, gphi = phi_parts(y, fy, gy)
        target = self.tol * (1.0 + gnorm)
        S, Ys, rhos = [], [], []
        gamma = state.tau  # initial inverse-Hessian scale: phi's curvature is >= 1/tau near x
        active = xp.linalg.vector_norm(gphi, axis=1) > target
        for _ in range(self.max_inner):
            if not bool(xp.any(active)):
                break
            # two-loop recursion, per row
            q = gphi
            alphas = []
            for s, yv, rho in zip(reversed(S), reversed(Ys), reversed(rhos), strict=True):
                a = rho * xp.sum(s * q, axis=1)
                alphas.append(a)
                q = q - xp.reshape(a, (-1, 1)) * yv
            r = xp.reshape(gamma, (-1, 1)) * q
            for (s, yv, rho), a in zip(zip(S, Ys, rhos, strict=True), reversed(alphas),
                                       strict=True):
                b = rho * xp.sum(yv * r, axis=1)
                r = r + xp.reshape(a - b, (-1, 1)) * s
            d = -r
            slope = xp.sum(d * gphi, axis=1)
            bad = ~(slope < 0.0)
            d = _where_rows(xp, bad, -gphi, d)
            slope = xp.where(bad, -xp.sum(gphi * gphi, axis=1), slope)
            # Armijo backtracking on the rows still searching
            alpha = xp.ones((batch,), dtype=xp.float64)
            searching = active
            y_new, f_new, phi_new = y, fy, phi
            for _ in range(MAX_BACKTRACKS):
                trial = y + xp.reshape(alpha, (-1, 1)) * d
                f_trial = _on_rows(xp, oracle.f, trial, searching, fy)
                phi_trial = f_trial + xp.sum((trial - x) ** 2, axis=1) / (2.0 * state.tau)
                good = searching & xp.isfinite(phi_trial) & (
                    phi_trial <= phi + ARMIJO * alpha * slope + ROUNDING_SLACK * xp.abs(phi))
                y_new = _where_rows(xp, good, trial, y_new)
                f_new = xp.where(good, f_trial, f_new)
                phi_new = xp.where(good, phi_trial, phi_new)
                searching = searching & ~good
                if not bool(xp.any(searching)):
                    break
                alpha = xp.where(searching, alpha / 2.0, alpha)
            moved = active & ~searching
            g_new = _on_rows(xp, oracle.grad, y_new, moved, gy)
            _, gphi_new = phi_parts(y_new, f_new, g_new)
            s, yv = y_new - y, gphi_new - gphi
            sy = xp.sum(s * yv, axis=1)
            update = moved & (sy > 1e-12 * xp.linalg.vector_norm(s, axis=1)
                              * xp.linalg.vector_norm(yv, axis=1))
            safe_sy = xp.where(update, sy, 1.0)
            S.append(_where_rows(xp, update, s, xp.zeros_like(s)))
            Ys.append(_where_rows(xp, update, yv, xp.zeros_like(yv)))
            rhos.append(xp.where(update, 1.0 / safe_sy, 0.0))
            gamma = xp.where(update, safe_sy / xp.maximum(xp.sum(yv * yv, axis=1), 1e-300),
                             gamma)
            if len(S) > self.memory:
                S, Ys, rhos = S[1:], Ys[1:], rhos[1:]
            y, fy, gy, phi, gphi = y_new, f_new, g_new, phi_new, gphi_new
            stuck = active & searching  # no decrease possible along d: give up on this row
            active = active & ~stuck & (xp.linalg.vector_norm(gphi, axis=1) > target)
        converged = xp.linalg.vector_norm(gphi, axis=1) <= target
        return y, fy, converged & xp.isfinite(fy)


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [ProximalPoint()]
