"""The harness: budgets, log-spaced recording, and faults turned into per-trajectory stops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchsuite import Budget, Problem, Recording, run_cell, uniform_box
from benchsuite.columns import points
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_problems.factorization import mc2x2_example1, xy_limit, xy_minus_one


def x0(problem, batch=16, seed=0):
    return problem.sample(np.random.default_rng(seed), batch)


def test_flow_time_budget_and_log_spaced_checkpoints():
    p = xy_minus_one()
    res = run_cell(p, ExplicitEuler(h=0.01), x0(p), Budget(t_max=10.0))
    traj, cp = res.trajectories, res.checkpoints
    assert (traj["stop"] == "t_max").all()
    assert (traj["steps"] == 1000).all()
    np.testing.assert_allclose(traj["t"], 10.0, rtol=1e-9)
    per_traj = cp.groupby("traj").size()
    # O(log T) rows: ~2 per doubling of steps and of flow time, not 1000
    assert per_traj.max() <= 2 * 2 * np.log2(1000) + 4
    assert (cp.groupby("traj")["step"].apply(lambda s: s.is_monotonic_increasing)).all()


def test_euler_converges_to_the_exact_limit_of_xy():
    p = xy_minus_one()
    start = np.array([[1.0, 2.0], [0.7, -0.2]])
    res = run_cell(p, ExplicitEuler(h=1e-3), start, Budget(t_max=30.0, max_steps=10**6))
    final = points(res.trajectories)
    np.testing.assert_allclose(final[0], [0.5502505227, 1.8173540210], atol=5e-3)
    np.testing.assert_allclose(final, xy_limit(start), atol=5e-3)
    drift = res.checkpoints.groupby("traj")["drift"].max()
    assert drift.max() < 1e-2  # Euler drifts the invariant by O(h), not O(1)


def test_step_budget_and_counts():
    p = xy_minus_one()
    res = run_cell(p, ExplicitEuler(h=0.01), x0(p, 4), Budget(t_max=1e9, max_steps=50))
    traj = res.trajectories
    assert (traj["stop"] == "max_steps").all() and (traj["ngev"] == 50).all()
    assert (traj["nfev"] == 0).all()  # recording does not count as oracle calls


def test_eval_budget():
    p = xy_minus_one()
    res = run_cell(p, ExplicitEuler(h=0.01), x0(p, 4), Budget(t_max=1e9, max_evals=30))
    assert (res.trajectories["stop"] == "max_evals").all()
    assert (res.trajectories["ngev"] == 30).all()


def test_overflow_becomes_nonfinite_stop_not_a_crash():
    p = mc2x2_example1()
    start = np.array([[1.0, 1.0, 1.0, 1.0], [5.0, -5.0, 5.0, 5.0]])
    res = run_cell(p, ExplicitEuler(h=0.5), start, Budget(t_max=1e4, max_steps=10**5))
    stops = res.trajectories.set_index("traj")["stop"]
    assert stops[1] == "nonfinite" and "overflow" in res.trajectories["message"][1]


def test_exception_in_an_oracle_becomes_error_stop_with_message():
    def boom(X):
        raise FloatingPointError("deliberate oracle failure")

    p = dataclasses.replace(xy_minus_one(), grad=boom)
    res = run_cell(p, ExplicitEuler(), x0(p, 3), Budget(t_max=1.0))
    assert (res.trajectories["stop"] == "error").all()
    assert res.trajectories["message"].str.contains("deliberate oracle failure").all()


def test_wrong_shape_oracle_is_named_in_the_message():
    p = dataclasses.replace(xy_minus_one(), grad=lambda X: X[:, :1])
    res = run_cell(p, ExplicitEuler(), x0(p, 3), Budget(t_max=1.0))
    assert res.trajectories["message"].str.contains("xy_minus_one.grad returned shape").all()


def test_skip_when_the_integrator_does_not_apply():
    class NeedsProx(ExplicitEuler):
        requires = frozenset({"prox"})

    res = run_cell(xy_minus_one(), NeedsProx(), x0(xy_minus_one()))
    assert res.skipped and "provides none" in res.skipped and res.trajectories.empty


def test_rejects_misshapen_initial_points():
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        run_cell(xy_minus_one(), ExplicitEuler(), np.zeros((3, 4)))


def test_recording_grids():
    rec = Recording(per_octave=2, t_min=0.01)
    grid = rec.time_grid(100.0)
    assert grid[0] == 0.01 and grid[-1] == 100.0 and np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(grid[2] / grid[0], 2.0)
    steps = rec.step_grid(1000)
    assert {1, 2, 4, 1000} <= steps and len(steps) < 25


def test_a_fault_stays_inside_its_trajectories():
    """An oracle that raises for some rows fails those rows only; the others run on."""
    base = xy_minus_one()

    def picky(X):
        if np.any(X[:, 0] > 1.0):
            raise ValueError("refuses x > 1")
        return base.grad(X)

    p = dataclasses.replace(base, grad=picky)
    start = np.array([[0.5, 0.5], [1.5, 0.2], [-0.3, 0.8], [1.2, -1.0], [0.1, 0.9]])
    res = run_cell(p, ExplicitEuler(h=0.01), start, Budget(t_max=1.0))
    traj = res.trajectories.set_index("traj")
    assert traj.loc[[1, 3], "stop"].tolist() == ["error", "error"]
    assert traj.loc[[1, 3], "message"].str.contains("refuses x > 1").all()
    assert (traj.loc[[0, 2, 4], "stop"] == "t_max").all()
    # the survivors are exactly what they would have been alone
    alone = run_cell(base, ExplicitEuler(h=0.01), start[[0, 2, 4]], Budget(t_max=1.0))
    np.testing.assert_array_equal(points(res.trajectories)[[0, 2, 4]],
                                  points(alone.trajectories))


@pytest.mark.parametrize("misbehaviour", ["exit", "sleep"])
def test_the_landscape_never_costs_the_trajectories(misbehaviour):
    """The report's landscape is f on a grid wider than the trajectories; an f that exits or
    hangs out there loses the picture (with why), never the cell's finished trajectories."""
    import time as clock

    from benchsuite.problem import Theory, Verdict

    def f(x):
        if np.abs(np.asarray(x)).max() > 1.3:  # only the grid goes this far
            if misbehaviour == "exit":
                raise SystemExit(0)
            clock.sleep(30)
        return np.sum(np.asarray(x) ** 2, axis=1)

    yes = Verdict.YES
    problem = Problem(
        name="bowl_with_a_trap", n=2, f=f, grad=lambda x: 2 * np.asarray(x),
        sample=uniform_box(-1, 1, 2), f_star=0.0, attained=True, smooth=True, coercive=True,
        theory=Theory(yes, Verdict.NO, Verdict.NO, source="test"), description="a bowl")
    x0 = problem.sample(np.random.default_rng(0), 4)
    started = clock.perf_counter()
    cell = run_cell(problem, ExplicitEuler(h=0.1), x0, Budget(t_max=5.0, wall_time=2.0))
    assert clock.perf_counter() - started < 10  # cut at what is left of the 2 s net
    assert (cell.trajectories["outcome"].astype(str) == "converged_global").all()
    assert cell.landscape.empty and cell.info["landscape"].startswith("not recorded")


