"""Exact batched global minimization in one dimension, and the 1-D proximal operator built on it.

The proximal point ``argmin_y f(y) + (y - x)^2/(2 tau)`` must be a *global* minimizer (the energy
estimate of [JL] Appendix D compares against y = x), so a local Newton solve is not enough for
nonconvex f. In one dimension the global minimizer is found by a dense scan of the interval
that must contain it, then golden-section refinement around the best grid point. Everything is
batched over rows and array-API generic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from benchsuite.arrays import namespace

Array = Any
GRID = 2049  # scan resolution: (hi - lo) / GRID is the width of the refined bracket
GOLDEN_ITERATIONS = 90  # 0.618^90 ~ 1e-19: refines the bracket to machine precision
ROWS_PER_CHUNK = 512  # caps the scan's memory at ROWS_PER_CHUNK * GRID values
_INVPHI = (math.sqrt(5.0) - 1.0) / 2.0


def minimize_1d(phi: Callable[[Array], Array], lo: Array, hi: Array) -> Array:
    """Global minimizers of ``phi`` over ``[lo, hi]``, one per row.

    Parameters
    ----------
    phi : callable
        Maps a ``(B, k)`` array of candidates (row i for problem i) to values ``(B, k)``.
    lo, hi : array, shape (B,)
        Bounds of the search interval of each row.

    Returns
    -------
    array, shape (B,)
    """
    xp = namespace(lo)
    frac = xp.reshape(xp.linspace(0.0, 1.0, GRID, dtype=xp.float64), (1, GRID))
    width = hi - lo
    grid = xp.reshape(lo, (-1, 1)) + xp.reshape(width, (-1, 1)) * frac
    vals = phi(grid)
    vals = xp.where(xp.isnan(vals), xp.inf, vals)
    best = xp.argmin(vals, axis=1)
    step = width / (GRID - 1)
    centre = lo + xp.astype(best, xp.float64) * step
    a = xp.maximum(centre - step, lo)
    b = xp.minimum(centre + step, hi)
    c = b - _INVPHI * (b - a)
    d = a + _INVPHI * (b - a)
    fc, fd = _col(phi, c), _col(phi, d)
    for _ in range(GOLDEN_ITERATIONS):
        left = fc < fd
        b = xp.where(left, d, b)
        a = xp.where(left, a, c)
        new = xp.where(left, b - _INVPHI * (b - a), a + _INVPHI * (b - a))
        fnew = _col(phi, new)
        c, d = xp.where(left, new, d), xp.where(left, c, new)
        fc, fd = xp.where(left, fnew, fd), xp.where(left, fc, fnew)
    mid = (a + b) / 2
    # never return something worse than the best grid point (guards a non-unimodal bracket)
    take_grid = _col(phi, mid) > xp.min(vals, axis=1)
    return xp.where(take_grid, centre, mid)


def _col(phi, y):
    xp = namespace(y)
    return phi(xp.reshape(y, (-1, 1)))[:, 0]


def prox_1d(f: Callable[[Array], Array], f_star: float) -> Callable[[Array, float], Array]:
    """The exact proximal operator of a 1-D problem (``f`` maps (B, 1) to (B,)).

    Any prox point y of x satisfies ``(y - x)^2/(2 tau) <= f(x) - f(y) <= f(x) - f_star``, so it
    lies in ``x +- sqrt(2 tau (f(x) - f_star))``: the interval scanned.
    """

    def prox(X: Array, tau: float) -> Array:
        xp = namespace(X)
        if X.shape[0] > ROWS_PER_CHUNK:  # chunks of rows bound the scan's memory
            return xp.concat([prox(X[s:s + ROWS_PER_CHUNK], tau)
                              for s in range(0, X.shape[0], ROWS_PER_CHUNK)], axis=0)
        x = X[:, 0]
        radius = xp.sqrt(2.0 * tau * xp.maximum(f(X) - f_star, 0.0)) + 1e-12

        def phi(Y):
            vals = f(xp.reshape(Y, (-1, 1)))
            return xp.reshape(vals, Y.shape) + (Y - xp.reshape(x, (-1, 1))) ** 2 / (2.0 * tau)

        return xp.reshape(minimize_1d(phi, x - radius, x + radius), (-1, 1))

    return prox
