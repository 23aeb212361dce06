"""Throughput ratios, each measured against its baseline in the same run (never a timed test).

1. Batched explicit Euler on Example 1 (through the whole harness: oracle counting, budgets,
   checkpoints) against a hand-fused numpy loop written inline for that one problem.
   Target: ratio >= 0.5.
2. Batched Dormand-Prince 5(4) against scipy's ``solve_ivp`` (RK45) looped over the same
   trajectories at the same tolerances. Target: ratio >= 100.

Run ``python -m benchmarks.throughput`` from the repository root. (asv also scans this module:
classes with ``time_*`` methods, such as ``Recording``, are not imported into its namespace.)
"""

from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

from benchsuite import Budget, harness, run_cell
from benchsuite.columns import points
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_problems.factorization import mc2x2_example1

EULER_BATCH, EULER_STEPS, H = 20_000, 2_000, 0.01  # flow time 20, as in Figure 1's runs
RK_BATCH, RK_T, RTOL, ATOL = 2_000, 100.0, 1e-6, 1e-9
#: solve_ivp's rate per trajectory-step does not depend on how many it loops over, so it is
#: timed on the first trajectories of the same batch, to keep the benchmark short.
RK_BASELINE_TRAJECTORIES = 250


def _points(batch: int) -> np.ndarray:
    return mc2x2_example1().sample(np.random.default_rng(0), batch)


def fused_euler(x0: np.ndarray, h: float, steps: int) -> np.ndarray:
    """Gradient descent on Example 1, by hand: one fused loop, no harness, no generality."""
    x1, x2, y1, y2 = (np.array(c) for c in x0.T)
    for _ in range(steps):
        r1 = x1 * y1 - 1.0
        r2 = x2 * y1 - 1.0
        r3 = x2 * y2 - 1.0
        g_x1, g_x2 = 2.0 * r1 * y1, 2.0 * (r2 * y1 + r3 * y2)
        g_y1, g_y2 = 2.0 * (r1 * x1 + r2 * x2), 2.0 * r3 * x2
        x1 -= h * g_x1
        x2 -= h * g_x2
        y1 -= h * g_y1
        y2 -= h * g_y2
    return np.stack([x1, x2, y1, y2], axis=1)


def euler_ratio(batch: int = EULER_BATCH, steps: int = EULER_STEPS) -> dict[str, float]:
    """Trajectory-steps per second: harness-batched Euler / hand-fused loop (best of 3 each)."""
    x0 = _points(batch)
    budget = Budget(t_max=1e9, max_steps=steps)
    ours, base = [], []
    for _ in range(3):
        start = time.perf_counter()
        res = run_cell(mc2x2_example1(), ExplicitEuler(h=H), x0, budget,
                       recording=harness.Recording())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        end = fused_euler(x0, H, steps)
        base.append(time.perf_counter() - start)
    # same arithmetic, same result: the comparison is of overhead, not of different work
    np.testing.assert_allclose(points(res.trajectories), end, rtol=1e-12)
    rate_ours, rate_base = batch * steps / min(ours), batch * steps / min(base)
    return {"euler_steps_per_s": rate_ours, "fused_steps_per_s": rate_base,
            "euler_ratio": rate_ours / rate_base}


def rk_ratio(batch: int = RK_BATCH, t_end: float = RK_T,
             baseline: int = RK_BASELINE_TRAJECTORIES) -> dict[str, float]:
    """Trajectory-steps per second: batched DP5(4) / solve_ivp RK45 looped over trajectories."""
    problem = mc2x2_example1()
    x0 = _points(batch)
    start = time.perf_counter()
    res = run_cell(problem, DormandPrince(rtol=RTOL, atol=ATOL), x0,
                   Budget(t_max=t_end, max_steps=10**6))
    ours = time.perf_counter() - start
    ours_steps = int(res.trajectories["steps"].sum())
    start = time.perf_counter()
    base_steps = 0
    for row in x0[:baseline]:
        sol = solve_ivp(lambda _t, y: -problem.grad(y[None])[0], (0.0, t_end), row,
                        method="RK45", rtol=RTOL, atol=ATOL)
        base_steps += (sol.nfev - 2) // 6  # 6 evaluations per attempt (FSAL) + 2 to start
    base = time.perf_counter() - start
    rate_ours, rate_base = ours_steps / ours, base_steps / base
    return {"rk_steps_per_s": rate_ours, "solve_ivp_steps_per_s": rate_base,
            "rk_ratio": rate_ours / rate_base}


def main() -> None:
    euler = euler_ratio()
    print(f"Euler, Example 1, B = {EULER_BATCH}, {EULER_STEPS} steps: "
          f"{euler['euler_steps_per_s']:.3g} trajectory-steps/s through the harness, "
          f"{euler['fused_steps_per_s']:.3g} hand-fused: ratio {euler['euler_ratio']:.2f} "
          "(target >= 0.5)")
    rk = rk_ratio()
    print(f"RK45, Example 1, B = {RK_BATCH}, t = {RK_T}, rtol {RTOL}, atol {ATOL}: "
          f"{rk['rk_steps_per_s']:.3g} trajectory-steps/s batched, "
          f"{rk['solve_ivp_steps_per_s']:.3g} with solve_ivp looped over "
          f"{RK_BASELINE_TRAJECTORIES} of them: ratio "
          f"{rk['rk_ratio']:.0f} (target >= 100)")


if __name__ == "__main__":
    main()
