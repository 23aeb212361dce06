"""Conformance checks of an :class:`~benchsuite.integrator.Integrator` (one small function each).

They run the integrator on reference problems of known flow (:mod:`benchsuite.testing.reference`)
through a counting :class:`~benchsuite.oracle.Oracle`, exactly as the harness does.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from benchsuite.arrays import namespace, to_numpy
from benchsuite.integrator import Integrator, State
from benchsuite.oracle import Oracle, OracleError
from benchsuite.problem import NAME_PATTERN, Problem
from benchsuite.testing.findings import Context, check, fail, skip, warn
from benchsuite.testing.reference import (
    A_REF,
    X0_REF,
    exact_flow,
    oracle_variants,
    product,
    quadratic,
)

ORACLE_NAMES = frozenset({"grad", "subgrad", "prox"})
STEPS = 5
#: What every check after them assumes: a well-formed declaration and State.
NEEDS = ("declaration", "state")


class _CountingOracle(Oracle):
    """An oracle that also counts its own invocations (any rows)."""

    def __init__(self, problem: Problem, n_traj: int) -> None:
        super().__init__(problem, n_traj)
        self.invocations = 0

    def f(self, X, rows=None, where=None):
        self.invocations += 1
        return super().f(X, rows, where)

    def grad(self, X, rows=None, where=None):
        self.invocations += 1
        return super().grad(X, rows, where)

    def prox(self, X, tau, rows=None, where=None):
        self.invocations += 1
        return super().prox(X, tau, rows, where)


def _host(state: State) -> dict[str, Any]:
    """Host copies of every numeric array field of a state (not object arrays of solvers)."""
    out = {}
    for fld in dataclasses.fields(state):
        value = getattr(state, fld.name)
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            host = np.array(to_numpy(value), copy=True)
            if host.dtype.kind in "biuf":
                out[fld.name] = host
    return out


def _run(integrator: Integrator, problem: Problem, x0: np.ndarray, steps: int = STEPS
         ) -> tuple[State, Oracle]:
    oracle = Oracle(problem, x0.shape[0])
    state = integrator.init(oracle, x0)
    for _ in range(steps):
        state = integrator.step(oracle, state)
    return state, oracle


def _applicable(integrator: Integrator, problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if integrator.skip(p) is None]


def _reference(integrator: Integrator) -> Problem:
    """The first oracle variant the integrator runs on (the quadratic with a prox, usually)."""
    found = _applicable(integrator, oracle_variants())
    if not found:
        skip("the integrator skips every reference problem (smooth and nonsmooth, with and "
             "without a prox)")
    return found[0]


def _start(problem: Problem, ctx: Context, batch: int = 6) -> np.ndarray:
    return problem.sample(ctx.rng(), batch)


@check("integrator")
def check_declaration(integrator: Integrator, ctx: Context) -> str:
    """Name, description, ``requires``, ``order``, the flags and the fixed-step declaration are
    well formed; hyperparameters are the fields of a frozen dataclass, and
    ``with_params(**params)`` rebuilds an equal integrator with the same label."""
    if not dataclasses.is_dataclass(integrator):
        fail("not a dataclass: declare @dataclass(frozen=True) with the hyperparameters as "
             "fields")
    params = type(integrator).__dataclass_params__
    if not params.frozen:
        fail("the dataclass is not frozen: hyperparameters must not change after creation")
    if not isinstance(getattr(integrator, "name", None), str) or \
            not NAME_PATTERN.match(integrator.name):
        fail(f"name {getattr(integrator, 'name', None)!r} is not lowercase letters, digits and "
             "'_-.=,[]'")
    if not integrator.summary() or integrator.summary() == integrator.name:
        warn("no description: give the class a docstring whose first line says what it is")
    requires = integrator.requires
    if not isinstance(requires, frozenset | set) or not requires or \
            not set(requires) <= ORACLE_NAMES:
        fail(f"requires = {requires!r}: a non-empty subset of {sorted(ORACLE_NAMES)}")
    order = integrator.order
    if order is not None and (isinstance(order, bool) or not isinstance(order, numbers.Integral)
                              or order < 1):
        fail(f"order = {order!r}: a positive int, or None")
    for flag in ("adaptive", "descent", "array_api", "pure"):
        if not isinstance(getattr(integrator, flag), bool):
            fail(f"{flag} = {getattr(integrator, flag)!r}: True or False")
    h = integrator.explicit_step
    if h is not None and not (isinstance(h, numbers.Real) and 0 < h < math.inf):
        fail(f"explicit_step = {h!r}: a finite step > 0, or None")
    limit = integrator.stability_limit
    if not (isinstance(limit, numbers.Real) and 0 < limit <= math.inf):
        fail(f"stability_limit = {limit!r}: a number > 0 (inf for an A-stable method)")
    again = integrator.with_params(**integrator.params)
    if again != integrator or again.label != integrator.label:
        fail(f"with_params(**params) gave {again.label}, not {integrator.label}")
    return integrator.label


@check("integrator")
def check_state(integrator: Integrator, ctx: Context) -> str:
    """``init`` and ``step`` return a State with x (B, n), t (B,) and flag (B,) integers; t
    starts at 0 and grows; every oracle call goes through the oracle (counted)."""
    problem = _reference(integrator)
    raw = {"calls": 0}

    def counted(fn):
        def wrapper(*args):
            raw["calls"] += 1
            return fn(*args)
        return wrapper

    spy = dataclasses.replace(problem, f=counted(problem.f),
                              grad=problem.grad and counted(problem.grad),
                              subgrad=problem.subgrad and counted(problem.subgrad),
                              prox=problem.prox and counted(problem.prox))
    x0 = _start(spy, ctx)
    oracle = _CountingOracle(spy, x0.shape[0])
    state = integrator.init(oracle, x0)
    if not isinstance(state, State):
        fail(f"init returned {type(state).__name__}, expected a benchsuite.State (or subclass)")
    before = _host(state)
    if np.any(before["t"] != 0.0):
        fail("init's state does not start at flow time t = 0")
    for _ in range(STEPS):
        new = integrator.step(oracle, state)
        if not isinstance(new, State):
            fail(f"step returned {type(new).__name__}, expected a State")
        host = _host(new)
        for name, shape in (("x", x0.shape), ("t", x0.shape[:1]), ("flag", x0.shape[:1])):
            if host[name].shape != shape:
                fail(f"state.{name} has shape {host[name].shape}, expected {shape}")
        if host["flag"].dtype.kind not in "iu":
            fail(f"state.flag has dtype {host['flag'].dtype}, expected integers (Flag values)")
        if np.any(host["t"] < before["t"]):
            fail("flow time t decreased in a step")
        state, before = new, host
    running = host["flag"] == 0
    if running.any() and not np.all(host["t"][running] > 0):
        fail(f"after {STEPS} steps some running rows are still at t = 0: add each accepted "
             "step to state.t")
    if raw["calls"] != oracle.invocations:
        fail(f"{raw['calls'] - oracle.invocations} of {raw['calls']} calls to the problem's "
             "oracles bypassed the counting oracle: call oracle.f, oracle.grad and "
             "oracle.prox, never oracle.problem's functions")
    return f"{STEPS} steps on {problem.name}"


@check("integrator", needs=NEEDS)
def check_pure_step(integrator: Integrator, ctx: Context) -> str:
    """A step does not modify its input state, and the same state stepped twice gives the same
    new state (the harness re-steps halves of a batch from the old state to find a row that
    raises)."""
    if not integrator.pure:
        skip("declares pure = False: its step consumes its state (and must raise RowErrors "
             "for faulty rows)")
    problem = _reference(integrator)
    state, oracle = _run(integrator, problem, _start(problem, ctx), steps=1)
    before = _host(state)
    first = _host(integrator.step(oracle, state))
    after = _host(state)
    for name, value in before.items():
        if not np.array_equal(value, after[name], equal_nan=True):
            fail(f"step modified state.{name} of its input state in place: return a new "
                 "state (state.replace(...)) and leave the old one intact")
    second = _host(integrator.step(oracle, state))
    for name, value in first.items():
        if not np.array_equal(value, second[name], equal_nan=True):
            fail(f"stepping the same state twice gave two different state.{name}: a step must "
                 "be a function of its input state (no hidden state, no randomness)")
    return "input untouched, repeatable"


@check("integrator", needs=NEEDS)
def check_rows_independent(integrator: Integrator, ctx: Context) -> str:
    """A row's trajectory does not depend on the other rows: stepped alone, in a permuted batch
    or beside other rows, it gives the same points, flow times and oracle counts; rows taken
    out of a state (``State.take``, as the harness retires rows) step as they would in it, and
    ``State.concat`` of its halves gives it back."""
    problem = _reference(integrator)
    X = _start(problem, ctx, 6)
    other = problem.sample(ctx.rng(1), 6)
    state, oracle = _run(integrator, problem, X)
    full, full_counts = _host(state), oracle.counts()
    perm = np.array([4, 0, 5, 2, 1, 3])
    mixed = other.copy()
    mixed[2] = X[2]
    cases = [("alone", _run(integrator, problem, X[2:3]), [2], [0]),
             ("in a permuted batch", _run(integrator, problem, X[perm]), perm, range(6)),
             ("beside other rows", _run(integrator, problem, mixed), [2], [2])]
    for how, (state, oracle), rows_full, rows_here in cases:
        counts = oracle.counts()
        for kind, want in full_counts.items():  # exactly: a count has no rounding
            if not np.array_equal(counts[kind][list(rows_here)], want[list(rows_full)]):
                fail(f"rows stepped {how} make other numbers of {kind} calls than the same "
                     "rows of the whole batch: a row's work must depend on its own state "
                     "only (count with where= masks or rows=, never for the whole batch's "
                     "sake)")
        got = _host(state)
        for name in ("x", "t"):
            want = full[name][list(rows_full)]
            have = got[name][list(rows_here)]
            if not np.allclose(have, want, rtol=1e-12, atol=1e-14 * (1 + np.abs(want).max())):
                fail(f"rows stepped {how} differ from the same rows of the whole batch "
                     f"(state.{name}): a row's step must depend on its own state only (a "
                     "per-row step size, not a batch minimum)")
    # the harness retires rows with State.take and re-joins isolated ones with State.concat:
    # every per-row field must have the batch as its leading axis
    xp = namespace(X)
    state, oracle = _run(integrator, problem, X, steps=2)
    rejoined = _host(type(state).concat(xp, [state.take(xp, xp.asarray([0, 1, 2])),
                                             state.take(xp, xp.asarray([3, 4, 5]))]))
    for name, value in _host(state).items():
        if not np.array_equal(rejoined[name], value, equal_nan=True):
            fail(f"State.concat of the halves of a state does not give back state.{name}: "
                 "per-row fields must be arrays whose leading axis is the batch")
    if integrator.pure:  # an impure step consumes its state: it cannot be stepped twice
        rows = np.array([4, 1])
        after = _host(integrator.step(oracle, state).take(xp, xp.asarray(rows)))
        alone = _host(integrator.step(oracle.view(rows), state.take(xp, xp.asarray(rows))))
        for name, value in alone.items():
            if name in after and not np.allclose(value, after[name], rtol=1e-12,
                                                 equal_nan=True):
                fail(f"stepping rows taken out of the state (State.take) gives another "
                     f"state.{name} than taking them after the step: a per-row field is not "
                     "indexed with its rows (keep per-row data in arrays of leading axis B)")
    return f"{STEPS} steps, 3 batchings, take and concat"


def _constant_step(integrator: Integrator, ctx: Context) -> float | None:
    """The flow-time step if every row advanced by the same dt at each of 5 steps on the
    reference quadratic, else None."""
    problem = _reference(integrator)
    x0 = _start(problem, ctx)
    oracle = Oracle(problem, x0.shape[0])
    state = integrator.init(oracle, x0)
    times = [to_numpy(state.t).copy()]
    for _ in range(STEPS):
        state = integrator.step(oracle, state)
        times.append(np.array(to_numpy(state.t), copy=True))
    dt = np.diff(np.stack(times), axis=0)
    first = dt.flat[0]
    return float(first) if first > 0 and np.allclose(dt, first, rtol=1e-12, atol=0) else None


def _growth(integrator: Integrator, h_lambda: float, h: float, steps: int = 400) -> float:
    """|x_N| / |x_0| after N steps on x' = -lambda x with lambda = h_lambda / h (inf when
    the row stopped on a non-finite value)."""
    lam = h_lambda / h
    problem = quadratic(np.array([[lam]]))
    x0 = np.array([[1.0]])
    oracle = Oracle(problem, 1)
    state = integrator.init(oracle, x0)
    for _ in range(steps):
        state = integrator.step(oracle, state)
        host = _host(state)
        if host["flag"][0] != 0 or not np.isfinite(host["x"]).all():
            return math.inf
        if abs(host["x"][0, 0]) > 1e12:
            return math.inf
    return float(abs(_host(state)["x"][0, 0]))


@check("integrator", needs=NEEDS)
def check_fixed_step(integrator: Integrator, ctx: Context) -> str:
    """A method with a constant step that is unstable on x' = -lambda x for large h lambda
    declares ``explicit_step`` and ``stability_limit``, and the declared limit is the true one:
    stable at 0.9 times it, unstable at 1.1 times it (400 steps). Without the declaration, a
    run stalled at the stability limit is called converged or undetermined."""
    subject, dt = integrator, _constant_step(integrator, ctx)
    if dt is None:
        subject = integrator.with_step(0.05)
        if subject is None:
            skip("no constant step (adaptive or diminishing) and no fixed-step variant")
        dt = _constant_step(subject, ctx)
        if dt is None:
            fail(f"{subject.label} (the fixed-step variant) does not take a constant step")
    h = subject.explicit_step
    if h is None:
        for h_lambda in (3.0, 10.0, 100.0):
            if _growth(subject, h_lambda, dt) > 10.0:
                fail(f"{subject.label} takes a constant step dt = {dt:g} and is unstable on "
                     f"x' = -lambda x at dt lambda = {h_lambda:g}, but declares no "
                     "explicit_step and stability_limit")
        return f"{subject.label}: constant step, stable up to dt lambda = 100 (implicit)"
    limit = subject.stability_limit
    if limit == math.inf:
        growth = _growth(subject, 100.0, h)
        if not growth <= 10.0:
            fail(f"{subject.label} declares an infinite stability limit but grows by "
                 f"{growth:.3g} at h lambda = 100")
        return f"{subject.label}: h = {h:g}, A-stable (stable at h lambda = 100)"
    stable, unstable = _growth(subject, 0.9 * limit, h), _growth(subject, 1.1 * limit, h)
    if not stable <= 10.0:
        fail(f"{subject.label} declares stability_limit {limit:g} but grows by {stable:.3g} "
             f"at h lambda = {0.9 * limit:.4g}: the declared limit is too high")
    if not unstable > 10.0:
        fail(f"{subject.label} declares stability_limit {limit:g} but stays bounded at "
             f"h lambda = {1.1 * limit:.4g}: the declared limit is too low")
    return f"{subject.label}: h = {h:g}, stable at 0.9 x {limit:.4g}, unstable at 1.1 x"


#: Start points of the order check on the nonlinear reference (xy - 1)^2, off its saddle.
X0_PRODUCT = np.array([[0.8, 0.6], [1.5, 0.3]])
#: Steps per order measurement beyond which with_step(h) is taken to ignore h (a units slip).
MAX_ORDER_STEPS = 20_000


def _flow_error(variant: Integrator, problem: Problem, x0: np.ndarray, dt: float) -> float:
    """Max error at t ~ 1 against the exact flow (quadratic) or a DOP853 solve at rtol 1e-13."""
    state, _ = _run(variant, problem, x0, steps=round(1.0 / dt))
    host = _host(state)
    if problem.name.startswith("reference_quadratic"):
        exact = exact_flow(A_REF, x0, host["t"])
    else:
        exact = np.stack([solve_ivp(lambda _t, y: -np.asarray(problem.grad(y[None]))[0],
                                    (0.0, t), row, method="DOP853", rtol=1e-13,
                                    atol=1e-14).y[:, -1] for row, t in zip(x0, host["t"],
                                                                           strict=True)])
    return float(np.abs(host["x"] - exact).max())


@check("integrator", needs=NEEDS)
def check_order(integrator: Integrator, ctx: Context) -> str:
    """The declared order is confirmed by step halving, on a linear and a nonlinear flow: the
    error at t = 1 of the fixed-step variant (``with_step``) against the exact flow of the
    reference quadratic, and against a tight solve of (x y - 1)^2, falls like h^order (slope
    >= order - 0.3 over four halvings); without a declared order, like h^0.7 at least (the
    method converges to the flow, its flow time included)."""
    order = integrator.order
    claimed = 1 if order is None else order
    base = 0.02 if claimed <= 2 else 0.1
    variants = []
    for k in range(4):
        h = base / 2**k
        variant = integrator.with_step(h)
        if variant is None:
            skip(f"declares order {order} but offers no fixed-step variant (override "
                 "with_step) to measure it" if order else "no fixed-step variant to measure")
        dt = _constant_step(variant, ctx)
        if dt is None:
            fail(f"with_step({h:g}) gave {variant.label}, which does not take a constant step")
        if round(1.0 / dt) > MAX_ORDER_STEPS or (variants and not math.isclose(
                dt / h, variants[0][1] / base, rel_tol=1e-6)):
            fail(f"with_step({h:g}) takes steps of {dt:g} in flow time: the step must follow "
                 "h (the same ratio dt/h for every h)")
        variants.append((variant, dt))
    measured = []
    for problem, x0 in ((quadratic(), X0_REF), (product(), X0_PRODUCT)):
        if integrator.skip(problem) is not None:
            continue
        steps = [dt for _, dt in variants]
        errors = [_flow_error(v, problem, x0, dt) for v, dt in variants]
        usable = [(h, e) for h, e in zip(steps, errors, strict=True) if e > 1e-12]
        if len(usable) < 3:
            continue  # rounding level: nothing to measure on this problem
        slope = float(np.polyfit(np.log([h for h, _ in usable]),
                                 np.log([e for _, e in usable]), 1)[0])
        errs = ", ".join(f"{e:.2e}" for _, e in usable)
        if order is None and slope < 0.7:
            fail(f"does not converge to the gradient flow of {problem.name} as the step "
                 f"shrinks (error ~ h^{slope:.2f}: {errs}): check the flow time it adds")
        if order is not None and slope < order - 0.3:
            fail(f"declares order {order}, but on {problem.name} the error falls like "
                 f"h^{slope:.2f} under step halving (errors {errs})")
        measured.append((problem.name, slope))
    if not measured:
        skip("the errors reach rounding level: the order cannot be measured")
    if order is not None and min(s for _, s in measured) > order + 0.7:
        warn(f"declares order {order}, but the error falls like h^{measured[0][1]:.2f}: "
             "declare the higher order")
    return "measured order " + ", ".join(f"{slope:.2f} ({name})" for name, slope in measured)


@check("integrator", needs=NEEDS)
def check_descent(integrator: Integrator, ctx: Context) -> str:
    """An integrator that declares ``descent = True`` never increases f, over 30 steps from 8
    sampled points on each reference problem it runs on (convex, nonconvex, nonsmooth)."""
    if not integrator.descent:
        skip("does not claim descent")
    problems = _applicable(integrator, [*oracle_variants(), product()])
    # the claim holds for every step size: also try a step 10 times the stiffest time scale
    big = integrator.with_step(10.0 / float(np.linalg.eigvalsh(A_REF).max()))
    runs = [(integrator, p) for p in problems]
    if big is not None:
        runs += [(big, p) for p in _applicable(big, [quadratic()])]
    for method, problem in runs:
        x0 = problem.sample(ctx.rng(2), 8)
        oracle = Oracle(problem, 8)
        state = method.init(oracle, x0)
        prev = np.asarray(to_numpy(problem.f(state.x)))
        for k in range(30):
            state = method.step(oracle, state)
            now = np.asarray(to_numpy(problem.f(state.x)))
            rose = now > prev + 1e-12 * (1.0 + np.abs(prev))
            if rose.any():
                fail(f"declares descent, but f rose with {method.label} on {problem.name} at "
                     f"step {k + 1} "
                     f"(from {prev[rose][0]:.10g} to {now[rose][0]:.10g})")
            prev = now
    return f"{len(runs)} runs of 30 steps on reference problems"


def _numeric_fields(integrator: Integrator) -> list[tuple[str, Any]]:
    return [(f.name, getattr(integrator, f.name)) for f in dataclasses.fields(integrator)
            if isinstance(getattr(integrator, f.name), int | float)
            and not isinstance(getattr(integrator, f.name), bool)]


@check("integrator", needs=NEEDS)
def check_hyperparameters(integrator: Integrator, ctx: Context) -> str:
    """``with_params`` refuses NaN for every numeric hyperparameter, and a string for a number,
    with an error that names it; accepting a negative value where the default is positive is a
    warning."""
    fields = _numeric_fields(integrator)
    if not fields:
        skip("no numeric hyperparameters")
    accepted_negative = []
    for name, value in fields:
        for bad, kind in ((math.nan, "NaN"), ("fast", "a string")):
            try:
                integrator.with_params(**{name: bad})
            except (ValueError, TypeError) as exc:
                if not re.search(rf"\b{re.escape(name)}\b", str(exc)):
                    warn(f"{name}={bad!r} is refused, but the error does not name {name}: "
                         f"{exc}")
                continue
            fail(f"with_params({name}={bad!r}) was accepted: validate {kind} in "
                 "__post_init__ (benchsuite.integrator.require_positive, say)")
        if value > 0:
            try:
                integrator.with_params(**{name: -value})
            except (ValueError, TypeError):
                continue
            accepted_negative.append(f"{name}={-value!r}")
    if accepted_negative:
        warn(f"accepts {', '.join(accepted_negative)}: is a negative value meaningful?")
    return f"{len(fields)} numeric hyperparameters validated"


@check("integrator", needs=NEEDS)
def check_requires(integrator: Integrator, ctx: Context) -> str:
    """``skip`` agrees with ``requires``: a gradient method skips nonsmooth problems, a method
    that does not skip a problem runs on it without calling an oracle it lacks, and ``skip``
    returns a reason string or None."""
    found = []
    for problem in oracle_variants():
        reason = integrator.skip(problem)
        if reason is not None and not (isinstance(reason, str) and reason.strip()):
            fail(f"skip({problem.name}) returned {reason!r}: a reason string, or None")
        if "grad" in integrator.requires and not problem.smooth and reason is None:
            fail(f"requires grad, but does not skip the nonsmooth {problem.name}")
        if reason is not None:
            found.append(f"skips {problem.name}")
            continue
        try:
            _run(integrator, problem, problem.sample(ctx.rng(), 4), steps=3)
        except OracleError as exc:
            fail(f"runs on {problem.name} (skip returned None) but {exc}: add the oracle to "
                 "requires, or skip such problems")
        found.append(f"runs on {problem.name}")
    return "; ".join(found)


@check("integrator", needs=NEEDS)
def check_array_api(integrator: Integrator, ctx: Context) -> str:
    """Under ``array_api_strict``, the state stays in that namespace and 5 steps give the numpy
    trajectory, when the integrator claims array-API genericity (``array_api=True``)."""
    if not integrator.array_api:
        skip("numpy-only integrator (array_api=False)")
    try:
        import array_api_strict as xps
    except ImportError:
        skip("array_api_strict is not installed (pip install array-api-strict)")
    problem = _reference(integrator)
    x0 = _start(problem, ctx, 4)
    want = _host(_run(integrator, problem, x0)[0])
    state, _ = _run(integrator, problem, xps.asarray(x0))
    if type(state.x).__module__.split(".")[0] != "array_api_strict":
        fail(f"state.x became {type(state.x).__module__}.{type(state.x).__name__}: compute in "
             "the input's namespace (array_api_compat.array_namespace(x))")
    got = _host(state)
    if not np.allclose(got["x"], want["x"], rtol=1e-10, atol=1e-12):
        fail(f"the trajectory under array_api_strict differs from numpy by "
             f"{np.abs(got['x'] - want['x']).max():.3g}")
    return f"{STEPS} steps on {problem.name}"


@check("integrator", slow=True, needs=(*NEEDS, "array_api"))
def check_compiled(integrator: Integrator, ctx: Context) -> str:
    """On the JAX backend (when installed) the step compiles, and 20 steps give the numpy
    run's stops, steps, oracle counts and points (to 1e-9), when the integrator claims
    array-API genericity: the harness traces the step once into a ``jax.jit`` loop, so it
    must not read array values on the host or index by host arrays (masks, ``where=``,
    ``benchsuite.arrays.while_loop``)."""
    if not integrator.array_api:
        skip("numpy-only integrator (array_api=False): skipped on other backends")
    from benchsuite.backends import BackendError, resolve
    from benchsuite.harness import Budget, run_cell

    try:
        backend = resolve("jax")
    except BackendError as exc:
        skip(f"JAX is not usable here: {exc}")
    problem = _reference(integrator)
    x0 = _start(problem, ctx, 4)
    budget = Budget(t_max=1e9, max_steps=20)
    eager, compiled = (run_cell(problem, integrator, x0, budget, backend=b,
                                draw_landscape=False).trajectories
                       for b in ("numpy", backend))
    broken = compiled[compiled["stop"] == "error"]
    if len(broken) and not (eager["stop"] == "error").all():
        fail(f"the step does not run compiled: {broken['message'].iloc[0]}")
    for column in ("stop", "steps", "nfev", "ngev", "nprox"):
        if not (eager[column] == compiled[column]).all():
            fail(f"on JAX, {column} differs from numpy: {compiled[column].tolist()} against "
                 f"{eager[column].tolist()} (rows must not depend on values the trace fixed)")
    want, got = (np.stack(t["x"].to_numpy()) for t in (eager, compiled))
    if not np.allclose(got, want, rtol=1e-9, atol=1e-12 * (1 + np.abs(want).max())):
        fail(f"on JAX the points differ from numpy by {np.abs(got - want).max():.3g}")
    return f"20 steps on {problem.name}, jax {backend.describe()['version']}"
