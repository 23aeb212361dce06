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

The quasi-Newton method is L-BFGS: its model of phi's inverse Hessian is BFGS from gamma I
through the last ``memory`` pairs (s, y), gamma = s.y / y.y of the newest, restarted at every
step from tau I, so that the first trial point is the explicit-Euler predictor
x - tau grad f(x). Where n <= ``memory`` (a memory that holds a full-rank model anyway), the
model is kept instead as two dense n x n matrices per row: the BFGS recursion is affine in its
starting matrix, so BFGS from gamma I is gamma M + N, with M and N updated by the same rank-2
recursion from I and from 0 (through every pair of the solve: the same model as the memory's
while a solve takes at most ``memory`` iterations). A direction is then one product with each,
where the two-loop recursion takes two dependent reductions per pair, which on small arrays
cost per operation rather than per element (numpy), or per kernel and copy of the rotated
memory (XLA). Rescaling by the newest gamma is what keeps full steps from overshooting along
directions the pairs have not explored; plain BFGS from tau I does, where f is flat along the
first steps, and near the solution such steps raise phi by about the line search's rounding
slack, where numpy and XLA (which fuses multiply-adds and orders sums its own way) then round
to different decisions, and rows' call counts differ. A model carried over from the previous
step would save about half the iterations, but its updates by the last, tiny steps of each
solve amplify rounding from step to step, so that the two would soon disagree as well. The
state keeps the gradient at x, so that a step starts without an oracle call.

The inner solve runs compiled as well as eagerly. Every inner iteration evaluates the whole
batch with ``where=`` masks, so that each row is charged only for the calls it uses; its loops
are :func:`benchsuite.arrays.while_loop`; the L-BFGS memory is a fixed number of slots; no value
is read on the host. On numpy, which pays per operation more than per element, the same
iterations run instead on a sub-batch of the rows still iterating, which shrinks as they finish
(host indexing, same iterates).

Internally every per-row array has the batch on its *last* axis (points as ``(n, B)``, models
as ``(n, n, B)``): reductions over a point's coordinates then add contiguous rows of B numbers,
where numpy reduces B short rows several times slower at the catalog's small n.
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
#: A curvature pair (s, y) updates the model only if s.y > CURVATURE |s| |y|: the
#: inverse-Hessian model then stays positive definite.
CURVATURE = 1e-12
#: On numpy, the sub-batch of iterating rows is compacted once at most this fraction of it is
#: still active (a compaction indexes every carried array once)...
COMPACT_BELOW = 0.5
#: ... and once at least this many rows leave it: on fewer, numpy's cost per operation hardly
#: depends on the rows, and the indexing costs more than it saves.
COMPACT_MIN = 64
#: On JAX, a dense model's products with vectors are written out as sums of this many terms
#: at most (see _matvec).
UNROLL_MAX = 16


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
    gg: Array  # (B,) |grad phi(y)|^2, for the stationarity test
    gamma: Array  # (B,) scale of the initial inverse Hessian
    # the dense model H = gamma M + N as q = (M, N), each (n, n, B), and its last update,
    # applied at the start of the next iteration: X + qs a^T + a qs^T for X, a in q, qa (see
    # _dense_pair); empty tuples with a memory of pairs
    q: tuple[Array, ...]
    qs: Array | None  # (n, B)
    qa: tuple[Array, ...]  # (n, B) each
    # the memory of pairs, oldest slot first, newest last (an empty slot holds zeros); empty
    # tuples with the dense model
    s: tuple[Array, ...]  # steps (n, B)
    yv: tuple[Array, ...]  # differences of grad phi (n, B)
    rs: tuple[Array, ...]  # s / (s.y), what the two-loop recursion multiplies
    ry: tuple[Array, ...]  # y / (s.y)


