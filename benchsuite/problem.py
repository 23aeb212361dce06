"""Problems: batched oracles plus what theory says about them.

A :class:`Problem` is data, not a class hierarchy: a name, a dimension, batched oracles and
metadata. Families of problems are functions that build one :class:`Problem` per parameter set.

To provide a problem, a plugin must give

1. ``name`` (unique across plugins; lowercase, digits, ``_-.=,[]``) and dimension ``n``;
2. ``f(X) -> (B,)`` for ``X`` of shape ``(B, n)``;
3. ``grad(X) -> (B, n)`` when the problem is smooth (C^1), or ``subgrad(X) -> (B, n)``, a Clarke
   subgradient selection (the minimal-norm element where one is known), when it is not;
4. ``sample(rng, B) -> (B, n)``, float64 numpy initial points drawn from a
   :class:`numpy.random.Generator`;
5. the metadata fields: ``f_star`` and ``attained``, ``smooth``, ``coercive`` and the
   :class:`Theory` verdict with its source.

Optional: ``prox(X, tau) -> (B, n)`` (a global minimizer of ``f(y) + |y - x|^2 / (2 tau)``,
row by row), ``invariant(X) -> (B, k)`` (a quantity the exact flow conserves), the known
``critical_values`` and ``critical_values_complete`` (True only when they are *all* the critical
values: then a bounded trajectory whose limit value is none of them is impossible, and the
classifier refuses such a converged label), a ``certificate`` and ``params`` for members of a
family.

The certificate contract: ``certificate(X, f) -> (B,)`` receives host numpy arrays, the
*final* points ``X`` (B, n) of the trajectories still unlabelled after the fault, blow-up and
step-limit rules (never failed, diverged, step-limited or safety-net rows) and their values
``f`` (B,), and returns for each row a landscape outcome (``"converged_global"``,
``"converged_spurious"``, ``"escape_global"`` or ``"escape_spurious"``) that theory *proves* for a
flow trajectory through that point, or ``""`` where nothing is proved. Anything else (a label
about the run such as ``"failed"``, an unknown string, an exception, a wrong shape) is a plugin
error: the row keeps
its generic label and the error is reported with the problem's name. Certificates are
exact statements about the flow, not heuristics: a campaign run with ``--no-certificates``
classifies with the generic rules alone, and the report compares the two.

Oracles receive arrays of any array-API namespace and must return arrays of the same namespace
(use :func:`array_api_compat.array_namespace`); a numpy-only problem sets ``array_api=False``.

A smooth, array-API generic problem may give only ``f`` and set ``autodiff=True``: its ``grad``
is then derived from ``f`` by JAX's automatic differentiation
(:func:`benchsuite.autodiff.autodiff_gradient`; JAX must be installed), on every backend.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = Any  # an array of some array-API namespace, shape given in each docstring
BatchFunction = Callable[[Array], Array]
ProxFunction = Callable[[Array, float], Array]
Sampler = Callable[[np.random.Generator, int], np.ndarray]

#: What a problem is for (``Problem.role``).
ROLES = ("benchmark", "negative control", "exploratory probe")
#: Names end up in file paths and shell commands: keep them to a safe alphabet.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-.=,\[\]]*$")


class Verdict(enum.StrEnum):
    """What the literature establishes about a property of a problem."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"  # not proved either way in the sources
    OPEN = "open"  # stated as an open question in the sources
    NOT_APPLICABLE = "n/a"  # e.g. the negative control, which is not bounded below


@dataclass(frozen=True)
class Theory:
    """What theory says about a problem's landscape and its (sub)gradient trajectories.

    Parameters
    ----------
    bounded_trajectories : Verdict
        Whether every (sub)gradient trajectory is bounded (Josz & Li, Definition 7).
    spurious_local_minima : Verdict
        Whether there is a spurious (classical) local minimum.
    spurious_minima_at_infinity : Verdict
        Whether there is a spurious local minimum at infinity (Josz & Li, Definition 3).
    source : str
        Paper, section, equation or figure.
    note : str
        One or two sentences of context (what the trajectories are expected to do).
    """

    bounded_trajectories: Verdict
    spurious_local_minima: Verdict
    spurious_minima_at_infinity: Verdict
    source: str
    note: str = ""


