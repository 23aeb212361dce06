"""The oracle wrapper through which integrators see a problem: counts calls, checks shapes.

The harness, not each integrator, counts oracle calls (as scipy's ``OdeSolver`` counts ``nfev``
in its base class), so every integrator is measured the same way.

Counting is per trajectory but O(1) per call on the hot path: a call over the whole current batch
bumps one scalar; only calls over a subset (``rows=``, e.g. the proximal scheme retrying a few
trajectories) touch the per-trajectory array. Rows leave the batch only when they retire, so a
trajectory's count is the full-batch counter at that moment plus its own partial count.

Code that cannot index on the host (a compiled JAX step) evaluates the whole batch and passes
``where=`` (a boolean mask of the batch): only the rows it selects are counted, since the others'
values are discarded. In the harness's compiled chunks, :class:`ArrayOracle` keeps the counts as
arrays that travel with the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import array_api_compat
import numpy as np

from benchsuite.arrays import to_numpy
from benchsuite.problem import Array, Problem

KINDS = ("f", "grad", "prox")


class OracleError(RuntimeError):
    """An oracle returned something that is not a batch of the expected shape and dtype."""


def is_real_floating(out: Array) -> bool:
    """Whether ``out`` has a real floating dtype (float16/32/64...): O(1), a dtype check.

    Complex results would lose their imaginary part on the way to the tables, and integer or
    boolean ones truncate the steps: both would give wrong labels rather than errors.
    """
    dtype = getattr(out, "dtype", None)
    if isinstance(dtype, np.dtype):  # numpy (and cupy, jax): the fast path, ~0.1 us
        return dtype.kind == "f"
    if dtype is None:
        return False
    try:
        xp = array_api_compat.array_namespace(out)
    except TypeError:  # an array library that array_api_compat does not know: ask numpy
        try:
            return np.dtype(dtype).kind == "f"
        except TypeError:  # nor numpy: cannot tell, so do not fail rows that may be fine
            return True
    return bool(xp.isdtype(dtype, "real floating"))


def checked(out: Array, shape: tuple[int, ...], name: str, kind: str) -> Array:
    """``out`` if it is a batch of this shape with a real floating dtype, else OracleError
    saying which oracle (``name.kind``) returned what."""
    if tuple(getattr(out, "shape", ())) != shape:
        raise OracleError(
            f"{name}.{kind} returned shape {getattr(out, 'shape', type(out))}, "
            f"expected {shape}: oracles must be batched over the first axis"
        )
    if not is_real_floating(out):
        raise OracleError(
            f"{name}.{kind} returned dtype {getattr(out, 'dtype', None)}; oracles must return "
            "real floating arrays (float64): cast with .astype(float) or fix the formula"
        )
    return out


@dataclass
class _Counter:
    full: int
    partial: np.ndarray


class CountedOracles:
    """The three oracles, shape-checked and counted: what a step sees of its problem.

    Subclasses say how a call is counted (``_count``): :class:`Oracle` on the host,
    :class:`ArrayOracle` inside a compiled step.
    """

    problem: Problem

    # -- the three oracles -------------------------------------------------------------------
    def f(self, X: Array, rows: np.ndarray | None = None, where: Array | None = None) -> Array:
        """Values ``f(X)``, shape ``(B,)``, for ``X`` of shape ``(B, n)``.

        ``rows`` (indices into the current batch) says which rows ``X`` holds when it is a
        subset; ``where`` (a (B,) boolean mask) says which rows of a full batch are used, the
        others' values being discarded: only those are counted.
        """
        out = self.problem.f(X)
        self._count("f", rows, where)
        return self._checked(out, (X.shape[0],), "f")

    def grad(self, X: Array, rows: np.ndarray | None = None, where: Array | None = None
             ) -> Array:
        """Gradient, or Clarke subgradient selection, shape ``(B, n)`` (``rows``, ``where``:
        as for :meth:`f`)."""
        out = self.problem.first_order(X)
        self._count("grad", rows, where)
        return self._checked(out, tuple(X.shape), "grad")

    def prox(self, X: Array, tau: float | Array, rows: np.ndarray | None = None,
             where: Array | None = None) -> Array:
        """Proximal points ``argmin_y f(y) + |y - x|^2/(2 tau)``, shape ``(B, n)`` (``rows``,
        ``where``: as for :meth:`f`)."""
        if self.problem.prox is None:
            raise OracleError(f"problem {self.problem.name!r} has no prox")
        out = self.problem.prox(X, tau)
        self._count("prox", rows, where)
        return self._checked(out, tuple(X.shape), "prox")

    def _count(self, kind: str, rows: np.ndarray | None, where: Array | None) -> None:
        raise NotImplementedError

    def _checked(self, out: Array, shape: tuple[int, ...], kind: str) -> Array:
        return checked(out, shape, self.problem.name, kind)


class Oracle(CountedOracles):
    """Counted access to a problem's batched oracles.

    Parameters
    ----------
    problem : Problem
    n_traj : int
        Number of trajectories in the cell; row ``i`` of the first batch is trajectory ``i``.
    """

    def __init__(self, problem: Problem, n_traj: int) -> None:
        self.problem = problem
        self.rows = np.arange(n_traj)  # trajectory id of each row of the current batch
        self._counts = {k: _Counter(0, np.zeros(n_traj, dtype=np.int64)) for k in KINDS}
        self._is_view = False

    def view(self, local: np.ndarray) -> Oracle:
        """An oracle over rows ``local`` of the current batch, sharing this one's counters.

        Used to step part of a batch on its own (the harness isolates a row whose oracle call
        raises); its calls count for its rows only.
        """
        child = object.__new__(Oracle)
        child.problem, child.rows, child._counts = self.problem, self.rows[local], self._counts
        child._is_view = True
        return child

    # -- bookkeeping ---------------------------------------------------------------------------
    def _count(self, kind: str, rows: np.ndarray | None, where: Array | None = None) -> None:
        counter = self._counts[kind]
        if where is not None:
            selected = np.flatnonzero(to_numpy(where))
            rows = selected if rows is None else np.asarray(rows)[selected]
            counter.partial[self.rows[rows]] += 1
        elif rows is None and not self._is_view:
            counter.full += 1
        else:
            counter.partial[self.rows if rows is None else self.rows[rows]] += 1

    def counts(self, local: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Calls so far of each oracle for the given rows of the current batch (default: all).

        Returns
        -------
        dict
            ``{"f": (k,), "grad": (k,), "prox": (k,)}`` integer arrays.
        """
        ids = self.rows if local is None else self.rows[local]
        return {k: c.full + c.partial[ids] for k, c in self._counts.items()}

    def keep(self, local: np.ndarray) -> None:
        """Restrict the current batch to rows ``local`` (the others have retired)."""
        self.rows = self.rows[local]


class ArrayOracle(CountedOracles):
    """Counted access to a problem's oracles inside a compiled (traced) step.

    A step is traced once, so what it adds to the counts must be known without running it:
    calls over the whole batch add a constant, ``calls[kind]`` (a host integer fixed at trace
    time); calls with a ``where`` mask add that mask to ``masked[kind]``, a (B,) integer array
    of the computation (None while there was none). Subsets by ``rows=`` (host indices) are
    refused: a compiled step evaluates the whole batch with a mask.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.calls = dict.fromkeys(KINDS, 0)
        self.masked: dict[str, Array | None] = dict.fromkeys(KINDS)

    def _count(self, kind: str, rows: None, where: Array | None) -> None:
        if rows is not None:
            raise OracleError("oracle calls on a subset of rows (rows=) need host indexing, "
                              "which compiled backends do not have: evaluate the whole batch "
                              "and pass where=mask so that only the rows used are counted")
        if where is None:
            self.calls[kind] += 1
            return
        xp = array_api_compat.array_namespace(where)
        added = xp.astype(where, xp.int64)
        before = self.masked[kind]
        self.masked[kind] = added if before is None else before + added
