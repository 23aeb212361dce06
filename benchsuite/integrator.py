"""Integrators: discretisations of the (sub)gradient flow x' in -df(x), over a batch at once.

The interface follows optax's ``init``/``update`` and diffrax's solver state: hyperparameters are
(frozen dataclass) fields, and the evolving state is explicit data returned by each step, never
hidden in the integrator. To write an integrator, a plugin must

1. subclass :class:`Integrator` as a ``@dataclass(frozen=True)`` whose fields are the
   hyperparameters (with defaults), and validate them in ``__post_init__``;
2. set the class attributes ``name``, ``requires`` (a subset of
   ``{"grad", "subgrad", "prox"}``), ``order`` (``None`` when it has none), ``adaptive`` and
   ``descent`` (``True`` when each step provably decreases f); the class docstring's first line
   is the one-line description in listings;
3. implement ``init(oracle, x0) -> State`` and ``step(oracle, state) -> State``. A step is a pure
   function of its inputs (it returns a new state and never mutates the old one), advances every
   row of the batch by one attempt, rows independently of each other, adds the flow time of
   accepted steps to ``state.t``, and sets ``state.flag`` for rows that cannot go on (see
   :class:`Flag`). The state may be a subclass of :class:`State` with more per-row arrays
   (leading axis ``B``): the harness subsets them all when trajectories retire. When a step
   raises, the harness re-steps halves of the batch from the *old* state to find the rows that
   raise, which is why the step must not mutate it. An integrator that loops over rows with
   stateful per-row objects (a wrapped external solver) cannot be pure cheaply: it catches each
   row's exception itself, raises :class:`RowErrors` with the new state of the other rows,
   and declares ``pure = False`` (any other exception then fails the whole batch);
4. **declare a fixed step** if it takes one: ``explicit_step`` returns the constant step h and
   ``stability_limit`` the largest h lambda for which the method is stable on x' = -lambda x
   (2 for explicit Euler and Heun, 2(1 + beta) for heavy ball, about 2.785 for classical RK4).
   The classifier's step-limit test uses both: without the declaration, a method stalled at its
   stability limit cannot be told from a converged one, and its runs end ``undetermined``;
5. optionally override ``skip(problem)`` to say why it does not apply to a problem,
   ``with_horizon(state, t_end)`` to clip adaptive steps at the flow-time budget, and
   ``with_step(h)`` to give the fixed-step variant that the plugin kit
   (:mod:`benchsuite.testing`) measures the declared ``order`` with.

Only the oracle (never the problem directly) may be called inside ``init`` and ``step``, so that
calls are counted: ``oracle.f(X)`` (shape ``(B,)``), ``oracle.grad(X)`` (the gradient, or the
problem's Clarke subgradient selection, ``(B, n)``) and ``oracle.prox(X, tau)`` (``(B, n)``),
each with an optional ``rows=`` (indices into the current batch) when called on a subset of it.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import array_api_compat

from benchsuite.oracle import Oracle
from benchsuite.problem import Array, Problem
from benchsuite.vocabulary import STOP_MESSAGES, Stop


class Flag(enum.IntEnum):
    """Why a trajectory stopped before its budget; 0 means it is still running.

    Small integers on the hot path; each non-zero flag is the :class:`~benchsuite.vocabulary.Stop`
    of the same name (:attr:`stop`).
    """

    RUNNING = 0
    NONFINITE = 1
    PROX_FAILED = 2
    STEP_COLLAPSE = 3
    ERROR = 4

    @property
    def stop(self) -> Stop:
        """The stop reason this flag records (RUNNING has none)."""
        return Stop(self.name.lower())


#: What each flag means for the user (as scipy's ``MESSAGES``).
MESSAGES = {flag: STOP_MESSAGES[flag.stop] if flag else "ran to its budget" for flag in Flag}


class RowErrors(Exception):
    """Raised by a step that caught the exceptions of some rows itself.

    For integrators that step rows one at a time with stateful per-row objects (which the
    harness could not re-step from the old state): ``state`` is the new state, in which every
    other row took its step, and ``errors`` maps row index to message. The harness fails those
    rows with their messages and keeps the others.
    """

    def __init__(self, state: State, errors: dict[int, str]) -> None:
        super().__init__(f"{len(errors)} row(s) raised")
        self.state, self.errors = state, errors


@dataclass(frozen=True)
class State:
    """The state of a batch of B trajectories.

    Attributes
    ----------
    x : array, shape (B, n)
        Current points.
    t : array, shape (B,)
        Flow time reached (the sum of accepted steps).
    flag : array of int, shape (B,)
        :class:`Flag` per row; non-zero rows are retired by the harness.
    """

    x: Array
    t: Array
    flag: Array

    @classmethod
    def start(cls, x0: Array, **extra: Any) -> Self:
        """A state at flow time 0, all rows running, for the batch ``x0`` of shape ``(B, n)``."""
        xp = array_api_compat.array_namespace(x0)
        device = array_api_compat.device(x0)
        batch = x0.shape[0]
        return cls(x=x0, t=xp.zeros(batch, dtype=xp.float64, device=device),
                   flag=xp.zeros(batch, dtype=xp.int8, device=device), **extra)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def concat(cls, xp: Any, parts: list[State]) -> State:
        """Stack the rows of sub-batch states back together, in order (shared scalar fields,
        such as a step counter, come from the first part)."""
        first = parts[0]
        changes = {}
        for fld in dataclasses.fields(first):
            value = getattr(first, fld.name)
            shape = getattr(value, "shape", None)
            if shape and shape[0] == first.x.shape[0]:
                changes[fld.name] = xp.concat([getattr(p, fld.name) for p in parts], axis=0)
        return dataclasses.replace(first, **changes)

    def take(self, xp: Any, idx: Array) -> Self:
        """The sub-batch of rows ``idx``: every array field with a leading batch axis is indexed."""
        batch = self.x.shape[0]
        changes = {}
        for fld in dataclasses.fields(self):
            value = getattr(self, fld.name)
            shape = getattr(value, "shape", None)
            if shape and shape[0] == batch:
                changes[fld.name] = xp.take(value, idx, axis=0)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Integrator(abc.ABC):
    """Base class of all integrators: see the module docstring for what to provide."""

    name: ClassVar[str]
    description: ClassVar[str] = ""  # default: the class docstring
    requires: ClassVar[frozenset[str]]
    order: ClassVar[int | None] = None
    adaptive: ClassVar[bool] = False
    descent: ClassVar[bool] = False
    array_api: ClassVar[bool] = True
    #: False for a step that consumes its input state (stateful per-row solvers): it must
    #: raise RowErrors for its faulty rows, as the harness cannot re-step such a state.
    pure: ClassVar[bool] = True

    @abc.abstractmethod
    def init(self, oracle: Oracle, x0: Array) -> State:
        """Initial state for the batch ``x0`` of shape ``(B, n)``."""

    @abc.abstractmethod
    def step(self, oracle: Oracle, state: State) -> State:
        """Advance every row of the batch by one step attempt."""

    def with_horizon(self, state: State, t_end: float) -> State:
        """Tell an adaptive integrator to land exactly on flow time ``t_end`` (default: no-op).

        The harness calls it after ``init`` with the flow-time budget, so that adaptive methods
        are compared with fixed-step ones at equal t instead of overshooting it.
        """
        return state

    def skip(self, problem: Problem) -> str | None:
        """Why this integrator does not apply to ``problem``, or ``None`` when it does."""
        if "grad" in self.requires and not problem.smooth:
            return f"{self.name} needs a gradient, and {problem.name} is nonsmooth"
        if "prox" in self.requires and problem.prox is None:
            return f"{self.name} needs a prox, and {problem.name} provides none"
        return None

    @property
    def explicit_step(self) -> float | None:
        """The fixed step h of an explicit method, or None (adaptive, implicit, diminishing).

        The classifier runs its step-limit test for integrators that declare one, against
        :attr:`stability_limit`.
        """
        return None

    @property
    def stability_limit(self) -> float:
        """The largest h lambda for which one step is stable on x' = -lambda x (Euler: 2)."""
        return 2.0

    def with_step(self, h: float) -> Self | None:
        """This integrator with a constant step ``h``, or None if it has no fixed-step variant.

        The plugin kit's convergence-order and stability checks use it (an adaptive method
        cannot be measured by step halving otherwise). Default: when ``explicit_step`` is set,
        the copy whose float hyperparameter equal to it is ``h``; override it when the step is
        a hyperparameter that ``explicit_step`` does not report (an implicit method's tau, an
        adaptive method's fixed-step mode).
        """
        current = self.explicit_step
        if current is None:
            return None
        for name, value in self.params.items():
            if isinstance(value, float) and value == current:
                return self.with_params(**{name: float(h)})
        return None

    @property
    def params(self) -> dict[str, Any]:
        """Hyperparameters, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def defaults(self) -> dict[str, Any]:
        """The declared default of each hyperparameter that has one (display names show only
        what differs from them)."""
        return {f.name: f.default for f in dataclasses.fields(self)
                if f.default is not dataclasses.MISSING}

    def with_params(self, **params: Any) -> Self:
        """A copy with other hyperparameters.

        Each value must have the type of the hyperparameter's default (a number for a number,
        an integer for an integer, a bool for a bool, a string for a string: a TypeError says
        which otherwise; an integral float such as 3.0 becomes 3 for an integer); then
        ``__post_init__`` validates the values themselves.
        """
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(
                f"integrator {self.name!r} has no hyperparameter {sorted(unknown)}; "
                f"it has {sorted(self.params)}"
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        checked = {}
        for key, value in params.items():
            default = defaults[key]
            if default is dataclasses.MISSING:  # no default: the current value's type
                default = getattr(self, key)
            checked[key] = _check_type(self.name, key, default, value)
        return dataclasses.replace(self, **checked)

    @property
    def label(self) -> str:
        """Name with hyperparameters, e.g. ``euler(h=0.01)``: the integrator column of results."""
        inside = ",".join(f"{k}={_exact(v)}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.params.items())
        return f"{self.name}({inside})"

    def summary(self) -> str:
        """One line for listings."""
        text = self.description or type(self).__doc__ or self.name
        return text.strip().splitlines()[0]


def _exact(value: float) -> str:
    """A float as short as ``:g`` writes it, unless that loses digits: labels name cells and
    run folders, so two different step sizes must never share one."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _check_type(owner: str, key: str, default: Any, value: Any) -> Any:
    """``value`` for a hyperparameter whose default is ``default``, if its type fits.

    bool needs a bool; a number (int or float) refuses bools and non-numbers; an int refuses
    non-integral floats (3.0 becomes 3); a str needs a str; None and other types: no check.
    """
    def refuse(expected: str) -> TypeError:
        return TypeError(f"{owner}: hyperparameter {key} must be {expected}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse("a boolean (true or false)")
    elif isinstance(default, numbers.Real):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise refuse("an integer" if isinstance(default, numbers.Integral) else "a number")
        if isinstance(default, numbers.Integral) and not isinstance(value, numbers.Integral):
            if not float(value).is_integer():
                raise refuse("an integer")
            value = int(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise refuse("a string")
    return value


def require_positive(owner: str, **values: float) -> None:
    """Raise a ValueError naming the hyperparameter unless every value is finite and > 0
    (booleans are not numbers here)."""
    for key, value in values.items():
        if isinstance(value, bool) or not (isinstance(value, int | float)
                                           and 0 < value < float("inf")):
            raise ValueError(f"{owner}: hyperparameter {key} must be a finite number > 0, "
                             f"got {value!r}")