@dataclass(frozen=True, eq=False)
class Problem:
    """A benchmark problem: batched oracles and metadata. See the module docstring."""

    name: str
    n: int
    f: BatchFunction
    sample: Sampler
    f_star: float
    attained: bool
    smooth: bool
    coercive: bool
    theory: Theory
    description: str
    grad: BatchFunction | None = None
    subgrad: BatchFunction | None = None
    prox: ProxFunction | None = None
    invariant: BatchFunction | None = None
    certificate: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    critical_values: tuple[float, ...] = ()
    critical_values_complete: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    role: str = "benchmark"  # one of ROLES
    array_api: bool = True
    #: grad is derived from f by automatic differentiation (JAX)
    autodiff: bool = False

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"problem name {self.name!r} is not allowed: use lowercase letters, digits and "
                "'_-.=,[]' so that it is safe in file names"
            )
        if self.n < 1:
            raise ValueError(f"problem {self.name!r}: dimension n must be >= 1, got {self.n}")
        self._derive_gradient()
        if self.smooth and self.grad is None:
            raise ValueError(f"smooth problem {self.name!r} must provide grad, or set "
                             "autodiff=True to derive it from f with JAX")
        if not self.smooth and self.subgrad is None:
            raise ValueError(f"nonsmooth problem {self.name!r} must provide subgrad")
        if math.isnan(self.f_star) or self.f_star == math.inf:
            raise ValueError(f"problem {self.name!r}: f_star must be a number or -inf "
                             f"(the infimum of f), got {self.f_star!r}")
        if self.critical_values_complete and not self.critical_values:
            raise ValueError(f"problem {self.name!r}: critical_values_complete needs the list "
                             "of critical_values")

    def _derive_gradient(self) -> None:
        """With ``autodiff=True``, set ``grad`` to JAX's derivative of ``f``."""
        from benchsuite.autodiff import MARK, autodiff_gradient

        # dataclasses.replace passes the derived grad back with autodiff=True: accept it,
        # and derive it again, from this problem's f (replace may have given a new one)
        derived = getattr(self.grad, MARK, False)
        if not self.autodiff:
            if derived:
                raise ValueError(f"problem {self.name!r}: its grad was derived from f by "
                                 "autodiff, yet autodiff=False: give a hand-written grad, or "
                                 "keep autodiff=True")
            return
        if not self.smooth:
            raise ValueError(f"problem {self.name!r}: autodiff=True needs smooth=True: "
                             "automatic differentiation gives the gradient of a C^1 f, not a "
                             "Clarke subgradient selection (at a kink it returns whatever "
                             "branch the code takes); give subgrad by hand")
        if not self.array_api:
            raise ValueError(f"problem {self.name!r}: autodiff=True needs array_api=True: JAX "
                             "differentiates f by calling it with JAX arrays, so f must "
                             "compute in its input's namespace")
        if self.grad is not None and not derived:
            raise ValueError(f"problem {self.name!r} gives both grad and autodiff=True: drop "
                             "grad to derive the gradient from f, or drop autodiff=True to "
                             "use the hand-written one")
        object.__setattr__(self, "grad", autodiff_gradient(self.f))  # frozen dataclass

    @property
    def first_order(self) -> BatchFunction:
        """The first-order oracle: the gradient if smooth, else the Clarke selection."""
        return self.grad if self.grad is not None else self.subgrad

    @property
    def oracles(self) -> frozenset[str]:
        """Names of the oracles this problem provides (``grad``, ``subgrad``, ``prox``)."""
        have = {"subgrad"}  # a gradient is a (singleton) Clarke subgradient
        if self.grad is not None:
            have.add("grad")
        if self.prox is not None:
            have.add("prox")
        return frozenset(have)

    def summary(self) -> str:
        """One line for listings."""
        return self.description.strip().splitlines()[0]

    def details(self) -> dict[str, Any]:
        """Every metadata field, flattened for a verbose listing or a results manifest."""
        return {
            "name": self.name,
            "n": self.n,
            "params": dict(self.params),
            "role": self.role,
            "f_star": self.f_star,
            "attained": self.attained,
            "smooth": self.smooth,
            "coercive": self.coercive,
            "oracles": sorted(self.oracles),
            "critical_values": list(self.critical_values),
            "critical_values_complete": self.critical_values_complete,
            "invariant": self.invariant is not None,
            "certificate": self.certificate is not None,
            "bounded_trajectories": str(self.theory.bounded_trajectories),
            "spurious_local_minima": str(self.theory.spurious_local_minima),
            "spurious_minima_at_infinity": str(self.theory.spurious_minima_at_infinity),
            "source": self.theory.source,
            "note": self.theory.note,
            "array_api": self.array_api,
            # how grad is computed: "autodiff (JAX)", "hand-written", or None (nonsmooth)
            "gradient": ("autodiff (JAX)" if self.autodiff
                         else "hand-written" if self.grad is not None else None),
        }


def uniform_box(low: float | np.ndarray, high: float | np.ndarray, n: int) -> Sampler:
    """Sampler of initial points uniform on the box ``[low, high]^n``."""
    lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (n,))

    def sample(rng: np.random.Generator, batch: int) -> np.ndarray:
        return rng.uniform(lo, hi, size=(batch, n))

    return sample


def gaussian(scale: float, n: int, mean: float | np.ndarray = 0.0) -> Sampler:
    """Sampler of initial points ``mean + scale * N(0, I_n)``."""
    mu = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n,))

    def sample(rng: np.random.Generator, batch: int) -> np.ndarray:
        return mu + scale * rng.standard_normal((batch, n))

    return sample
