"""Contract tests over every registered integrator, and the integrators' numerical properties."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import INTEGRATORS, by_name
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from benchsuite import Budget, Oracle, Problem, Theory, Verdict, gaussian, run_cell
from benchsuite.arrays import namespace, to_numpy
from benchsuite.columns import points
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.proximal import ProximalPoint
from benchsuite_plugins.runge_kutta import BogackiShampine, DormandPrince
from benchsuite_plugins.subgradient import SubgradientMethod
from benchsuite_problems import factorization, l1_factorization, linear_networks, sigmoid
from benchsuite_problems.one_dimensional import cubic_blowup_1d

FAILURE_STOPS = {"nonfinite", "prox_failed", "step_collapse", "error"}


def quadratic(A: np.ndarray, with_prox: bool = False) -> Problem:
    """f = 1/2 x^T A x: the linear gradient flow x' = -A x, exactly exp(-A t) x0."""
    n = A.shape[0]
    inv = {}

    def f(X):
        xp = namespace(X)
        return 0.5 * xp.sum((X @ xp.asarray(A)) * X, axis=1)

    def grad(X):
        xp = namespace(X)
        return X @ xp.asarray(A)

    def prox(X, tau):  # (I + tau A)^{-1} x, row by row
        key = float(tau)
        if key not in inv:
            inv[key] = np.linalg.inv(np.eye(n) + key * A)
        xp = namespace(X)
        return X @ xp.asarray(inv[key].T)

    return Problem(name="quadratic", n=n, f=f, grad=grad, prox=prox if with_prox else None,
                   sample=gaussian(1.0, n), f_star=0.0, attained=True, smooth=True,
                   coercive=True, theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO, "test"),
                   description="quadratic test problem")


A_TEST = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])
X0_TEST = np.array([[1.0, -0.5, 0.8], [0.3, 0.9, -1.2]])


def applicable(integrator, problem):
    if integrator.skip(problem) is not None:
        pytest.skip(integrator.skip(problem))


@pytest.fixture(params=by_name(INTEGRATORS))
def integrator(request):
    return request.param


# -- contracts ---


def test_shapes_flow_time_and_counts(integrator):
    p = factorization.mc2x2_example1()
    applicable(integrator, p)
    x0 = p.sample(np.random.default_rng(0), 6)
    oracle = Oracle(p, 6)
    state = integrator.with_horizon(integrator.init(oracle, x0), 5.0)
    for _ in range(3):
        state = integrator.step(oracle, state)
    assert state.x.shape == x0.shape and state.t.shape == (6,) and state.flag.shape == (6,)
    assert np.all(to_numpy(state.t) > 0)
    assert sum(c.sum() for c in oracle.counts().values()) > 0


def test_exception_in_an_oracle_is_a_per_trajectory_error(integrator):
    def boom(X):
        raise ArithmeticError("deliberately broken oracle")

    base = factorization.xy_minus_one()
    p = dataclasses.replace(base, grad=boom)
    applicable(integrator, p)
    res = run_cell(p, integrator, base.sample(np.random.default_rng(0), 3), Budget(t_max=1.0))
    assert (res.trajectories["stop"] == "error").all()
    assert res.trajectories["message"].str.contains("deliberately broken oracle").all()


def test_blow_up_ends_in_failure_never_a_crash(integrator):
    p = cubic_blowup_1d()
    applicable(integrator, p)
    x0 = np.array([[1.0], [1.5], [0.6]])
    res = run_cell(p, integrator, x0, Budget(t_max=5.0, max_steps=20_000, wall_time=60))
    assert set(res.trajectories["stop"]) <= FAILURE_STOPS, res.trajectories[["stop", "t"]]
    # x(t) = x0/(1 - x0 t) blows up at t = 1/x0: adaptive methods stop there; fixed-step ones
    # lag behind the exact solution (x+ = x + h x^2) and overflow a little later
    slack = 1e-3 if integrator.adaptive else 1.0 / x0[:, 0]
    assert np.all(res.trajectories["t"] <= 1.0 / x0[:, 0] + slack)


# -- descent ---


