"""Throughput ratios, each measured against its baseline in the same run (never a timed test).

1. Batched explicit Euler on Example 1 (through the whole harness: oracle counting, budgets,
   checkpoints, classification) against a hand-fused numpy loop written inline for that one
   problem, B = 20 000, 2000 steps. Target: ratio >= 0.5 (numpy harness), >= 2 (JAX harness,
   warm: the compile is reported apart), and the JAX ratio at 20 000 steps, where the per-cell
   costs (classification, tables) are amortized.
2. Batched Dormand-Prince 5(4) (numpy and JAX harness) against scipy's ``solve_ivp`` (RK45)
   looped over the same trajectories at the same tolerances (and about as many steps:
   ``rk_steps_vs_solve_ivp``). Target: ratio >= 100.
3. A sweep of trajectory-steps per second over the batch size (10^3 to 10^6) for the numpy
   harness, the JAX harness and the hand-fused loop, with each run's peak resident memory.
4. What one oracle call costs in the proximal point method against explicit Euler (seconds per
   counted call: f, gradient and prox evaluations), B = 1000, flow time 20. Target: <= 3.

Run from the repository root::

    python -m benchmarks.throughput            # readable lines (about 3 minutes on 2 cores)
    python -m benchmarks.throughput --json     # one JSON object on stdout, progress on stderr
    python -m benchmarks.throughput --quick    # the sweep stops at 10^5, fewer repetitions

JAX figures are null (with a note) where jax is not installed or a step cannot be compiled.
(asv also scans this module: classes with ``time_*`` methods, such as ``Recording``, are not
imported into its namespace, and no function here is named like an asv benchmark.)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from benchsuite import Budget, harness, jsonio, run_cell
from benchsuite.backends import BackendError, resolve
from benchsuite.columns import points
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.proximal import ProximalPoint
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_problems.factorization import mc2x2_example1

EULER_BATCH, EULER_STEPS, H = 20_000, 2_000, 0.01  # flow time 20, as in Figure 1's runs
LONG_STEPS = 20_000  # flow time 200: the per-cell costs are amortized over 10x the steps
RK_BATCH, RK_T, RTOL, ATOL = 2_000, 100.0, 1e-6, 1e-9
#: solve_ivp's rate per trajectory-step does not depend on how many it loops over, so it is
#: timed on the first trajectories of the same batch, to keep the benchmark short.
RK_BASELINE_TRAJECTORIES = 250
PROX_BATCH, PROX_T = 1_000, 20.0
SWEEP_BATCHES = (10**3, 10**4, 10**5, 10**6)
SWEEP_STEPS = 200
#: Half a checkpoint per octave, tables of the first 1000 trajectories: every trajectory's
#: checkpoints are held in memory until the cell is classified, and at B = 10^6 one checkpoint
#: costs about 0.1 GB (with per_octave=1 the numpy harness peaked at 4.6 GB, with 0.5 at 3.3).
SWEEP_RECORDING = harness.Recording(per_octave=0.5, trajectories=1000)
#: Repetitions (best of) by batch size, full and --quick.
SWEEP_REPEATS = {10**3: 5, 10**4: 3, 10**5: 2, 10**6: 1}
SWEEP_REPEATS_QUICK = {10**3: 3, 10**4: 2, 10**5: 1}
TARGETS = {"euler_ratio": ">= 0.5", "jax_euler_ratio": ">= 2", "rk_ratio": ">= 100",
           "jax_rk_ratio": ">= 100", "proximal_call_cost_ratio": "<= 3",
           "jax_proximal_call_cost_ratio": "<= 3"}


@cache
def _example1():
    """One instance per process: compiled chunks are cached by the problem's identity."""
    return mc2x2_example1()


def _points(batch: int) -> np.ndarray:
    return _example1().sample(np.random.default_rng(0), batch)


def jax_available() -> bool:
    """Whether the harness can run on JAX here (as ``--backend jax`` decides: jax imports and
    has a CPU device)."""
    try:
        resolve("jax")
    except BackendError:
        return False
    return True


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


# --- measuring ---------------------------------------------------------------------------------

_COMPILE_EVENTS: list[float] = []
_LISTENING = False


def _listen_to_compiles() -> None:
    """Collect the durations JAX reports for tracing, lowering and compiling (once per process)."""
    global _LISTENING
    if _LISTENING:
        return
    import jax.monitoring

    def listener(name: str, duration: float, **_: Any) -> None:
        if name.startswith("/jax/core/compile/"):
            _COMPILE_EVENTS.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    _LISTENING = True


