"""The proximal scheme's inner solve: descent, stationarity, per-row counts, and one iteration
sequence on every path (numpy's compacting loop, the masked loop, jitted JAX)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from benchsuite import Oracle, Problem, Theory, Verdict
from benchsuite.oracle import KINDS, ArrayOracle
from benchsuite.problem import gaussian
from benchsuite_plugins import proximal
from benchsuite_plugins.proximal import (
    ARMIJO,
    CURVATURE,
    DESCENT_RTOL,
    MAX_BACKTRACKS,
    ProximalPoint,
    ProxState,
)
from benchsuite_problems.factorization import mc2x2_example1, xy_minus_one
from benchsuite_problems.linear_networks import deep_linear_net
from benchsuite_problems.one_dimensional import cubic_blowup_1d
from benchsuite_problems.sigmoid import sigmoid2pt_fig3

FIELDS = [f.name for f in dataclasses.fields(ProxState)]


def run(integ, problem, x0, steps, oracle=None):
    """States after each of ``steps`` steps and the oracle (a host Oracle by default)."""
    oracle = Oracle(problem, x0.shape[0]) if oracle is None else oracle
    states = [integ.init(oracle, x0)]
    with np.errstate(all="ignore"):
        for _ in range(steps):
            states.append(integ.step(oracle, states[-1]))
    return states, oracle


def array_counts(oracle: ArrayOracle, batch: int) -> dict[str, np.ndarray]:
    """Per-row calls an ArrayOracle recorded: whole-batch calls plus masked ones."""
    return {k: oracle.calls[k] + (np.zeros(batch, dtype=np.int64) if oracle.masked[k] is None
                                  else np.asarray(oracle.masked[k])) for k in KINDS}


def step_counts(integ, oracle, state):
    """The new state and the calls of one step, per row."""
    before = oracle.counts()
    new = integ.step(oracle, state)
    return new, {k: v - before[k] for k, v in oracle.counts().items()}


@pytest.mark.parametrize(("problem", "tau"), [(mc2x2_example1(), 0.1), (mc2x2_example1(), 100.0),
                                              (xy_minus_one(), 10.0), (sigmoid2pt_fig3(), 10.0)],
                         ids=["example1-0.1", "example1-100", "xy-10", "sigmoid-10"])
def test_each_step_descends_and_is_stationary_for_phi(problem, tau):
    """Every step satisfies f(x+) + |x+ - x|^2/(2 tau) <= f(x) and makes grad phi vanish to
    the tolerance, also where phi is nonconvex (large tau): there, full quasi-Newton steps
    overshoot, and only the line search keeps every step acceptable (without it, 32 of these
    1200 steps of Example 1 at tau = 100 are rejected)."""
    integ = ProximalPoint(tau=tau)
    states, _ = run(integ, problem, problem.sample(np.random.default_rng(3), 48), 25)
    for old, new in itertools.pairwise(states):
        ok = new.t > old.t
        assert ok.all()
        dx = new.x - old.x
        move = np.sum(dx**2, axis=1) / (2 * old.tau)
        slack = DESCENT_RTOL * (1 + np.abs(old.fx))
        assert np.all(new.fx[ok] + move[ok] <= old.fx[ok] + slack[ok])
        np.testing.assert_allclose(new.energy, old.energy + np.where(ok, move, 0.0), rtol=1e-12)
        np.testing.assert_array_equal(new.fx, problem.f(new.x))
        np.testing.assert_array_equal(new.gx, problem.grad(new.x))
        gphi = problem.grad(new.x) + dx / old.tau[:, None]
        target = integ.tol * (1 + np.linalg.norm(old.gx, axis=1))
        assert np.all(np.linalg.norm(gphi[ok], axis=1) <= target[ok])


def test_unsolved_subproblems_are_retried_with_half_tau_then_fail():
    """A row whose inner solve stops short of stationarity (here after one iteration) does not
    move and halves its tau, down to PROX_FAILED below min_tau; a row already stationary is
    accepted; after success tau doubles back, up to its nominal value."""
    p = mc2x2_example1()
    x0 = p.sample(np.random.default_rng(4), 5)
    x0[2] = 1.0  # a minimizer: stationary before any iteration
    integ = ProximalPoint(tau=0.1, max_inner=1, min_tau=0.3)
    states, _ = run(integ, p, x0, 2)
    moved = np.arange(5) != 2
    np.testing.assert_array_equal(states[1].x[moved], x0[moved])
    np.testing.assert_allclose(states[1].tau, np.where(moved, 0.05, 0.1))
    np.testing.assert_array_equal(states[1].flag, 0)
    np.testing.assert_array_equal(states[2].flag, np.where(moved, 2, 0))  # 0.025 < 0.3 tau
    np.testing.assert_allclose(states[2].t, np.where(moved, 0.0, 0.2))
    regain = ProximalPoint(tau=0.1)
    oracle = Oracle(p, 5)
    state = regain.init(oracle, x0).replace(tau=np.full(5, 0.025))
    taus = []
    for _ in range(3):
        state = regain.step(oracle, state)
        taus.append(state.tau[0])
    np.testing.assert_allclose(taus, [0.05, 0.1, 0.1])
    np.testing.assert_allclose(state.t, 0.025 + 0.05 + 0.1)


def test_no_spurious_rejection_near_the_minimum():
    """Rows that converge to f* = 0 solve every subproblem: near the solution phi's decreases
    fall below f's rounding, and the line search must not stall there (the former solver
    rejected steps of 95 of these 200 rows, which thus lagged behind in flow time)."""
    p = mc2x2_example1()
    states, _ = run(ProximalPoint(), p, p.sample(np.random.default_rng(0), 200), 120)
    np.testing.assert_allclose(states[-1].t, 12.0, rtol=1e-12)
    assert np.mean(states[-1].fx < 1e-6) > 0.9


def test_rows_are_charged_for_their_own_calls_only():
    """A row at a minimizer makes no call in a step while the others iterate, and each row's
    calls in a batch are the calls it makes alone."""
    p = mc2x2_example1()
    x0 = p.sample(np.random.default_rng(5), 12)
    x0[4] = 1.0  # a global minimizer: grad = 0, converged before any iteration
    integ = ProximalPoint()
    states, oracle = run(integ, p, x0, 3)
    _, counts = step_counts(integ, oracle, states[-1])
    assert counts["f"][4] == 0 and counts["grad"][4] == 0 and counts["prox"].sum() == 0
    others = np.arange(12) != 4
    assert np.all(counts["grad"][others] >= 1) and counts["grad"].max() >= 4
    assert np.all(counts["f"] >= counts["grad"])  # one trial point at least per iteration
    for row in (0, 4, int(np.argmax(counts["grad"]))):
        alone = states[-1].take(np, np.array([row]))
        _, own = step_counts(integ, Oracle(p, 1), alone)
        assert {k: int(v[0]) for k, v in own.items()} == {k: int(v[row])
                                                         for k, v in counts.items()}


@pytest.mark.parametrize("problem", [mc2x2_example1(), deep_linear_net()], ids=["example1", "dln"])
def test_rows_do_not_depend_on_their_batch(problem):
    """A row's states and calls are the same bits in a batch as alone or with a few others
    (results do not depend on the shard size). The inner solve's per-row sums must add in
    the same order whatever the (sub-)batch: numpy reduces a single row, or a batch-first
    array, in blocks, and where the solver let it the n = 30 network's rows drifted by up to
    0.04 over 20 steps and their counts changed."""
    integ = ProximalPoint(tau=1.0)
    x0 = problem.sample(np.random.default_rng(8), 6)
    whole, oracle = run(integ, problem, x0, 5)
    for size in (1, 4):
        for first in range(0, 6, size):
            part = slice(first, first + size)
            states, alone = run(integ, problem, x0[part], 5)
            for name in FIELDS:
                np.testing.assert_array_equal(getattr(states[-1], name),
                                              getattr(whole[-1], name)[part], err_msg=name)
            for kind, calls in alone.counts().items():
                np.testing.assert_array_equal(calls, oracle.counts()[kind][part], err_msg=kind)


def test_retired_rows_are_frozen():
    """A flagged row (kept in the batch by the compiled harness) neither calls nor moves."""
    p = mc2x2_example1()
    integ = ProximalPoint()
    states, oracle = run(integ, p, p.sample(np.random.default_rng(6), 6), 1)
    flagged = states[-1].replace(flag=np.array([0, 2, 0, 0, 0, 0], dtype=np.int8))
    new, counts = step_counts(integ, oracle, flagged)
    assert counts["f"][1] == 0 and counts["grad"][1] == 0
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(new, name)[1], getattr(flagged, name)[1])
    assert np.all(new.t[[0, 2, 3, 4, 5]] > flagged.t[[0, 2, 3, 4, 5]])


@pytest.mark.parametrize("memory", [8, 2], ids=["dense", "lbfgs"])
def test_masked_and_compacting_loops_agree(memory, monkeypatch):
    """numpy's compacting loop (host Oracle) and the masked loop of compiled backends
    (ArrayOracle, here on numpy) give the same iterates, to the bit, and the same per-row
    counts, with either model (n = 4: dense where memory >= n, else L-BFGS); the compacting
    loop did shrink its sub-batch, down to single rows (allowed to compact however few rows
    leave it)."""
    monkeypatch.setattr(proximal, "COMPACT_MIN", 1)
    p = mc2x2_example1()
    integ = ProximalPoint(memory=memory)
    x0 = p.sample(np.random.default_rng(7), 40)
    host = Oracle(p, 40)
    sub_batches = []  # sizes of the sub-batches the compacting loop called the oracle on
    count = host._count

    def spy(kind, rows, where=None):
        if rows is not None:
            sub_batches.append(len(rows))
        count(kind, rows, where)

    host._count = spy
    a = b = integ.init(host, x0)
    with np.errstate(all="ignore"):
        for _ in range(15):
            a, host_counts = step_counts(integ, host, a)
            masked = ArrayOracle(p)
            b = integ.step(masked, b)
            for k, v in array_counts(masked, 40).items():
                np.testing.assert_array_equal(v, host_counts[k])
            for name in FIELDS:
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert sub_batches and min(sub_batches) == 1


def _textbook_solve(problem, integ, x, gx):
    """One row's inner solve by the textbook L-BFGS (Nocedal and Wright, Algorithm 7.4: the
    two-loop recursion over every pair so far, from gamma I, gamma = s.y / y.y of the newest
    pair, tau before any) with the same Armijo search, for at most ``integ.max_inner``
    iterations. Returns the last iterate and the gradient calls."""
    f = lambda v: problem.f(v[None])[0]  # noqa: E731
    grad = lambda v: problem.grad(v[None])[0]  # noqa: E731
    tau, fx = integ.tau, f(x)
    target2 = (integ.tol * (1 + np.linalg.norm(gx))) ** 2
    slack = DESCENT_RTOL * (1 + abs(fx)) / (2 * integ.max_inner)
    y, gphi, phi, gamma, pairs, calls = x, gx, fx, tau, [], 0
    for _ in range(integ.max_inner):
        if gphi @ gphi <= target2:
            break
        q, alphas = gphi, []
        for s, yv in reversed(pairs):
            alphas.append((s @ q) / (s @ yv))
            q = q - alphas[-1] * yv
        r = gamma * q
        for (s, yv), alpha in zip(pairs, reversed(alphas), strict=True):
            r = r + (alpha - (yv @ r) / (s @ yv)) * s
        for j in range(MAX_BACKTRACKS + 1):
            point = y - 0.5**j * r
            phi_point = f(point) + (point - x) @ (point - x) / (2 * tau)
            if phi_point <= phi + slack - 0.5**j * ARMIJO * (r @ gphi):
                break
        else:
            break
        new_gphi = grad(point) + (point - x) / tau
        calls += 1
        s, yv = point - y, new_gphi - gphi
        if s @ yv > CURVATURE * np.linalg.norm(s) * np.linalg.norm(yv):
            pairs.append((s, yv))
            gamma = (s @ yv) / (yv @ yv)
        y, gphi, phi = point, new_gphi, phi_point
    return y, calls


@pytest.mark.parametrize("tau", [0.1, 100.0])
def test_dense_model_is_lbfgs(tau):
    """Where n <= memory the batched solve keeps the model as gamma M + N, two dense matrices
    per row, yet it is L-BFGS as the textbook writes it: after k inner iterations (stopped
    there, short of convergence) it is at the textbook's iterate, to rounding, having made the
    same gradient calls per row, also where phi is nonconvex (tau = 100). Its updates
    postponed to the next iteration and (numpy) made in place change nothing else."""
    p = mc2x2_example1()
    x0 = p.sample(np.random.default_rng(11), 16)
    state = run(ProximalPoint(tau=tau), p, x0, 2)[0][-1]  # mid-run: tau I is not the answer
    for k in (1, 2, 3, 6):
        integ = ProximalPoint(tau=tau, max_inner=k)
        oracle = Oracle(p, 16)
        with np.errstate(all="ignore"):
            y = integ._solve(oracle, state, state.flag == 0,
                             DESCENT_RTOL * (1 + np.abs(state.fx)))[0]
        for row in range(16):
            want, calls = _textbook_solve(p, integ, state.x[row], state.gx[row])
            np.testing.assert_allclose(y[row], want, rtol=1e-12, atol=1e-15)
            assert calls == oracle.counts()["grad"][row]


def test_row_sums_do_not_depend_on_the_batch():
    """The per-row inner products and matrix-vector products add each row's terms in the
    same order whatever the (sub-)batch, a single row included: the same bits."""
    rng = np.random.default_rng(2)
    n, batch = 5, 37
    h = rng.standard_normal((n, n, batch)) * 10.0 ** rng.integers(-8, 8, (n, n, batch))
    a, b = (rng.standard_normal((n, batch)) * 10.0 ** rng.integers(-8, 8, (n, batch))
            for _ in range(2))
    dots, products = proximal._dot(np, a, b), proximal._matvec(np, h, a)
    for size in (1, 2, 3, 8):
        for first in range(0, batch - size, 7):
            part = slice(first, first + size)
            sub_a, sub_b, sub_h = (np.ascontiguousarray(v[..., part]) for v in (a, b, h))
            np.testing.assert_array_equal(proximal._dot(np, sub_a, sub_b), dots[part])
            np.testing.assert_array_equal(proximal._matvec(np, sub_h, sub_a), products[:, part])


@pytest.mark.parametrize("memory", [8, 2], ids=["dense", "lbfgs"])
def test_jitted_jax_matches_numpy(memory):
    """The step compiles under jax.jit (no host synchronisation in it) and, after 50 steps of
    Example 1, accepts the same rows, makes the same calls and reaches the same points, with
    either model."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = pytest.importorskip("jax.numpy")
    p = mc2x2_example1()
    integ = ProximalPoint(memory=memory)
    batch = 64
    x0 = p.sample(np.random.default_rng(0), batch)

    @jax.jit
    def one(leaves):
        oracle = ArrayOracle(p)
        new = integ.step(oracle, ProxState(**dict(zip(FIELDS, leaves, strict=True))))
        counts = {k: oracle.calls[k] + (0 if oracle.masked[k] is None else oracle.masked[k])
                  for k in KINDS}
        return tuple(getattr(new, k) for k in FIELDS), counts

    host = Oracle(p, batch)
    state = integ.init(host, x0)
    leaves = tuple(jnp.asarray(getattr(state, k)) for k in FIELDS)
    with np.errstate(all="ignore"):
        for _ in range(50):
            state, counts = step_counts(integ, host, state)
            leaves, jax_counts = one(leaves)
            np.testing.assert_array_equal(np.asarray(leaves[FIELDS.index("t")]), state.t)
            for k in KINDS:
                np.testing.assert_array_equal(
                    np.broadcast_to(np.asarray(jax_counts[k]), (batch,)), counts[k])
    x = np.asarray(leaves[0])
    np.testing.assert_allclose(x, state.x, rtol=1e-9, atol=1e-12)
    assert isinstance(leaves[0], jax.Array)


