"""The proximal scheme of [JL] Proposition 3 (Appendix D): implicit Euler on the gradient flow.

x+ in argmin_y f(y) + |y - x|^2 / (2 tau), so (x - x+)/tau is a (sub)gradient at x+, and
f(x+) + |x+ - x|^2/(2 tau) <= f(x) at every step: the discrete energy inequality
sum |dx|^2/(2 tau) <= f(x0) - f(x_k) holds along whole runs (the state keeps the left side).

With the problem's exact prox the step is that prox. Otherwise, for smooth f, the subproblem is
solved by a batched L-BFGS on phi(y) = f(y) + |y - x|^2/(2 tau) started at x, whose first step
is the explicit-Euler predictor x - tau grad f(x), with an Armijo line search on phi (which lets
phi rise by no more than rounding, so that it does not stall where phi's decreases fall below
f's rounding); the result must pass the descent test f(y) + |y - x|^2/(2 tau) <= f(x) (up to
rounding), which these rises cannot break. A row whose inner solve does not reach
stationarity, or whose result fails the test, retries with half its tau (its flow time does not
advance), and regains tau step by step after success; below ``min_tau`` it stops with
PROX_FAILED. For nonconvex f and large tau the inner solve finds a stationary point of phi with
descent, not always the global minimizer that the proof uses; the exact proxes of the catalog's
1-D and ReLU problems are global.

The inner solve runs compiled as well as eagerly. Every inner iteration evaluates the whole
batch with ``where=`` masks, so that each row is charged only for the calls it uses; its loops
are :func:`benchsuite.arrays.while_loop`; the L-BFGS memory is a fixed number of slots; no value
is read on the host. On numpy, which pays per operation more than per element, the same
iterations run instead on a sub-batch of the rows still iterating, which shrinks as they finish
(host indexing, same iterates). The state keeps the gradient at x, so that a step starts
without an oracle call.

Internally every per-row array has the batch on its *last* axis (points as ``(n, B)``):
reductions over a point's coordinates then add contiguous rows of B numbers, where numpy
reduces B short rows several times slower at the catalog's small n.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from benchsuite import hookimpl
from benchsuite.arrays import namespace, where_rows, while_loop
from benchsuite.integrator import Flag, Integrator, State, require_positive
from benchsuite.oracle import ArrayOracle, Oracle
from benchsuite.problem import Array, Problem

ARMIJO = 1e-4
#: Trial points of the line search per inner iteration: the full step, then halvings.
MAX_BACKTRACKS = 30
#: Slack of the descent test, on the scale 1 + |f(x)| (rounding of f and of the prox).
DESCENT_RTOL = 1e-12
#: A curvature pair (s, y) enters the L-BFGS memory only if s.y > CURVATURE |s| |y|: the
#: inverse-Hessian model then stays positive definite.
CURVATURE = 1e-12
#: On numpy, the sub-batch of iterating rows is compacted once at most this fraction of it is
#: still active (a compaction indexes every carried array once).
COMPACT_BELOW = 0.5


@dataclass(frozen=True)
class ProxState(State):
    """Adds f and its gradient at x, each row's current tau, and the discrete energy
    sum |dx|^2/(2 tau).

    Attributes
    ----------
    fx : array, shape (B,)
    gx : array, shape (B, n)
        Gradient at x, where the inner solve starts (phi's gradient there is f's); shape
        (B, 0) with an exact prox, which needs none.
    tau : array, shape (B,)
    energy : array, shape (B,)
    """

    fx: Array
    gx: Array
    tau: Array
    energy: Array


class _Iterate(NamedTuple):
    """The inner solve's per-row state, batch last: what its loops carry."""

    active: Array  # (B,) rows still iterating
    y: Array  # (n, B)
    fy: Array  # (B,)
    g: Array  # (n, B) grad f(y)
    phi: Array  # (B,)
    gphi: Array  # (n, B) grad phi(y)
    gamma: Array  # (B,) scale of the initial inverse Hessian
    # the memory, oldest slot first, newest last; an empty slot holds zeros
    s: tuple[Array, ...]  # steps (n, B)
    yv: tuple[Array, ...]  # differences of grad phi (n, B)
    rs: tuple[Array, ...]  # s / (s.y), what the two-loop recursion multiplies
    ry: tuple[Array, ...]  # y / (s.y)


