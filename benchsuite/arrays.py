"""Array-API helpers shared by the core and the built-in plugins.

Built-in problems and integrators are written against the array API standard through
``array_api_compat``, so the same code runs on numpy, ``array_api_strict`` (our tests) and GPU
namespaces. These helpers cover the few things the standard leaves to each library.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from benchsuite.problem import Array

namespace = array_api_compat.array_namespace


def to_numpy(x: Array) -> np.ndarray:
    """A host numpy copy (or view) of an array of any namespace."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def asarray_like(xp: Any, value: Any, like: Array) -> Array:
    """``value`` (numpy data, list, scalar) as float64 in the namespace and device of ``like``."""
    return xp.asarray(value, dtype=xp.float64, device=array_api_compat.device(like))


def softplus(xp: Any, z: Array) -> Array:
    """``log(1 + exp(z))`` without overflow (``logaddexp`` is in the standard)."""
    return xp.logaddexp(xp.zeros_like(z), z)


def sigmoid(xp: Any, z: Array) -> Array:
    """Overflow-safe logistic ``1/(1+exp(-z))`` with full relative precision for z << 0.

    ``exp(-softplus(-z))`` never evaluates ``exp`` of a positive number, and stays accurate
    until the true value underflows (z < -745), unlike ``(1 + tanh(z/2))/2`` which is exactly 0
    already for z < -38: that would create false critical points on the sigmoid problems.
    """
    return xp.exp(-softplus(xp, -z))


def sigmoid_prime(xp: Any, z: Array) -> Array:
    """``sigma(z) * sigma(-z)``, computed in log space so that it underflows only below e^-745."""
    return xp.exp(-softplus(xp, z) - softplus(xp, -z))


def from_columns(xp: Any, columns: list[Array]) -> Array:
    """The (B, n) array whose columns are the given (B,) arrays, built column-contiguous.

    Stacking along axis 0 and transposing copies each column in one contiguous block, where
    ``stack(axis=1)`` interleaves them element by element: several times faster for the small-n,
    large-B batches of the catalog, and elementwise arithmetic then keeps the layout.
    """
    return xp.stack(columns, axis=0).T