class _Problem(NamedTuple):
    """Per-row constants of one inner solve, batch last."""

    x: Array  # (n, B)
    inv_tau: Array  # (B,)
    half_inv_tau: Array  # (B,) 1/(2 tau), the weight of |y - x|^2 in phi
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
    rounding differs, so cumsum, which adds in order, takes it. Other libraries add along
    axis 0 of the product the same way (one coordinate after the other).
    """
    if xp is not np:
        return xp.sum(a * b, axis=0)
    if a.shape[1] > 1 and a.flags.c_contiguous and b.flags.c_contiguous:
        return np.einsum("ij,ij->j", a, b)
    return np.cumsum(a * b, axis=0)[-1]


def _any(xp: Any, a: Array) -> Array:
    """Whether any of the booleans ``a`` holds (a count on numpy, which is several times
    faster than np.any's reduction)."""
    if xp is np:
        return np.count_nonzero(a) > 0
    return xp.any(a)


def _matvec(xp: Any, h: Array, v: Array) -> Array:
    """Per-row products of (n, n, B) matrices with (n, B) vectors: shape (n, B).

    Each row's sums run over the columns in order, whatever B (as in :func:`_dot`). XLA gets
    them, for small n, as n elementwise products and sums, which it fuses into their
    consumers: a reduction over an inner axis is a library call several times slower at the
    catalog's sizes (14 us for B = 1000, n = 4, against 1 to 4 us)."""
    if array_api_compat.is_jax_namespace(xp) and v.shape[0] <= UNROLL_MAX:
        out = h[:, 0] * v[0]
        for j in range(1, v.shape[0]):
            out = out + h[:, j] * v[j]
        return out
    if xp is not np:
        return xp.sum(h * v[None, :, :], axis=1)
    if v.shape[1] > 1 and h.flags.c_contiguous and v.flags.c_contiguous:
        return np.einsum("ijk,jk->ik", h, v)
    return np.cumsum(h * v[None, :, :], axis=1)[:, -1]


def _dense_pair(xp: Any, q: tuple[Array, Array], s: Array, yv: Array, sy: Array,
                update: Array) -> tuple[Array, Array]:
    """The update of the dense models q = (M, N), each (n, n, B), by the pairs (s, yv) where
    ``update`` (``sy`` = s.yv): (a_M, a_N), each (n, B), such that the new models are
    X + s a_X^T + a_X s^T (a_X = 0 where the row keeps its model).

    With V = I - rho s y^T, rho = 1/(s.y), BFGS maps a model X to V X V^T + rho s s^T: M, the
    part of the starting matrix, to V M V^T, N to V N V^T + rho s s^T. For symmetric X,
    V X V^T = X + s a^T + a s^T with a = (rho^2/2 y.Xy) s - rho X y, and rho s s^T adds
    rho/2 s to N's.

    The update itself waits for the next iteration: XLA would compute a anew for each of the
    n^2 entries of the models if it came in the same kernel, and the last iteration of a step
    needs none (numpy skips it).
    """
    # rho s rather than rho^2, which overflows for s.y < 1e-154; a row without an update
    # keeps its model by the where, not by rho = 0 (0 * inf is NaN where y.My overflows)
    rho = 1.0 / xp.where(update, sy, 1.0)
    rs = rho * s
    my, ny = _matvec(xp, q[0], yv), _matvec(xp, q[1], yv)
    a_m = (0.5 * rho * _dot(xp, my, yv)) * rs - rho * my
    a_n = (0.5 * rho * _dot(xp, ny, yv) + 0.5) * rs - rho * ny
    return xp.where(update, a_m, 0.0), xp.where(update, a_n, 0.0)


def _rank2(xp: Any, h: Array, s: Array, a: Array) -> Array:
    """h + s a^T + a s^T for (n, n, B) matrices and (n, B) vectors: in place on numpy, where the
    solve's models belong to its iterates alone and the previous iterate is not read again."""
    o = s[:, None, :] * a[None, :, :]
    if xp is np:
        h += o
        h += o.transpose(1, 0, 2)
        return h
    return h + o + xp.permute_dims(o, (1, 0, 2))


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
        L-BFGS memory (pairs); where n <= memory the model is kept as two dense n x n
        matrices per row (the same model while a solve takes at most ``memory`` iterations).
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
        """Batched L-BFGS on phi(y) = f(y) + |y - x|^2/(2 tau), started at x, for the
        rows ``running`` (``slack``: that of the descent test).

        Returns y, f(y), grad f(y) (shape (B, n)) and whether each row reached stationarity.
        """
        xp = _xp(state.x)
        x = _batch_last(xp, state.x)  # (n, B)
        g0 = _batch_last(xp, state.gx)
        inv_tau = 1.0 / state.tau
        gnorm2 = _dot(xp, g0, g0)
        target2 = (self.tol * (1.0 + xp.sqrt(gnorm2))) ** 2
        const = _Problem(
            x=x, inv_tau=inv_tau, half_inv_tau=inv_tau / 2.0, target2=target2,
            # near the solution, phi's decreases fall below the rounding of f, which scales
            # with the size of f's terms rather than of f: an Armijo test then backtracks to
            # nothing unless phi may rise by rounding. max_inner such rises stay within half
            # the slack of the final descent test, which thus holds by construction.
            slack=slack / (2 * self.max_inner))
        active = running & (gnorm2 > target2)
        if xp is np and isinstance(oracle, Oracle):
            y, fy, g, gg = self._iterate_compacting(oracle, const, active, g0, state.fx,
                                                    gnorm2, state.tau)
        else:
            loop = functools.partial(_counting_loop, xp, oracle, x.shape[1])
            end = self._iterate_masked(xp, oracle, loop, const, self._start(
                xp, active, x, g0, state.fx, gnorm2, state.tau))
            y, fy, g, gg = end.y, end.fy, end.g, end.gg
        converged = running & (gg <= target2) & xp.isfinite(fy)
        return xp.permute_dims(y, (1, 0)), fy, xp.permute_dims(g, (1, 0)), converged

    def _start(self, xp: Any, active: Array, x: Array, g0: Array, fx: Array, gnorm2: Array,
               tau: Array) -> _Iterate:
        """The iterate at y = x (batch last), where phi = f(x) and grad phi = grad f(x), both in
        the state. The model tau I (gamma = tau, M = I, N = 0) makes the first step the
        explicit-Euler predictor (phi's curvature is 1/tau where f is flat)."""
        n, batch = x.shape
        if n <= self.memory:
            zero = xp.zeros((n, n, batch), dtype=xp.float64, device=array_api_compat.device(x))
            eye = xp.eye(n, dtype=xp.float64, device=array_api_compat.device(x))[:, :, None]
            none = xp.zeros_like(x)
            return _Iterate(active=active, y=x, fy=fx, g=g0, phi=fx, gphi=g0, gg=gnorm2,
                            gamma=tau, q=(eye + zero, zero), qs=none, qa=(none, none), s=(),
                            yv=(), rs=(), ry=())
        empty = (xp.zeros_like(x),) * self.memory
        return _Iterate(active=active, y=x, fy=fx, g=g0, phi=fx, gphi=g0, gg=gnorm2, gamma=tau,
                        q=(), qs=None, qa=(), s=empty, yv=empty, rs=empty, ry=empty)

    def _iterate_masked(self, xp: Any, oracle: Oracle | ArrayOracle, loop: _Loop,
                        const: _Problem, start: _Iterate) -> _Iterate:
        """The inner iterations on the whole batch, rows that are done masked (compiled)."""

        def call(kind: str, points: Array, where: Array) -> Array:
            out = getattr(oracle, kind)(xp.permute_dims(points, (1, 0)), where=where)
            return out if out.ndim == 1 else _batch_last(xp, out)

        path = _Path(call, loop)

        def cond(c: tuple[Array, _Iterate]) -> Array:
            return _any(xp, c[1].active) & (c[0] < self.max_inner)

        def body(c: tuple[Array, _Iterate]) -> tuple[Array, _Iterate]:
            # a traced loop has one body for all iterations (k unknown)
            return c[0] + 1, self._iteration(xp, path, const, c[1], None)

        return loop(cond, body, (xp.asarray(0), start))[1]

    def _iterate_compacting(self, oracle: Oracle, const: _Problem, active: np.ndarray,
                            g0: np.ndarray, fx: np.ndarray, gnorm2: np.ndarray, tau: np.ndarray
                            ) -> tuple[np.ndarray, ...]:
        """The inner iterations on numpy, on a shrinking sub-batch of the rows still iterating;
        returns y, f(y), grad f(y) (batch last) and |grad phi(y)|^2.

        The same iterates as :meth:`_iterate_masked`, from the rows ``active`` only: the rows
        that are done (whose results no longer change) leave the sub-batch once they are at
        least half of it and ``COMPACT_MIN`` rows, at the cost of one indexing per carried
        array, so that neither the oracles nor the L-BFGS arithmetic spend time on them
        (fewer rows save little: numpy's cost per operation hardly depends on them). L-BFGS
        slots that are still empty in every row are skipped.
        """
        x = const.x
        rows = np.flatnonzero(active)  # of the batch, one per row of the sub-batch
        if rows.size == 0:
            return x, fx, g0, gnorm2
        # the results, where rows leave the sub-batch (the others' start values meanwhile)
        out: list[np.ndarray] = []
        batch, n = fx.shape[0], x.shape[0]
        # the constants in one (n + 4, B) block, which a compaction indexes at once
        cpack = None
        if rows.size == batch:
            sub_const, sub = const, self._start(np, active, x, g0, fx, gnorm2, tau)
        else:
            # one indexing for all the sub-batch's starting values, the constants first
            packed = np.take(np.concatenate(
                [x, np.stack([const.inv_tau, const.half_inv_tau, const.target2, const.slack,
                              fx, gnorm2, tau]), g0]), rows, axis=1)
            cpack = packed[:n + 4]
            sub_const = _Problem(cpack[:n], *cpack[n:])
            sub = self._start(np, np.ones(rows.size, dtype=bool), cpack[:n],
                              packed[n + 7:], packed[n + 4], packed[n + 5], packed[n + 6])
        m = len(sub.s)

        def take(it: _Iterate, keep: np.ndarray, filled: int) -> _Iterate:
            # np.take keeps batch-last arrays C-contiguous, as _dot's fast path wants
            # (v[:, keep] would be batch-first in memory)
            zero = np.zeros((n, keep.size))  # the slots of pairs still empty everywhere

            def one(v: Any) -> Any:
                if v is None:
                    return None
                if isinstance(v, tuple):
                    return tuple(np.take(a, keep, axis=-1) for a in v)
                return np.take(v, keep, axis=-1)

            def slots(v: tuple[Array, ...]) -> tuple[Array, ...]:
                return (zero,) * (m - filled) + one(v[m - filled:])

            return it._make(slots(v) if name in ("s", "yv", "rs", "ry") else one(v)
                            for name, v in zip(it._fields, it, strict=True))

        def call(kind: str, points: Array, where: Array) -> Array:
            # rows= names the sub-batch's rows in the batch once it is one; a mask that
            # selects them all is left out (the oracle then counts without indexing)
            got = getattr(oracle, kind)(
                points.T, rows=None if rows.size == batch else rows,
                where=None if np.count_nonzero(where) == where.size else where)
            return got if got.ndim == 1 else np.ascontiguousarray(got.T)

        def write(done: np.ndarray | None) -> None:
            if not out:
                out.extend((x.copy(), fx.copy(), g0.copy(), gnorm2.copy()))
            at = rows if done is None else rows[done]
            for to, v in zip(out, (sub.y, sub.fy, sub.g, sub.gg), strict=True):
                # np.take gathers faster than fancy indexing on the last axis
                to[..., at] = v if done is None else np.take(v, done, axis=-1)

        # the host Oracle counts as a side effect: numpy's while_loop, a Python loop, keeps it
        path = _Path(call, functools.partial(while_loop, np))
        for k in range(self.max_inner):
            sub = self._iteration(np, path, sub_const, sub, k)
            going = np.count_nonzero(sub.active)
            if k + 1 == self.max_inner or going == 0:
                break
            if going <= COMPACT_BELOW * rows.size and rows.size - going >= COMPACT_MIN:
                # the rows that are done no longer change: they leave with their results
                keep = np.flatnonzero(sub.active)
                write(np.flatnonzero(~sub.active))
                sub = take(sub, keep, min(k + 1, m))
                rows = rows[keep]
                if cpack is None:
                    cpack = np.concatenate([const.x, np.stack(const[1:])])
                cpack = np.take(cpack, keep, axis=1)
                sub_const = _Problem(cpack[:n], *cpack[n:])
        if rows.size == batch:  # every row iterated to the end: the sub-batch is the result
            return sub.y, sub.fy, sub.g, sub.gg
        write(None)
        return tuple(out)

    def _iteration(self, xp: Any, path: _Path, const: _Problem, it: _Iterate, k: int | None
                   ) -> _Iterate:
        """One L-BFGS iteration of the active rows: direction, line search, gradient, model
        update (``k``: the iteration's index where it is known on the host, which spares work
        that does nothing at the first ones)."""
        q = it.q
        if q:
            if k != 0:  # the last iteration's update (there is none at the first)
                q = tuple(_rank2(xp, h, it.qs, a) for h, a in zip(q, it.qa, strict=True))
            r = it.gamma * _matvec(xp, q[0], it.gphi) + _matvec(xp, q[1], it.gphi)
        else:
            # slots older than the k newest are still empty in every row: skipped
            r = self._two_loop(xp, it, len(it.s) if k is None else min(k, len(it.s)))
        # r = H grad phi
        dr = _dot(xp, r, it.gphi)
        # -r descends where grad phi . r > 0, which a positive definite model guarantees but
        # for rounding or non-finite values: a row without descent gives up, as one whose line
        # search fails (its retry with tau/2 restarts the model)
        descent = it.active & (dr > 0.0)
        y, fy, phi, searching = self._line_search(xp, path, const, it, r, dr, descent)
        moved = descent ^ searching  # the rows still searching are among the descending ones
        g = xp.where(moved, path.call("grad", y, moved), it.g)
        gphi = g + (y - const.x) * const.inv_tau
        s, yv = y - it.y, gphi - it.gphi
        sy, yy = _dot(xp, s, yv), _dot(xp, yv, yv)
        # a row that did not move has s = 0, hence no update
        update = sy > CURVATURE * xp.sqrt(_dot(xp, s, s) * yy)
        gg = _dot(xp, gphi, gphi)
        # a row whose line search found no decrease gives up (and has not converged)
        active = moved & (gg > const.target2)
        gamma = xp.where(update, sy / xp.where(update, yy, 1.0), it.gamma)
        if q:
            return _Iterate(active, y, fy, g, phi, gphi, gg, gamma, q, s,
                            _dense_pair(xp, q, s, yv, sy, update), (), (), (), ())
        rho = 1.0 / xp.where(update, sy, xp.inf)  # 0 where there is no update
        s, yv = xp.where(update, s, 0.0), xp.where(update, yv, 0.0)
        # every row's memory shifts by one slot: a row that iterated without a usable pair
        # loses its oldest one, as in L-BFGS, and the memory of a row that is done is never
        # read again (the next step starts afresh), which spares masking it
        return _Iterate(active, y, fy, g, phi, gphi, gg, gamma, (), None, (),
                        (*it.s[1:], s), (*it.yv[1:], yv), (*it.rs[1:], rho * s),
                        (*it.ry[1:], rho * yv))

    @staticmethod
    def _two_loop(xp: Any, it: _Iterate, filled: int) -> Array:
        """The L-BFGS product H grad phi by the two-loop recursion over the ``filled`` newest
        slots."""
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
        return r

    @staticmethod
    def _line_search(xp: Any, path: _Path, const: _Problem, it: _Iterate, p: Array,
                     neg_slope: Array, searching: Array) -> tuple[Array, Array, Array, Array]:
        """Armijo backtracking on phi along -p (``neg_slope`` = grad phi . p > 0) for the
        rows ``searching``: returns the new points, their f and phi (the old ones where no
        step was accepted) and the rows still searching (no acceptable step in
        MAX_BACKTRACKS trials)."""
        threshold = it.phi + const.slack
        decrease = ARMIJO * neg_slope

        def trial(point: Array, bound: Array, searching: Array, y: Array, fy: Array,
                  phi: Array) -> tuple[Array, ...]:
            f_point = path.call("f", point, searching)
            diff = point - const.x
            phi_point = f_point + _dot(xp, diff, diff) * const.half_inv_tau
            good = searching & (phi_point <= bound) & xp.isfinite(phi_point)
            # good rows are searching ones: ^ removes them
            return (searching ^ good, xp.where(good, point, y), xp.where(good, f_point, fy),
                    xp.where(good, phi_point, phi))

        def cond(c: tuple[Array, ...]) -> Array:
            return _any(xp, c[2]) & (c[0] < MAX_BACKTRACKS)

        def body(c: tuple[Array, ...]) -> tuple[Array, ...]:
            # every row still searching tries alpha = 2^-k at its k-th halving: one scalar
            k, alpha, searching, y, fy, phi = c
            alpha = alpha / 2.0
            return k + 1, alpha, *trial(it.y - alpha * p, threshold - alpha * decrease,
                                        searching, y, fy, phi)

        # the full step (alpha = 1, no product) is taken or not by most rows: only the others
        # enter the loop (whose counter and alpha start as Python numbers, which a traced loop
        # turns into arrays), which eager code skips when there are none
        carry = (1, 1.0, *trial(it.y - p, threshold - decrease, searching, it.y, it.fy, it.phi))
        if array_api_compat.is_jax_namespace(xp) or _any(xp, carry[2]):
            carry = path.loop(cond, body, carry)
        _, _, searching, y, fy, phi = carry
        return y, fy, phi, searching


@hookimpl
def benchsuite_integrators() -> list[Integrator]:
    return [ProximalPoint()]