def test_euler_descends_below_its_stability_limit():
    p = quadratic(A_TEST)
    h = 1.9 / np.linalg.eigvalsh(A_TEST).max()
    oracle, x = Oracle(p, 2), X0_TEST
    state = ExplicitEuler(h=h).init(oracle, x)
    values = [p.f(state.x)]
    for _ in range(50):
        state = ExplicitEuler(h=h).step(oracle, state)
        values.append(p.f(state.x))
    assert np.all(np.diff(np.array(values), axis=0) <= 1e-15)
    above = ExplicitEuler(h=2.1 / np.linalg.eigvalsh(A_TEST).max())
    state = above.init(oracle, x)
    for _ in range(200):
        state = above.step(oracle, state)
    assert np.all(p.f(state.x) > p.f(x))  # and above the limit it does not


@pytest.mark.parametrize("problem", [factorization.mc2x2_example1(),
                                     sigmoid.sigmoid2pt_fig3(),
                                     linear_networks.deep_linear_net()], ids=lambda p: p.name)
@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_proximal_energy_inequality_along_whole_runs(problem, tau):
    """sum |dx|^2/(2 tau) <= f(x0) - f(x_k) at every step, and f never increases."""
    integ = ProximalPoint(tau=tau)
    x0 = problem.sample(np.random.default_rng(1), 16)
    oracle = Oracle(problem, 16)
    state = integ.init(oracle, x0)
    f0 = problem.f(x0)
    prev = f0
    for _ in range(40):
        state = integ.step(oracle, state)
        fk = problem.f(state.x)
        assert np.all(fk <= prev + 1e-12 * (1 + np.abs(prev)))
        assert np.all(state.energy <= f0 - fk + 1e-10 * (1 + np.abs(f0)))
        prev = fk
    assert np.all(state.t > 0)


def test_proximal_uses_the_exact_prox_when_there_is_one():
    p = quadratic(A_TEST, with_prox=True)
    oracle = Oracle(p, 2)
    integ = ProximalPoint(tau=0.3)
    state = integ.step(oracle, integ.init(oracle, X0_TEST))
    np.testing.assert_allclose(state.x, X0_TEST @ np.linalg.inv(np.eye(3) + 0.3 * A_TEST).T)
    assert oracle.counts()["prox"].tolist() == [1, 1]
    assert oracle.counts()["grad"].tolist() == [0, 0]


# -- convergence order on the linear gradient flow ---


def endpoint_error(integ, problem, h, T=1.0):
    oracle = Oracle(problem, X0_TEST.shape[0])
    state = integ.init(oracle, X0_TEST)
    for _ in range(round(T / h)):
        state = integ.step(oracle, state)
    exact = X0_TEST @ expm(-A_TEST * T).T
    np.testing.assert_allclose(state.t, T, rtol=1e-9)
    return np.abs(state.x - exact).max()


