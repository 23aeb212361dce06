"""Packing a batch of parameter vectors ``(B, n)`` into stacks of matrices, and back.

Factorization and network problems optimise over tuples of matrices; oracles see flat rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

from benchsuite.arrays import asarray_like, namespace

Array = Any


def unpack(xp: Any, X: Array, shapes: Sequence[tuple[int, int]]) -> list[Array]:
    """Split rows of ``X`` (B, n) into matrices of the given shapes, each (B, rows, cols)."""
    out, start = [], 0
    batch = X.shape[0]
    for rows, cols in shapes:
        stop = start + rows * cols
        out.append(xp.reshape(X[:, start:stop], (batch, rows, cols)))
        start = stop
    return out


def pack(xp: Any, mats: Sequence[Array]) -> Array:
    """Inverse of :func:`unpack`: stacks of matrices (B, r, c) to rows (B, n)."""
    batch = mats[0].shape[0]
    return xp.concat([xp.reshape(m, (batch, -1)) for m in mats], axis=1)


def size(shapes: Sequence[tuple[int, int]]) -> int:
    """Number of parameters of a tuple of matrices."""
    return sum(prod(s) for s in shapes)


def gram_difference(xp: Any, A: Array, B: Array) -> Array:
    """``A^T A - B^T B`` per batch element, flattened to (B, r*r): the balancedness invariant."""
    At, Bt = xp.matrix_transpose(A), xp.matrix_transpose(B)
    diff = At @ A - Bt @ B
    return xp.reshape(diff, (diff.shape[0], -1))


def factor_residual(xp: Any, W: Array, shapes: Sequence[tuple[int, int]], M: Any
                    ) -> tuple[Array, Array, Array]:
    """X, Y and X Y^T - M for rows W = (vec X, vec Y) of a factorization; M is numpy data."""
    Xf, Yf = unpack(xp, W, shapes)
    return Xf, Yf, Xf @ xp.matrix_transpose(Yf) - asarray_like(xp, M, W)


def factor_invariant(shapes: Sequence[tuple[int, int]]) -> Callable[[Array], Array]:
    """The invariant X^T X - Y^T Y of a factorization's flow, as a batched oracle."""
    def invariant(W: Array) -> Array:
        xp = namespace(W)
        return gram_difference(xp, *unpack(xp, W, shapes))

    return invariant