def _scaled_quadratic(scale: float) -> Problem:
    """f = scale/2 (x1^2 + 3 x2^2): convex, with curvature ``scale``."""
    diag = np.array([1.0, 3.0])
    return Problem(name="scaled_quadratic", n=2, f=lambda X: 0.5 * scale * np.sum(diag * X**2, 1),
                   grad=lambda X: scale * diag * X, sample=gaussian(1.0, 2), f_star=0.0,
                   attained=True, smooth=True, coercive=True, array_api=False,
                   theory=Theory(bounded_trajectories=Verdict.YES,
                                 spurious_local_minima=Verdict.NO,
                                 spurious_minima_at_infinity=Verdict.NO, source="test"),
                   description="a convex quadratic of extreme curvature")


@pytest.mark.parametrize("memory", [8, 1], ids=["dense", "lbfgs"])
@pytest.mark.parametrize(("problem", "x0", "tau", "steps", "all_accepted"), [
    (cubic_blowup_1d(), [[1.0]], 0.1, 12, False),
    (_scaled_quadratic(1e148), [[1e-153, 1e-153]], 1e-148, 5, True)],
    ids=["cubic-blowup", "curvature-1e148"])
def test_no_solve_spins_where_it_cannot_descend(problem, x0, tau, steps, all_accepted, memory):
    """A row whose model gives no descent direction (overflow in the pairs, where -x^3/3 blows
    up, or 1/(s.y) ~ 1e158 at curvature 1e148) gives up at once and retries with tau/2: no
    step spends more than a quarter of max_inner gradient calls (the blow-up's solves take 14
    at most; with the dense model's NaN updates they spent all 100 at one point). On the
    convex quadratic every step is accepted, whichever model."""
    integ = ProximalPoint(tau=tau, memory=memory)
    states, oracle = run(integ, problem, np.array(x0), 0)
    state, most = states[0], 0
    with np.errstate(all="ignore"):
        for _ in range(steps):
            state, counts = step_counts(integ, oracle, state)
            most = max(most, int(counts["grad"][0]))
    assert most < integ.max_inner / 4
    if all_accepted:
        assert state.t[0] == pytest.approx(steps * tau, rel=1e-12) and state.flag[0] == 0