def _compiling(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn`` once: (wall seconds, seconds JAX reported compiling, its result)."""
    _listen_to_compiles()
    before = len(_COMPILE_EVENTS)
    start = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    return wall, float(sum(_COMPILE_EVENTS[before:])), out


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's resident set (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _euler_cell(x0: np.ndarray, steps: int, backend: str,
                recording: harness.Recording | None = None) -> np.ndarray:
    """The final points of Euler through the harness (the cell's tables are dropped at once)."""
    res = run_cell(_example1(), ExplicitEuler(h=H), x0, Budget(t_max=1e9, max_steps=steps),
                   recording=recording or harness.Recording(), backend=backend)
    return points(res.trajectories)


def _interleaved(runs: dict[str, Callable[[], Any]], repeats: int
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    """Best-of-``repeats`` seconds of each run, alternating between them so that the machine's
    slow spells fall on all of them; and each run's last result."""
    best = dict.fromkeys(runs, math.inf)
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            last.pop(name, None)
            gc.collect()
            start = time.perf_counter()
            last[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, last


def euler_ratios(batch: int = EULER_BATCH, steps: int = EULER_STEPS,
                 backends: tuple[str, ...] = ("numpy", "jax"), repeats: int = 3
                 ) -> dict[str, float]:
    """Trajectory-steps per second: harness-batched Euler / hand-fused loop (best of
    ``repeats`` each, interleaved), for each of ``backends``. The JAX harness runs once untimed
    first: ``jax_compile_s`` is what JAX reported compiling then, ``jax_first_run_s`` that run.
    """
    x0 = _points(batch)
    out: dict[str, float] = {}
    if "jax" in backends:
        first, compile_s, _ = _compiling(lambda: _euler_cell(x0, steps, "jax"))
        out.update(jax_first_run_s=first, jax_compile_s=compile_s)
    runs = {b: (lambda b=b: _euler_cell(x0, steps, b)) for b in backends}
    runs["fused"] = lambda: fused_euler(x0, H, steps)
    best, end = _interleaved(runs, repeats)
    # same arithmetic, same result: the comparison is of overhead, not of different work
    if "numpy" in end:
        np.testing.assert_allclose(end["numpy"], end["fused"], rtol=1e-12)
    if "jax" in end:
        np.testing.assert_allclose(end["jax"], end.get("numpy", end["fused"]), rtol=1e-9)
    rate_base = batch * steps / best["fused"]
    out["fused_steps_per_s"] = rate_base
    for b in backends:
        prefix = "" if b == "numpy" else f"{b}_"
        out[f"{prefix}euler_steps_per_s"] = batch * steps / best[b]
        out[f"{prefix}euler_ratio"] = out[f"{prefix}euler_steps_per_s"] / rate_base
    return out


def euler_ratio(batch: int = EULER_BATCH, steps: int = EULER_STEPS) -> dict[str, float]:
    """The numpy harness's ratio alone (see :func:`euler_ratios`)."""
    return euler_ratios(batch, steps, backends=("numpy",))


def jax_euler_ratio_long(batch: int = EULER_BATCH, steps: int = LONG_STEPS, repeats: int = 2
                         ) -> dict[str, float]:
    """As :func:`euler_ratios` on JAX, over ``steps`` steps. The compiled chunk does not depend
    on the step budget, so a two-step run compiles it (or finds it compiled)."""
    x0 = _points(batch)
    _euler_cell(x0, 2, "jax")
    best, end = _interleaved({"jax": lambda: _euler_cell(x0, steps, "jax"),
                              "fused": lambda: fused_euler(x0, H, steps)}, repeats)
    np.testing.assert_allclose(end["jax"], end["fused"], rtol=1e-9)
    rate_ours, rate_base = batch * steps / best["jax"], batch * steps / best["fused"]
    return {"jax_euler_long_steps_per_s": rate_ours, "fused_long_steps_per_s": rate_base,
            "jax_euler_ratio_long": rate_ours / rate_base}


def _solve_ivp(x0: np.ndarray, t_end: float) -> tuple[int, float]:
    """Steps (attempts, rejected ones included) and seconds of scipy's RK45 looped over the
    rows of ``x0``."""
    problem = _example1()
    start = time.perf_counter()
    steps = 0
    for row in x0:
        sol = solve_ivp(lambda _t, y: -problem.grad(y[None])[0], (0.0, t_end), row,
                        method="RK45", rtol=RTOL, atol=ATOL)
        steps += (sol.nfev - 2) // 6  # 6 evaluations per attempt (FSAL) + 2 to start
    return steps, time.perf_counter() - start


def rk_ratios(batch: int = RK_BATCH, t_end: float = RK_T,
              baseline: int = RK_BASELINE_TRAJECTORIES,
              backends: tuple[str, ...] = ("numpy", "jax"), repeats: int = 1
              ) -> dict[str, float]:
    """Trajectory-steps per second: batched DP5(4) / solve_ivp RK45 looped over trajectories
    (one baseline for every backend; JAX warm, its first run reported as ``jax_rk_first_run_s``).

    The same work: every backend takes the same steps, row by row, to the same points (within
    the tolerances: rounding differs), and on the baseline's trajectories the batched method
    takes about as many steps as solve_ivp (``rk_steps_vs_solve_ivp``, asserted within 20%),
    so that rates per step compare like with like.
    """
    x0 = _points(batch)
    integrator = DormandPrince(rtol=RTOL, atol=ATOL)
    budget = Budget(t_max=t_end, max_steps=10**6)
    out: dict[str, float] = {}

    def cell(backend: str) -> tuple[np.ndarray, np.ndarray]:
        res = run_cell(_example1(), integrator, x0, budget, backend=backend)
        return res.trajectories["steps"].to_numpy(), points(res.trajectories)

    if "jax" in backends:
        first, compile_s, _ = _compiling(lambda: cell("jax"))
        out.update(jax_rk_first_run_s=first, jax_rk_compile_s=compile_s)
    best, ran = _interleaved({b: (lambda b=b: cell(b)) for b in backends}, repeats)
    steps, end = ran[backends[0]]
    for b in backends[1:]:  # row by row the same steps; the points within the tolerances
        np.testing.assert_array_equal(ran[b][0], steps)
        np.testing.assert_allclose(ran[b][1], end, rtol=RTOL, atol=ATOL)
    base_steps, base_s = _solve_ivp(x0[:baseline], t_end)
    out["rk_steps_vs_solve_ivp"] = float(steps[:baseline].sum()) / base_steps
    assert 0.8 <= out["rk_steps_vs_solve_ivp"] <= 1.25, out
    out["solve_ivp_steps_per_s"] = base_steps / base_s
    for b in backends:
        prefix = "" if b == "numpy" else f"{b}_"
        out[f"{prefix}rk_steps_per_s"] = int(steps.sum()) / best[b]
        out[f"{prefix}rk_ratio"] = out[f"{prefix}rk_steps_per_s"] / out["solve_ivp_steps_per_s"]
    return out


def rk_ratio(batch: int = RK_BATCH, t_end: float = RK_T,
             baseline: int = RK_BASELINE_TRAJECTORIES) -> dict[str, float]:
    """The numpy harness's ratio alone (see :func:`rk_ratios`)."""
    return rk_ratios(batch, t_end, baseline, backends=("numpy",))


class ComputeError(RuntimeError):
    """A cell whose trajectories failed: its figure cannot be measured."""


def proximal_call_cost(batch: int = PROX_BATCH, t_max: float = PROX_T, backend: str = "numpy",
                       repeats: int = 3, budget_s: float = 20.0) -> dict[str, float]:
    """Seconds per oracle call (f, gradient and prox evaluations, as counted by the harness)
    of ``ProximalPoint()`` / of ``ExplicitEuler(h=0.01)``, on Example 1 from the same points.

    Best of ``repeats`` runs each (fewer where the proximal runs would pass ``budget_s``);
    on JAX both run once untimed first. Raises :class:`ComputeError` where a trajectory fails.
    """
    x0 = _points(batch)
    budget = Budget(t_max=t_max)
    prefix = "" if backend == "numpy" else f"{backend}_"

    def cell(integrator) -> int:
        res = run_cell(_example1(), integrator, x0, budget, backend=backend)
        traj = res.trajectories
        if res.skipped:
            raise ComputeError(f"{integrator.name} skipped on {backend}: {res.skipped}")
        failed = traj[traj["stop"].astype(str) == "error"]
        if len(failed):
            raise ComputeError(f"{integrator.name} on {backend}: {len(failed)} of {len(traj)} "
                               f"trajectories failed, e.g. {failed['message'].iloc[0]}")
        return int(traj[["nfev", "ngev", "nprox"]].to_numpy().sum())

    out: dict[str, float] = {}
    for name, integrator in (("euler", ExplicitEuler(h=H)), ("proximal", ProximalPoint())):
        if backend == "jax":
            first, _, _ = _compiling(lambda integrator=integrator: cell(integrator))
            out[f"{prefix}{name}_first_run_s"] = first
        times, calls = [], set()
        # another proximal run only if it fits in budget_s (Euler's are short)
        while len(times) < repeats and (not times or name == "euler"
                                         or sum(times) + min(times) <= budget_s):
            gc.collect()
            start = time.perf_counter()
            calls.add(cell(integrator))
            times.append(time.perf_counter() - start)
        assert len(calls) == 1, f"{name} made {sorted(calls)} oracle calls in its runs"
        out[f"{prefix}{name}_calls"] = calls.pop()
        out[f"{prefix}{name}_s"] = min(times)
        out[f"{prefix}{name}_s_per_call"] = min(times) / out[f"{prefix}{name}_calls"]
    out[f"{prefix}proximal_call_cost_ratio"] = (out[f"{prefix}proximal_s_per_call"]
                                                / out[f"{prefix}euler_s_per_call"])
    return out


def sweep(batches: tuple[int, ...] = SWEEP_BATCHES, steps: int = SWEEP_STEPS,
          repeats: dict[int, int] | None = None, backends: tuple[str, ...] = ("numpy", "jax"),
          log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Trajectory-steps per second of Euler on Example 1 over ``steps`` steps, for each batch
    size, in the hand-fused loop (``backend`` "fused") and through the harness on each backend,
    which must end at the fused loop's points (the same work), with the process's peak resident
    memory during each run (``peak_rss_mb``, Linux).

    JAX is warm: one untimed run first, except where a batch is run only once (10^6 by
    default: one more run would cost half a minute), where JAX's reported compile seconds are
    subtracted from that run instead (``timing``: "compile subtracted").
    """
    repeats = repeats or SWEEP_REPEATS
    rows: list[dict[str, Any]] = []
    for batch in batches:
        x0 = _points(batch)
        reps = repeats.get(batch, 1)
        fused = None
        for backend in ("fused", *backends):
            def run(x0=x0, backend=backend):
                if backend == "fused":
                    return fused_euler(x0, H, steps)
                return _euler_cell(x0, steps, backend, SWEEP_RECORDING)

            row: dict[str, Any] = {"batch": batch, "backend": backend, "steps": steps,
                                   "repeats": reps}
            subtract = backend == "jax" and reps == 1
            if backend == "jax":
                row["timing"] = "compile subtracted" if subtract else "warm"
                if not subtract:
                    _, row["compile_s"], _ = _compiling(run)
            best, peak, end = math.inf, None, None
            for _ in range(reps):
                end = None  # the last run's points are not part of this run's memory
                gc.collect()
                reset = _reset_peak_rss()
                if subtract:
                    seconds, row["compile_s"], end = _compiling(run)
                    seconds -= row["compile_s"]
                else:
                    start = time.perf_counter()
                    end = run()
                    seconds = time.perf_counter() - start
                best = min(best, seconds)
                rss = _peak_rss_mb() if reset else None
                peak = rss if peak is None else max(peak, rss or 0.0)
            if fused is None:
                fused = end
            else:
                np.testing.assert_allclose(end, fused, rtol=1e-9)
            row["seconds"] = best
            row["steps_per_s"] = batch * steps / best
            row["peak_rss_mb"] = peak
            rows.append(row)
            log(f"  B = {batch:>9,} {backend:>5}: {row['steps_per_s']:.3g} trajectory-steps/s "
                f"({best:.3g} s, peak RSS {_mb(peak)})")
    return rows


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f} MB"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": None,
        "jax_default_device": None,
    }
    if jax_available():
        import jax

        info["jax"] = jax.__version__
        info["jax_default_device"] = str(jax.devices()[0])
        info["jax_default_backend"] = jax.default_backend()
    return info


# --- the report --------------------------------------------------------------------------------

def measure(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every figure of the module docstring, as one flat dict (plus ``sweep``, ``machine``,
    ``notes``); JAX figures are None where JAX is missing or fails, with a note."""
    began = time.perf_counter()
    has_jax = jax_available()
    backends = ("numpy", "jax") if has_jax else ("numpy",)
    notes: list[str] = []
    fig: dict[str, Any] = {"quick": quick, "targets": TARGETS}
    if not has_jax:
        notes.append("jax is not installed: JAX figures are null")
        fig.update(dict.fromkeys(("jax_euler_ratio", "jax_compile_s", "jax_euler_ratio_long",
                                  "jax_rk_ratio", "jax_proximal_call_cost_ratio")))

    def target(key: str) -> str:
        return f"(target {TARGETS[key]})"

    fig.update(euler_ratios(backends=backends, repeats=2 if quick else 3))
    log(f"Euler, Example 1, B = {EULER_BATCH}, {EULER_STEPS} steps: "
        f"{fig['euler_steps_per_s']:.3g} trajectory-steps/s through the harness, "
        f"{fig['fused_steps_per_s']:.3g} hand-fused: ratio {fig['euler_ratio']:.2f} "
        f"{target('euler_ratio')}")
    if has_jax:
        log(f"Euler on JAX (warm), same cell: {fig['jax_euler_steps_per_s']:.3g} "
            f"trajectory-steps/s, ratio {fig['jax_euler_ratio']:.2f} to hand-fused numpy "
            f"{target('jax_euler_ratio')}; first run {fig['jax_first_run_s']:.2f} s, of which "
            f"JAX reports {fig['jax_compile_s']:.2f} s compiling")
        fig.update(jax_euler_ratio_long(repeats=1 if quick else 2))
        log(f"Euler on JAX, {LONG_STEPS} steps (flow time {LONG_STEPS * H:g}): "
            f"{fig['jax_euler_long_steps_per_s']:.3g} trajectory-steps/s, hand-fused "
            f"{fig['fused_long_steps_per_s']:.3g}: ratio {fig['jax_euler_ratio_long']:.2f}")

    fig.update(rk_ratios(backends=backends))
    log(f"RK45, Example 1, B = {RK_BATCH}, t = {RK_T:g}, rtol {RTOL}, atol {ATOL}: "
        f"{fig['rk_steps_per_s']:.3g} trajectory-steps/s batched, "
        f"{fig['solve_ivp_steps_per_s']:.3g} with solve_ivp looped over "
        f"{RK_BASELINE_TRAJECTORIES} of them: ratio {fig['rk_ratio']:.0f} "
        f"{target('rk_ratio')}; {fig['rk_steps_vs_solve_ivp']:.2f} times solve_ivp's steps")
    if has_jax:
        log(f"RK45 on JAX (warm): {fig['jax_rk_steps_per_s']:.3g} trajectory-steps/s, ratio "
            f"{fig['jax_rk_ratio']:.0f} {target('jax_rk_ratio')}; first run "
            f"{fig['jax_rk_first_run_s']:.2f} s")

    for backend in backends:
        prefix = "" if backend == "numpy" else f"{backend}_"
        try:
            fig.update(proximal_call_cost(backend=backend, repeats=2 if quick else 3,
                                          budget_s=10.0 if quick else 20.0))
        except Exception as exc:  # e.g. a step that cannot be compiled yet: a figure is lost
            fig[f"{prefix}proximal_call_cost_ratio"] = None
            notes.append(f"{prefix}proximal_call_cost_ratio: {type(exc).__name__}: {exc}")
            log(f"Proximal point on {backend}: not measured ({type(exc).__name__}: "
                f"{str(exc)[:300]})")
            continue
        log(f"Proximal point on {backend}, Example 1, B = {PROX_BATCH}, flow time {PROX_T:g}: "
            f"{fig[prefix + 'proximal_s_per_call']:.3g} s per oracle call "
            f"({fig[prefix + 'proximal_calls']:,} calls in {fig[prefix + 'proximal_s']:.2f} s), "
            f"Euler {fig[prefix + 'euler_s_per_call']:.3g}: ratio "
            f"{fig[prefix + 'proximal_call_cost_ratio']:.2f} "
            f"{target(prefix + 'proximal_call_cost_ratio')}")

    batches = tuple(b for b in SWEEP_BATCHES if not quick or b <= 10**5)
    log(f"Sweep: Euler on Example 1, {SWEEP_STEPS} steps, Recording(per_octave="
        f"{SWEEP_RECORDING.per_octave}, trajectories={SWEEP_RECORDING.trajectories}):")
    fig["sweep"] = sweep(batches, repeats=SWEEP_REPEATS_QUICK if quick else SWEEP_REPEATS,
                         backends=backends, log=log)
    heavy = [r for r in fig["sweep"] if (r["peak_rss_mb"] or 0.0) > 4096]
    if heavy:
        notes.append("sweep: peak resident memory over 4 GB at B = "
                     + ", ".join(f"{r['batch']} ({r['backend']})" for r in heavy))
    fig["machine"] = machine()
    fig["notes"] = notes
    fig["elapsed_s"] = time.perf_counter() - began
    log(f"({fig['elapsed_s']:.0f} s in all)")
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout (the readable lines go to stderr)")
    parser.add_argument("--quick", action="store_true",
                        help="the sweep stops at 10^5 trajectories; fewer repetitions")
    args = parser.parse_args(argv)
    if not args.json:
        return measure(args.quick)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with contextlib.redirect_stdout(sys.stderr):  # nothing but the JSON object on stdout
        figures = measure(args.quick, log=log)
    print(jsonio.dumps(figures, indent=2))  # strict JSON: a non-finite figure as "inf"
    return figures


if __name__ == "__main__":
    main()
