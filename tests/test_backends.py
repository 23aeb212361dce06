"""The JAX backend gives the numpy backend's answers: same labels, same fixed-step points.

Both backends run the same plugin code; the harness advances a JAX batch in compiled chunks
from event to event (benchsuite.batches) and a numpy batch step by step, and processes each
event the same way. What may differ is rounding (XLA may fuse or reorder floating-point
operations), so fixed-step final points agree to 1e-9 relative, and labels agree except where
an adaptive step-size decision sits on its threshold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchsuite import Budget, run_cell
from benchsuite.arrays import namespace
from benchsuite.backends import BackendError, resolve
from benchsuite.campaign import (
    initial_points,
    load_campaign,
    select_integrators,
    select_problems,
)
from benchsuite.integrator import Flag, Integrator, State
from benchsuite.plugins import load_registry
from benchsuite.testing.reference import quadratic
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_plugins.subgradient import SubgradientMethod
from benchsuite_problems.factorization import mc2x2_example1

FIGURE1 = Path(__file__).parents[1] / "benchsuite" / "campaigns" / "figure1.toml"
POINTS_RTOL = 1e-9


def _both(problem, integrator, x0, budget, **kwargs):
    return [run_cell(problem, integrator, x0, budget, backend=b, **kwargs)
            for b in ("numpy", "jax")]


def _points(traj):
    return np.stack(traj["x"].to_numpy())


def _assert_fixed_step_agree(a, b, what: str, smooth: bool = True) -> None:
    """Same labels, stops, steps and oracle counts; final points within 1e-9 of the point's
    size (smooth problems)."""
    ta, tb = a.trajectories, b.trajectories
    for column in ("outcome", "stop", "steps", "nfev", "ngev", "nprox"):
        assert (ta[column].astype(str) == tb[column].astype(str)).all(), (what, column)
    if not smooth:  # a subgradient selection flips sign on rounding-level differences at a
        return      # kink, so nonsmooth fixed-step paths agree in labels, not to 1e-9
    xa, xb = _points(ta), _points(tb)
    finite = np.isfinite(xa).all(axis=1)  # overflowed rows: inf or nan, as rounding has it
    assert (finite == np.isfinite(xb).all(axis=1)).all(), what
    xa, xb = xa[finite], xb[finite]
    size = np.maximum(1.0, np.abs(xa).max(axis=1, initial=0.0))[:, None]  # relative to |x|
    assert np.all(np.abs(xa - xb) <= POINTS_RTOL * size), what
    assert len(a.checkpoints) == len(b.checkpoints), what


def _adaptive_disagreements(a, b) -> np.ndarray:
    """Rows whose labels differ; each must be a row whose step sequence differs (an accept or
    reject decision that rounding tipped), never a row that took the same steps."""
    ta, tb = a.trajectories, b.trajectories
    differ = (ta["outcome"].astype(str) != tb["outcome"].astype(str)).to_numpy()
    same_steps = (ta["steps"] == tb["steps"]).to_numpy() & (ta["ngev"] == tb["ngev"]).to_numpy()
    assert not (differ & same_steps).any()
    return differ


def test_figure1_campaign_agrees():
    """Every integrator of the Figure 1 campaign on Example 1, from the campaign's draws
    (fewer points, flow time 20 as in the paper's figure): the fixed-step ones (Euler at both
    steps, the proximal scheme with its compiled inner solve) give identical labels, steps and
    counts and points to 1e-9; RK45's labels differ at most where its step sequence diverged
    (none here)."""
    campaign = load_campaign(FIGURE1)
    registry = load_registry()
    [problem] = select_problems(registry, campaign.problems)
    x0 = initial_points(problem, 300, campaign.seed)
    budget = dataclasses.replace(campaign.budget, t_max=20.0)
    integrators = select_integrators(registry, campaign.integrators)
    assert {i.name for i in integrators} == {"euler", "rk45", "proximal"}
    for integrator in integrators:
        a, b = _both(problem, integrator, x0, budget, draw_landscape=False)
        if integrator.adaptive:
            assert _adaptive_disagreements(a, b).sum() == 0, integrator.label
        else:
            _assert_fixed_step_agree(a, b, integrator.label)
        stuck = (b.trajectories["outcome"].astype(str) == "escape_spurious").mean()
        if integrator.label != "euler(h=0.05)":  # stalls at its stability limit instead
            assert 0.04 < stuck < 0.14, integrator.label  # Figure 1: about 8.5% escape


def test_subgradient_schedule_traces_and_agrees():
    problem = mc2x2_example1()
    x0 = initial_points(problem, 64, 1)
    for schedule in ("harmonic", "polyak"):
        _assert_fixed_step_agree(*_both(problem, SubgradientMethod(schedule=schedule), x0,
                                        Budget(t_max=5.0)), schedule)


@pytest.mark.slow
def test_catalog_agrees():
    """Every benchmark problem of the catalog with explicit Euler, from the default campaign's
    draws: labels, stops and counts identical, points to 1e-9 on smooth problems. (RK45,
    the subgradient method and proximal are compared on Figure 1's problem above and in
    test_backend_campaign: a compile per cell makes the whole catalog x every integrator a
    benchmark, not a test.)"""
    registry = load_registry()
    budget = Budget(t_max=5.0, max_steps=2000)
    compared = 0
    for problem in registry.problems.values():
        if problem.role != "benchmark":
            continue
        x0 = initial_points(problem, 8, 0)
        a, b = _both(problem, ExplicitEuler(), x0, budget, draw_landscape=False)
        _assert_fixed_step_agree(a, b, problem.name, smooth=problem.smooth)
        compared += 1
    assert compared >= 30


def test_counts_budgets_and_retirement_match():
    """Rows that retire mid-run (flags, non-finite values, oracle-call budget) leave with the
    same step, counts and checkpoints on both backends, and the others go on."""
    problem = quadratic(np.diag([1.0, 50.0]))
    x0 = np.random.default_rng(3).normal(size=(40, 2))
    x0[::5] *= 1e150  # these overflow within a few hundred steps: NONFINITE
    unstable = ExplicitEuler(h=0.05)  # |1 - 50 h| = 1.5: every row's y-component grows
    a, b = _both(problem, unstable, x0, Budget(t_max=200.0, max_steps=3000))
    _assert_fixed_step_agree(a, b, "unstable euler")
    assert set(a.trajectories["stop"]) >= {"nonfinite"}
    pd.testing.assert_frame_equal(a.checkpoints[["traj", "step", "nfev", "ngev"]],
                                  b.checkpoints[["traj", "step", "nfev", "ngev"]])
    a, b = _both(problem, DormandPrince(), x0[1:5], Budget(t_max=50.0, max_evals=120))
    assert (a.trajectories["stop"] == "max_evals").all()
    assert (a.trajectories["ngev"] == b.trajectories["ngev"]).all()


@dataclasses.dataclass(frozen=True)
class _Flagging(Integrator):
    """Euler that flags rows whose first coordinate passes 2 (a stand-in for PROX_FAILED)."""

    name = "flagging"
    requires = frozenset({"grad"})

    def init(self, oracle, x0):
        return State.start(x0)

    def step(self, oracle, state):
        x = state.x - 0.1 * oracle.grad(state.x)
        xp = namespace(x)
        collapse = xp.asarray(int(Flag.STEP_COLLAPSE), dtype=state.flag.dtype)
        flag = xp.where(x[:, 0] > 2.0, collapse, state.flag)
        return state.replace(x=x, t=state.t + 0.1, flag=flag)


@dataclasses.dataclass(frozen=True)
class _HostReading(_Flagging):
    """Reads an array value on the host inside its step: fine eagerly, untraceable."""

    name = "host_reading"

    def step(self, oracle, state):
        if bool((state.x[:, 0] > 100.0).any()):
            return state
        return super().step(oracle, state)


def test_flags_retire_rows_mid_chunk():
    problem = quadratic(np.diag([-0.5, 1.0]))  # unstable direction: |x0| grows like e^(t/2)
    x0 = np.random.default_rng(0).uniform(-1.5, 1.5, size=(30, 2))  # x0 > 0 rows flag
    a, b = _both(problem, _Flagging(), x0, Budget(t_max=10.0))
    _assert_fixed_step_agree(a, b, "flagging")
    stops = a.trajectories["stop"]
    assert (stops == "step_collapse").sum() > 0 and (stops == "t_max").sum() > 0


def test_untraceable_step_fails_its_rows_with_what_to_do():
    problem = quadratic(np.diag([1.0, 2.0]))
    x0 = np.ones((4, 2))
    eager = run_cell(problem, _HostReading(), x0, Budget(t_max=1.0)).trajectories
    assert (eager["stop"] == "t_max").all()
    compiled = run_cell(problem, _HostReading(), x0, Budget(t_max=1.0), backend="jax")
    traj = compiled.trajectories
    assert (traj["outcome"].astype(str) == "failed").all()
    assert traj["message"].str.contains("benchsuite.arrays.while_loop").all()


def test_eager_array_api_backend_matches_numpy_bitwise():
    """Another array library (torch, cupy: not installed by the tests) runs through the eager
    path, one step per call with the library's own arrays. ``array_api_strict`` stands in for
    them: it implements the standard and nothing more, so a step or oracle that reaches for a
    numpy-only function fails here. Same operations in the same order as numpy: bitwise."""
    problem = mc2x2_example1()
    x0 = problem.sample(np.random.default_rng(3), 48)
    budget = Budget(t_max=5.0, max_steps=2000)
    registry = load_registry()
    ran = 0
    for name, integrator in registry.integrators.items():
        a, b = (run_cell(problem, integrator, x0, budget, backend=backend)
                for backend in ("numpy", "array_api_strict"))
        if not integrator.array_api:
            assert "numpy-only" in b.skipped, name
            continue
        ta, tb = a.trajectories, b.trajectories
        for column in ("outcome", "stop", "steps", "nfev", "ngev", "nprox", "message"):
            assert (ta[column].astype(str) == tb[column].astype(str)).all(), (name, column)
        np.testing.assert_array_equal(_points(ta), _points(tb), err_msg=name)
        ran += 1
    assert ran >= 5  # euler, proximal, rk23, rk45, subgradient


def test_numpy_only_plugins_are_skipped_with_the_reason():
    problem = mc2x2_example1()
    only_numpy = dataclasses.replace(problem, name="numpy_only", array_api=False)
    result = run_cell(only_numpy, ExplicitEuler(), np.zeros((2, 4)), backend="jax")
    assert "numpy-only" in result.skipped and "jax" in result.skipped
    registry = load_registry()
    if "scipy_ivp" in registry.integrators:
        skipped = run_cell(problem, registry.integrators["scipy_ivp"], np.zeros((2, 4)),
                           backend="jax").skipped
        assert "array_api = False" in skipped


def test_backend_errors_say_what_to_do():
    with pytest.raises(BackendError, match="choose one of"):
        resolve("nope")
    with pytest.raises(BackendError, match="no device 'qpu'"):
        resolve("jax", "qpu")
    import jax

    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.raises(BackendError, match="jax\\[cuda12\\]"):
            resolve("jax", "gpu")
    assert resolve("jax").describe()["backend"] == "jax"


def test_the_kit_catches_a_step_that_does_not_compile():
    """The plugin kit's `compiled` check: the host-reading step fails it with the tracing
    hint, a traceable one passes it."""
    from benchsuite.testing import check_integrator

    def verdict(integrator):
        [finding] = check_integrator(integrator, slow=True, checks=["compiled"])
        return finding

    bad = verdict(_HostReading())
    assert bad.severity.value == "fail" and "does not run compiled" in bad.message
    assert "while_loop" in bad.message
    assert verdict(_Flagging()).severity.value == "pass"