@pytest.mark.parametrize(("make", "order", "steps", "with_prox"), [
    # the kit's order check (tests/test_conformance.py) measures every integrator's declared
    # order through with_step; this one is the proximal scheme with its own inner solve
    (lambda h: ProximalPoint(tau=h, tol=1e-13), 1, [0.02, 0.01, 0.005, 0.0025], False),
], ids=["implicit-euler-inner-solve"])
def test_empirical_convergence_order(make, order, steps, with_prox):
    p = quadratic(A_TEST, with_prox=with_prox)
    errors = [endpoint_error(make(h), p, h) for h in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (slope, errors)
    assert make(steps[0]).order == order


# -- batched RK against scipy's solve_ivp ---


@pytest.mark.parametrize("problem", [factorization.mc2x2_example1(), sigmoid.sigmoid2pt_fig3(),
                                     linear_networks.deep_linear_net(),
                                     factorization.pca_factorization()], ids=lambda p: p.name)
@pytest.mark.parametrize("integ", [DormandPrince(rtol=1e-10, atol=1e-12),
                                   BogackiShampine(rtol=1e-10, atol=1e-12)],
                         ids=lambda i: i.name)
def test_batched_rk_matches_solve_ivp(problem, integ):
    T = 3.0
    x0 = problem.sample(np.random.default_rng(4), 6)
    res = run_cell(problem, integ, x0, Budget(t_max=T, max_steps=10**6))
    assert (res.trajectories["stop"] == "t_max").all()
    np.testing.assert_allclose(res.trajectories["t"], T, rtol=1e-12)
    ends = points(res.trajectories)
    for i in range(x0.shape[0]):
        ref = solve_ivp(lambda _t, y: -problem.grad(y[None])[0], (0, T), x0[i],
                        method="DOP853", rtol=1e-12, atol=1e-13).y[:, -1]
        np.testing.assert_allclose(ends[i], ref, rtol=1e-6, atol=1e-7)


def test_per_trajectory_step_control_rejects_rows_independently():
    """A stiff row must not shrink the steps of an easy one."""
    p = quadratic(np.diag([1.0, 400.0]))
    x0 = np.array([[1.0, 0.0], [0.0, 1.0]])  # row 0 sees only lambda = 1, row 1 lambda = 400
    oracle = Oracle(p, 2)
    integ = DormandPrince(rtol=1e-6, atol=1e-9)
    state = integ.init(oracle, x0)
    for _ in range(30):
        state = integ.step(oracle, state)
    assert state.t[0] > 5 * state.t[1]


# -- the exact invariant identity of explicit steps on factorizations ---


FACTORIZATIONS = [factorization.mc2x2_example1(), factorization.matrix_sensing(),
                  factorization.pca_factorization(), l1_factorization.l1_matrix_factorization(),
                  l1_factorization.l1_rank1_factorization()]


def factor_blocks(problem, G):
    """The X- and Y-blocks of a flat gradient, as (B, rows, r) stacks."""
    if problem.name == "mc2x2_example1":
        return G[:, :2, None], G[:, 2:, None]
    p = problem.params
    m = p.get("n1", p.get("m"))
    n_ = p.get("n2", p.get("n"))
    r = p.get("r", 1)
    return G[:, :m * r].reshape(-1, m, r), G[:, m * r:m * r + n_ * r].reshape(-1, n_, r)


@pytest.mark.parametrize("problem", FACTORIZATIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("integ", [ExplicitEuler(h=1e-3), SubgradientMethod("harmonic", c=0.05)],
                         ids=lambda i: i.name)
def test_invariant_moves_by_exactly_the_accumulated_h2_terms(problem, integ):
    """C_{k+1} - C_k = h_k^2 (G_X^T G_X - G_Y^T G_Y) for C = X^T X - Y^T Y, exactly."""
    if integ.skip(problem):
        pytest.skip(integ.skip(problem))
    x0 = problem.sample(np.random.default_rng(5), 8)
    oracle = Oracle(problem, 8)
    state = integ.init(oracle, x0)
    predicted = problem.invariant(x0)
    for _ in range(300):
        G = problem.first_order(state.x)
        t_before = state.t
        state = integ.step(oracle, state)
        h = (state.t - t_before)[:, None, None]
        GX, GY = factor_blocks(problem, G)
        term = h**2 * (np.swapaxes(GX, 1, 2) @ GX - np.swapaxes(GY, 1, 2) @ GY)
        predicted = predicted + term.reshape(predicted.shape)
    actual = problem.invariant(state.x)
    assert np.abs(actual - predicted).max() < 1e-9
    assert np.abs(actual - problem.invariant(x0)).max() > 1e-9  # the drift itself is not zero


def test_subgradient_schedules_and_best_value():
    p = l1_factorization.l1_rank1_factorization()
    x0 = p.sample(np.random.default_rng(0), 4)
    for schedule, first_steps in (("constant", [0.1, 0.1]), ("sqrt", [0.1, 0.1 / math.sqrt(2)]),
                                  ("harmonic", [0.1, 0.05])):
        integ = SubgradientMethod(schedule, c=0.1)
        oracle = Oracle(p, 4)
        state = integ.init(oracle, x0)
        ts = []
        for _ in range(2):
            state = integ.step(oracle, state)
            ts.append(float(state.t[0]))
        np.testing.assert_allclose(np.diff([0.0, *ts]), first_steps)
    polyak = SubgradientMethod("polyak", c=1.0)
    oracle = Oracle(p, 4)
    state = polyak.init(oracle, x0)
    for _ in range(500):
        state = polyak.step(oracle, state)
    assert np.all(state.f_best <= p.f(x0))
    assert np.all(state.f_best <= p.f(state.x) + 1e-12)
    assert np.median(state.f_best) < 1e-2  # Polyak steps with the known f_star = 0 get close
    assert polyak.skip(cubic_blowup_1d()) is not None


def test_invalid_hyperparameters_are_refused_with_the_name():
    with pytest.raises(ValueError, match="h must be a finite number > 0"):
        ExplicitEuler(h=0.0)
    with pytest.raises(ValueError, match="rtol"):
        DormandPrince(rtol=-1.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        SubgradientMethod("cosine")
    with pytest.raises(ValueError, match="tau"):
        ProximalPoint(tau=math.inf)