def _sorted_records(records):
    """The definition of the checkpoint table's order: stable sort by trajectory (records
    come in step order); of two records of one (trajectory, step), the later."""
    columns = {k: np.concatenate([r[k] for r in records]) for k in records[0]}
    order = np.argsort(columns["traj"], kind="stable")
    ids, steps = columns["traj"][order], columns["step"][order]
    later = np.append((ids[1:] != ids[:-1]) | (steps[1:] != steps[:-1]), True)
    return {k: v[order[later]] for k, v in columns.items()}


@pytest.mark.parametrize("seed", range(40))
def test_checkpoint_table_order_whatever_the_history(seed):
    """Every way rows can be recorded (all at once, subsets, rows retiring, a step recorded
    twice, sparse adaptive-like histories): the fast grid layouts give exactly the sorted
    table, values and dtypes."""
    from benchsuite.harness import _long_form

    rng = np.random.default_rng(seed)
    batch = int(rng.integers(1, 30))
    alive, step, records = np.arange(batch), 0, []
    sparse = seed % 4 == 0  # one row at a time at many steps: the general path
    for _ in range(int(rng.integers(1, 25))):
        step += int(rng.integers(0, 3))
        if sparse:
            ids = np.sort(rng.choice(batch, size=1))
        elif seed % 4 == 1 or rng.random() < 0.5:
            ids = alive  # every live row
        else:
            ids = np.sort(rng.choice(alive, size=int(rng.integers(0, alive.size + 1)),
                                     replace=False))
        alive = alive[rng.random(alive.size) < 0.9] if seed % 4 == 2 else alive
        if ids.size:
            records.append({"traj": ids, "step": np.full(ids.size, step),
                            "f": rng.random(ids.size), "nfev": rng.integers(0, 9, ids.size)})
    if not records:
        return
    got, want = _long_form(records, batch), _sorted_records(records)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
