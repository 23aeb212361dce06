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

_NAMESPACES: dict[type, Any] = {}


def namespace(*arrays: Any) -> Any:
    """``array_api_compat.array_namespace``, with the answer cached by array type for one
    numpy or JAX array: oracles ask on every call, and the full lookup costs as much as a
    small batch's arithmetic."""
    if len(arrays) == 1:
        kind = type(arrays[0])
        found = _NAMESPACES.get(kind)
        if found is None:
            found = array_api_compat.array_namespace(arrays[0])
            if kind is np.ndarray or array_api_compat.is_jax_array(arrays[0]):
                _NAMESPACES[kind] = found
        return found
    return array_api_compat.array_namespace(*arrays)


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


def while_loop(xp: Any, cond: Any, body: Any, carry: Any) -> Any:
    """``while cond(carry): carry = body(carry)``, compiled on JAX (``lax.while_loop``).

    Integrators whose step iterates (an inner solve, a line search) loop through this helper
    instead of a Python ``while`` on ``bool(...)``, so that the same code runs eagerly on
    numpy and inside the harness's compiled chunks on JAX, where the host cannot read a
    traced value. ``carry`` is a tuple of arrays whose shapes and dtypes ``body`` keeps.
    """
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return jax.lax.while_loop(cond, body, carry)
    while bool(cond(carry)):
        carry = body(carry)
    return carry


def where_rows(xp: Any, mask: Array, new: Array, old: Array) -> Array:
    """Rows of ``new`` where the (B,) ``mask`` holds, else rows of ``old`` ((B,) or (B, ...))."""
    if new.ndim > 1:
        mask = xp.reshape(mask, (-1,) + (1,) * (new.ndim - 1))
    return xp.where(mask, new, old)