class _Problem(NamedTuple):
    """Per-row constants of one inner solve, batch last."""

    x: Array  # (n, B)
    inv_tau: Array  # (B,)
    target2: Array  # (B,) squared stationarity target
    slack: Array  # (B,) rise of phi an Armijo test tolerates (rounding)


#: ``loop(cond, body, carry)``: a while loop whose body may call the oracle (see
#: :func:`_counting_loop`)
_Loop = Callable[[Callable[[Any], Array], Callable[[Any], Any], Any], Any]


class _Path(NamedTuple):
    """How the inner iterations reach the oracle and loop: masked or compacting."""

    #: ``call(kind, points (n, B), where (B,))``: the oracle ``kind`` on a batch of points
    call: Callable[[str, Array, Array], Array]
    loop: _Loop


def _xp(x: Array) -> Any:
    """The namespace of ``x``: numpy itself for numpy arrays where it implements the standard
    (numpy >= 2), because the compat wrappers add call overhead to every operation of the
    inner loop."""
    xp = namespace(x)
    if array_api_compat.is_numpy_namespace(xp) and hasattr(np, "permute_dims"):
        return np
    return xp


def _batch_last(xp: Any, a: Array) -> Array:
    """``a`` of shape (B, n) as (n, B) (C-contiguous on numpy)."""
    out = xp.permute_dims(a, (1, 0))
    return np.ascontiguousarray(out) if isinstance(out, np.ndarray) else out


def _dot(xp: Any, a: Array, b: Array) -> Array:
    """Per-row inner products of two (n, B) arrays: shape (B,).

    On numpy each row's products are added in coordinate order whatever B and the layout, so
    that a row's value does not depend on the other rows of its batch (or sub-batch). einsum
    on C-contiguous arrays of two rows or more adds them so, one coordinate after the other
    for all rows at once (and in one call instead of a product and a sum: ~2x faster at small
    n); a single row, or another layout, is reduced along memory, in blocks (pairwise) whose
    rounding differs, so cumsum, which adds in order, takes it.
    """
    if xp is not np:
        return xp.sum(a * b, axis=0)
    if a.shape[1] > 1 and a.flags.c_contiguous and b.flags.c_contiguous:
        return np.einsum("ij,ij->j", a, b)
    return np.cumsum(a * b, axis=0)[-1]


