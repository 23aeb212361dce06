"""Gradients by automatic differentiation (JAX), for problems that give only ``f``.

A problem whose ``f`` is array-API generic may set ``autodiff=True`` instead of writing
``grad`` by hand: :func:`autodiff_gradient` differentiates the batched ``f`` with
``jax.grad``. Rows of a batch are independent (every oracle's contract), so the gradient of
``sum(f(X))`` with respect to ``X`` is, row by row, the gradient of ``f`` at that row.

The derived gradient is an oracle like a hand-written one: it takes arrays of any namespace
and returns arrays of the same namespace.

* JAX arrays (eager, or traced inside ``jax.jit``, as on the JAX backend) stay on their device:
  the derivative is part of the caller's computation, never copied to the host.
* Host arrays (numpy, the default backend; also ``array_api_strict``, torch or cupy) are
  copied to a float64 JAX array on the CPU, differentiated by a compiled function cached per
  ``f``, and the float64 result comes back in the input's namespace and device. The batch is
  padded to a power of two, so that a batch that shrinks as rows finish compiles at most
  log2(B) times.

JAX is an optional dependency: only problems that ask for autodiff gradients (and the plugin
kit's ``autodiff`` check) need it.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

import array_api_compat
import numpy as np

if TYPE_CHECKING:
    from benchsuite.problem import Array, BatchFunction

__all__ = ["AutodiffError", "AutodiffUnavailable", "autodiff_gradient", "jax_installed"]

#: The attribute that marks a gradient derived here (``Problem`` accepts such a ``grad`` back
#: from ``dataclasses.replace`` and derives it again from the new problem's ``f``).
MARK = "__benchsuite_autodiff__"
#: XLA options for a gradient evaluated a few times (the plugin kit's check): no backend
#: optimization, the classic emitters and one codegen thread compile the catalog's 29 smooth
#: gradients (tracing included) in 1.3 s of CPU time instead of 3.8 s; a run keeps the
#: defaults, as its gradient is evaluated thousands of times.
QUICK_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False,
                 "xla_cpu_parallel_codegen_split_count": 1}


class AutodiffUnavailable(ImportError):
    """JAX, which autodiff gradients need, is not installed (or does not import)."""


class AutodiffError(TypeError):
    """``f`` cannot be differentiated by JAX: it is numpy-only, or not traceable."""


def jax_installed() -> bool:
    """Whether ``import jax`` can succeed, without importing it (which takes 0.4 s)."""
    if "jax" in sys.modules:
        return sys.modules["jax"] is not None  # None: an import that is blocked on purpose
    return importlib.util.find_spec("jax") is not None


def _unavailable(why: str = "") -> AutodiffUnavailable:
    return AutodiffUnavailable(
        "problems that ask for autodiff gradients (autodiff=True) need JAX, which is not "
        f"installed{f' ({why})' if why else ''}: pip install jax")


def _jax() -> Any:
    try:
        import jax
    except ImportError as exc:
        raise _unavailable(str(exc)) from exc
    return jax


def autodiff_gradient(f: BatchFunction, *, quick: bool = False) -> BatchFunction:
    """The batched gradient of a batched, array-API generic ``f``, by JAX autodiff.

    Parameters
    ----------
    f : callable
        ``f(X) -> (B,)`` for ``X`` of shape ``(B, n)``, rows independent, computing in the
        namespace of its input (``array_api_compat.array_namespace(X)``), so that JAX can
        trace it.
    quick : bool
        For host inputs, compile with XLA's optimizations off (:data:`QUICK_OPTIONS`): about
        half the compile time, slower code. For a function evaluated a few times, as in the
        plugin kit; a run keeps the default.

    Returns
    -------
    callable
        ``grad(X) -> (B, n)``, the gradient ``jax.grad(lambda X: sum(f(X)))(X)``: a JAX array
        for JAX input (also inside ``jax.jit``), else a float64 array of the input's
        namespace and device. It carries the attribute ``__benchsuite_autodiff__ = True``.

    Raises
    ------
    AutodiffUnavailable
        At once, when JAX is not installed (an ImportError that says ``pip install jax``).
    AutodiffError
        When the gradient is called and JAX cannot trace ``f``: ``f`` is numpy-only (it
        converts its input to numpy), branches in Python on array values, or writes into an
        array in place.

    Notes
    -----
    Host inputs switch on ``jax_enable_x64`` (as the JAX backend does): without it JAX would
    compute in float32.
    """
    if not jax_installed():
        raise _unavailable()  # now, when the problem is built, not at its first gradient
    try:
        hash(f)
    except TypeError:  # no cache key (a callable dataclass, say): compiled once per grad
        compiled = functools.cache(functools.partial(_compile, f))
    else:
        compiled = functools.partial(_compiled, f)

    def grad(X: Array) -> Array:
        if array_api_compat.is_jax_array(X):  # tracers too: the caller's jit traces through
            return _traced(f, compiled(False), X)
        return _on_host(f, X, compiled, quick)

    grad.__name__ = grad.__qualname__ = f"autodiff_grad_of_{getattr(f, '__name__', 'f')}"
    grad.__doc__ = "Gradient of f by JAX autodiff (benchsuite.autodiff.autodiff_gradient)."
    grad.__wrapped__ = f  # inspect.unwrap and a reader of the problem find the f behind it
    setattr(grad, MARK, True)
    return grad


def _compile(f: BatchFunction, quick: bool) -> Any:
    """``jax.jit(jax.grad(sum of f))`` (jit then compiles once per shape and dtype)."""
    jax = _jax()

    def total(X: Array) -> Array:
        return jax.numpy.sum(f(X))

    return jax.jit(jax.grad(total), compiler_options=QUICK_OPTIONS if quick else None)


#: One compiled gradient per f, shared by every grad derived from it (a problem rebuilt by
#: dataclasses.replace derives its grad again); bounded, as lambdas made in a loop are new fs.
_compiled = functools.lru_cache(maxsize=256)(_compile)


def _traced(f: BatchFunction, compiled: Any, X: Array) -> Array:
    """``compiled(X)``, with JAX's tracing errors turned into what the plugin author must
    change in ``f``."""
    jax = _jax()
    try:
        return compiled(X)
    except jax.errors.TracerArrayConversionError as exc:
        raise AutodiffError(
            f"f ({_name(f)}) is numpy-only: it converts its input to a numpy array, so JAX "
            "cannot differentiate it. Compute in the input's namespace (xp = "
            "array_api_compat.array_namespace(X)), or give grad by hand "
            f"(autodiff=False). JAX said: {_first_line(exc)}") from exc
    except (jax.errors.ConcretizationTypeError, jax.errors.NonConcreteBooleanIndexError) as exc:
        raise AutodiffError(
            f"f ({_name(f)}) cannot be traced by JAX: it branches in Python on array values "
            "(if, bool, int of an array) or indexes with a boolean mask. Use xp.where, or give "
            f"grad by hand (autodiff=False). JAX said: {_first_line(exc)}") from exc
    except TypeError as exc:
        if "immutable" not in str(exc):
            raise
        raise AutodiffError(
            f"f ({_name(f)}) cannot be traced by JAX: it writes into an array in place "
            "(X[i] = ...), which JAX arrays do not support. Build the result with xp.stack "
            f"or xp.where, or give grad by hand (autodiff=False). JAX said: "
            f"{_first_line(exc)}") from exc


def _on_host(f: BatchFunction, X: Array, compiled: Any, quick: bool) -> Array:
    """The gradient of host input: float64 on JAX's CPU device, back as float64 in the
    namespace and on the device of ``X``."""
    from benchsuite.arrays import to_numpy

    jax = _jax()
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)  # else device_put casts to float32
    host = np.asarray(to_numpy(X), dtype=np.float64)
    rows = host.shape[0]
    if rows > 1 and rows & (rows - 1):
        # padded with copies of the last row (rows are independent) to the next power of two:
        # on numpy, finished rows leave the batch, and every new batch size would compile anew
        pad = (1 << (rows - 1).bit_length()) - rows
        host = np.concatenate([host, np.repeat(host[-1:], pad, axis=0)])
    cpu = _host_device()
    x = host if cpu is None else jax.device_put(host, cpu)
    try:
        G = _traced(f, compiled(quick), x)
    except jax.errors.JaxRuntimeError as exc:
        if not quick or "No such compile option" not in str(exc):
            raise
        # an older or newer XLA without one of the quick options: compile as a run does
        G = _traced(f, compiled(False), x)
    # sliced on the host (a JAX slice is an op of its own); a writable copy, as JAX's host
    # view is read-only and a caller may update the gradient in place
    G = np.array(np.asarray(G)[:rows], dtype=np.float64)
    if isinstance(X, np.ndarray):
        return G
    xp = array_api_compat.array_namespace(X)
    return xp.asarray(G, device=array_api_compat.device(X))


@functools.cache
def _host_device() -> Any:
    """Where host batches are differentiated: the CPU, even where JAX has a GPU (a host batch
    would go there and back at every call). None when the CPU is JAX's default device: numpy
    input then goes straight to the compiled function, JAX's fastest path (60 us a call
    against 110 us through device_put, measured on a 256 x 2 batch)."""
    jax = _jax()
    return None if jax.default_backend() == "cpu" else jax.devices("cpu")[0]


def _name(f: BatchFunction) -> str:
    return getattr(f, "__qualname__", None) or repr(f)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