def _counting_loop(xp: Any, oracle: Oracle | ArrayOracle, batch: int,
                   cond: Callable[[Any], Array], body: Callable[[Any], Any], carry: Any) -> Any:
    """:func:`~benchsuite.arrays.while_loop` whose body calls the oracle with ``where=``.

    A host :class:`~benchsuite.oracle.Oracle` counts as a side effect, which a Python loop
    keeps. An :class:`~benchsuite.oracle.ArrayOracle` adds masked calls to arrays
    (``masked``), which a traced ``lax.while_loop`` body cannot leave in a Python object: they
    travel in the carry instead. Its calls over the whole batch are constants of the trace
    (``calls``), which a loop would count once whatever its trip count: the body must make
    none.
    """
    if not isinstance(oracle, ArrayOracle):
        return while_loop(xp, cond, body, carry)
    kinds = tuple(oracle.masked)
    before = dict(oracle.calls)

    def counted(both: tuple[Any, tuple[Array, ...]]) -> tuple[Any, tuple[Array, ...]]:
        inner, masked = both
        oracle.masked = dict(zip(kinds, masked, strict=True))
        inner = body(inner)
        if oracle.calls != before:
            raise RuntimeError("an oracle call without where= inside a compiled loop would be "
                               "counted once for all its iterations")
        return inner, tuple(oracle.masked[k] for k in kinds)

    start = tuple(xp.zeros((batch,), dtype=xp.int64) if oracle.masked[k] is None
                  else oracle.masked[k] for k in kinds)
    inner, masked = while_loop(xp, lambda both: cond(both[0]), counted, (carry, start))
    oracle.masked = dict(zip(kinds, masked, strict=True))
    return inner


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
        exact = oracle.problem.prox is not None
        return ProxState.start(
            x0, fx=oracle.f(x0),
            gx=xp.zeros((batch, 0), dtype=xp.float64) if exact else oracle.grad(x0),
            tau=xp.full((batch,), self.tau, dtype=xp.float64),
            energy=xp.zeros((batch,), dtype=xp.float64))

    def step(self, oracle: Oracle, state: ProxState) -> ProxState:
        xp = namespace(state.x)
        flag = state.flag
        failed = xp.asarray(int(Flag.PROX_FAILED), dtype=flag.dtype)
        slack = DESCENT_RTOL * (1.0 + xp.abs(state.fx))
        if oracle.problem.prox is not None:
            y = oracle.prox(state.x, self.tau)
            fy = oracle.f(y)
            move = xp.sum((y - state.x) ** 2, axis=1) / (2.0 * self.tau)
            ok = fy + move <= state.fx + slack
            return state.replace(
                x=where_rows(xp, ok, y, state.x), fx=xp.where(ok, fy, state.fx),
                t=xp.where(ok, state.t + self.tau, state.t),
                energy=xp.where(ok, state.energy + move, state.energy),
                flag=xp.where(ok, flag, failed))
        # a flagged row has retired (the compiled harness keeps it in the batch, frozen): it
        # takes no inner iteration and keeps its state
        running = flag == 0
        y, fy, gy, converged = self._solve(oracle, state, running, slack)
        move = xp.sum((y - state.x) ** 2, axis=1) / (2.0 * state.tau)
        ok = running & converged & (fy + move <= state.fx + slack)
        tau = state.tau
        tau_next = xp.where(ok, xp.minimum(2.0 * tau, self.tau), tau / 2.0)
        tau_next = xp.where(running, tau_next, tau)
        return state.replace(
            x=where_rows(xp, ok, y, state.x),
            fx=xp.where(ok, fy, state.fx),
            gx=where_rows(xp, ok, gy, state.gx),
            t=xp.where(ok, state.t + tau, state.t),
            energy=xp.where(ok, state.energy + move, state.energy),
            tau=tau_next,
            flag=xp.where(running & (tau_next < self.min_tau * self.tau), failed, flag),
        )

    # -- the inner solve ------------------------------------------------------------------------
    def _solve(self, oracle: Oracle | ArrayOracle, state: ProxState, running: Array,
               slack: Array) -> tuple[Array, Array, Array, Array]:
        """Batched L-BFGS on phi(y) = f(y) + |y - x|^2/(2 tau), started at x, for the rows
        ``running`` (``slack``: that of the descent test).

        Returns y, f(y), grad f(y) (shape (B, n)) and whether each row reached stationarity.
        """
        xp = _xp(state.x)
        x = _batch_last(xp, state.x)  # (n, B)
        g0 = _batch_last(xp, state.gx)
        inv_tau = 1.0 / state.tau
        gnorm2 = _dot(xp, g0, g0)
        const = _Problem(
            x=x, inv_tau=inv_tau,
            target2=(self.tol * (1.0 + xp.sqrt(gnorm2))) ** 2,
            # near the solution, phi's decreases fall below the rounding of f, which scales
            # with the size of f's terms rather than of f: an Armijo test then backtracks to
            # nothing unless phi may rise by rounding. max_inner such rises stay within half
            # the slack of the final descent test, which thus holds by construction.
            slack=slack / (2 * self.max_inner))
        empty = (xp.zeros_like(x),) * self.memory
        # at y = x, phi = f(x) and grad phi = grad f(x), both in the state; gamma = tau makes
        # the first step the explicit-Euler predictor (phi's curvature is 1/tau where f is flat)
        start = _Iterate(active=running & (gnorm2 > const.target2), y=x, fy=state.fx, g=g0,
                         phi=state.fx, gphi=g0, gamma=state.tau, s=empty, yv=empty, rs=empty,
                         ry=empty)
        loop = functools.partial(_counting_loop, xp, oracle, x.shape[1])
        if xp is np and isinstance(oracle, Oracle):
            end = self._iterate_compacting(oracle, loop, const, start)
        else:
            end = self._iterate_masked(xp, oracle, loop, const, start)
        converged = running & (_dot(xp, end.gphi, end.gphi) <= const.target2) & xp.isfinite(
            end.fy)
        return (xp.permute_dims(end.y, (1, 0)), end.fy, xp.permute_dims(end.g, (1, 0)),
                converged)

    def _iterate_masked(self, xp: Any, oracle: Oracle | ArrayOracle, loop: _Loop,
                        const: _Problem, start: _Iterate) -> _Iterate:
        """The inner iterations on the whole batch, rows that are done masked (compiled)."""

        def call(kind: str, points: Array, where: Array) -> Array:
            out = getattr(oracle, kind)(xp.permute_dims(points, (1, 0)), where=where)
            return out if out.ndim == 1 else _batch_last(xp, out)

        path = _Path(call, loop)

        def cond(c: tuple[Array, _Iterate]) -> Array:
            return xp.any(c[1].active) & (c[0] < self.max_inner)

        def body(c: tuple[Array, _Iterate]) -> tuple[Array, _Iterate]:
            # every slot may be filled: a traced loop has one body for all iterations
            return c[0] + 1, self._iteration(xp, path, const, c[1], self.memory)

        return loop(cond, body, (xp.asarray(0), start))[1]

    def _iterate_compacting(self, oracle: Oracle, loop: _Loop, const: _Problem,
                            start: _Iterate) -> _Iterate:
        """The inner iterations on numpy, on a shrinking sub-batch of the rows still iterating.

        The same iterates as :meth:`_iterate_masked`: the rows that are done (whose results no
        longer change) leave the sub-batch once they are at least half of it, at the cost of
        one indexing per carried array, so that neither the oracles nor the L-BFGS arithmetic
        spend time on them. Slots that are still empty in every row are skipped. Of the
        result, only y, fy, g and gphi are written.
        """
        rows = np.flatnonzero(start.active)  # of the batch, one per row of the sub-batch
        if rows.size == 0:
            return start
        out = start._replace(y=start.y.copy(), fy=start.fy.copy(), g=start.g.copy(),
                             gphi=start.gphi.copy())
        batch, m = start.fy.shape[0], self.memory

        def take(tree: Any, keep: np.ndarray, filled: int = 0) -> Any:
            # np.take keeps (n, B) arrays C-contiguous, as _dot's fast path wants (v[:, keep]
            # would be batch-first in memory)
            if not isinstance(tree, _Iterate):
                return type(tree)(*(np.take(v, keep, axis=-1) for v in tree))
            zero = np.zeros((tree.y.shape[0], keep.size))  # the slots still empty everywhere

            def slots(v: tuple[Array, ...]) -> tuple[Array, ...]:
                return (zero,) * (m - filled) + tuple(np.take(a, keep, axis=-1)
                                                      for a in v[m - filled:])

            return tree._make(slots(v) if isinstance(v, tuple) else np.take(v, keep, axis=-1)
                              for v in tree)

        def call(kind: str, points: Array, where: Array) -> Array:
            # rows= names the sub-batch's rows in the batch once it is one
            got = getattr(oracle, kind)(points.T, rows=None if rows.size == batch else rows,
                                        where=where)
            return got if got.ndim == 1 else np.ascontiguousarray(got.T)

        def write(done: np.ndarray) -> None:
            at = rows[done]
            out.y[:, at], out.g[:, at] = sub.y[:, done], sub.g[:, done]
            out.gphi[:, at], out.fy[at] = sub.gphi[:, done], sub.fy[done]

        path = _Path(call, loop)
        sub, sub_const = ((start, const) if rows.size == batch
                          else (take(start, rows), take(const, rows)))
        for k in range(self.max_inner):
            # slots older than the k newest are still empty in every row: skip them
            sub = self._iteration(np, path, sub_const, sub, min(k, self.memory))
            going = sub.active
            if k + 1 == self.max_inner or not going.any():
                break
            if np.count_nonzero(going) <= COMPACT_BELOW * rows.size:
                # the rows that are done no longer change: they leave with their results
                write(~going)
                going = np.flatnonzero(going)
                sub = take(sub, going, min(k + 1, m))
                sub_const, rows = take(sub_const, going), rows[going]
        write(np.ones(rows.size, dtype=bool))
        return out

    def _iteration(self, xp: Any, path: _Path, const: _Problem, it: _Iterate, filled: int
                   ) -> _Iterate:
        """One L-BFGS iteration of the active rows: direction, line search, gradient, memory
        (``filled``: how many of the newest slots may hold a pair)."""
        active = it.active
        d, slope = self._direction(xp, it, filled)
        y, fy, phi, searching = self._line_search(xp, path, const, it, d, slope)
        moved = active & ~searching
        g = xp.where(moved, path.call("grad", y, moved), it.g)
        gphi = g + (y - const.x) * const.inv_tau
        s, yv = y - it.y, gphi - it.gphi
        sy, yy = _dot(xp, s, yv), _dot(xp, yv, yv)
        update = moved & (sy > CURVATURE * xp.sqrt(_dot(xp, s, s) * yy))
        rho = xp.where(update, 1.0 / xp.where(update, sy, 1.0), 0.0)
        s, yv = xp.where(update, s, 0.0), xp.where(update, yv, 0.0)
        # every row's memory shifts by one slot: a row that iterated without a usable pair
        # loses its oldest one, as in L-BFGS, and the memory of a row that is done is never
        # read again (the next step starts afresh), which spares masking it
        return _Iterate(
            # a row whose line search found no decrease gives up (and has not converged)
            active=moved & (_dot(xp, gphi, gphi) > const.target2),
            y=y, fy=fy, g=g, phi=phi, gphi=gphi,
            gamma=xp.where(update, sy / xp.where(update, yy, 1.0), it.gamma),
            s=(*it.s[1:], s), yv=(*it.yv[1:], yv), rs=(*it.rs[1:], rho * s),
            ry=(*it.ry[1:], rho * yv))

    @staticmethod
    def _direction(xp: Any, it: _Iterate, filled: int) -> tuple[Array, Array]:
        """The L-BFGS direction -H grad phi by the two-loop recursion over the ``filled``
        newest slots, and its slope (steepest descent where the model gives no descent
        direction)."""
        m = len(it.s)
        used = range(m - filled, m)
        q = it.gphi
        alphas = {}
        for i in reversed(used):
            alphas[i] = _dot(xp, it.rs[i], q)
            q = q - alphas[i] * it.yv[i]
        r = it.gamma * q
        for i in used:
            r = r + (alphas[i] - _dot(xp, it.ry[i], r)) * it.s[i]
        slope = -_dot(xp, r, it.gphi)
        bad = ~(slope < 0.0)
        return (xp.where(bad, -it.gphi, -r),
                xp.where(bad, -_dot(xp, it.gphi, it.gphi), slope))

    @staticmethod
    def _line_search(xp: Any, path: _Path, const: _Problem, it: _Iterate, d: Array,
                     slope: Array) -> tuple[Array, Array, Array, Array]:
        """Armijo backtracking on phi along d for the active rows: returns the new points,
        their f and phi (the old ones where no step was accepted) and the rows still
        searching (no acceptable step in MAX_BACKTRACKS trials)."""
        threshold = it.phi + const.slack
        decrease = ARMIJO * slope

        def trial(alpha: Array, searching: Array, y: Array, fy: Array, phi: Array
                  ) -> tuple[Array, ...]:
            point = it.y + alpha * d
            f_point = path.call("f", point, searching)
            diff = point - const.x
            phi_point = f_point + _dot(xp, diff, diff) * const.inv_tau / 2.0
            good = searching & xp.isfinite(phi_point) & (phi_point <= threshold + alpha * decrease)
            return (searching & ~good, xp.where(good, point, y), xp.where(good, f_point, fy),
                    xp.where(good, phi_point, phi))

        def cond(c: tuple[Array, ...]) -> Array:
            return xp.any(c[2]) & (c[0] < MAX_BACKTRACKS)

        def body(c: tuple[Array, ...]) -> tuple[Array, ...]:
            # every row still searching tries alpha = 2^-k at its k-th halving: one scalar
            k, alpha, searching, y, fy, phi = c
            alpha = alpha / 2.0
            return k + 1, alpha, *trial(alpha, searching, y, fy, phi)

        # the full step is taken or not by most rows: only the others enter the loop
        one = xp.asarray(1.0)
        carry = (xp.asarray(1), one, *trial(one, it.active, it.y, it.fy, it.phi))
        _, _, searching, y, fy, phi = path.loop(cond, body, carry)
        return y, fy, phi, searching


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [ProximalPoint()]
