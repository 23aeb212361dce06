"""The throughput ratios of benchmarks/throughput.py, tracked across versions.

Tracked as lower-is-better quantities, like everything asv compares: the harness-batched Euler
against a hand-fused numpy loop, as a slowdown (numpy harness: target <= 2, i.e. ratio >= 0.5;
JAX harness, warm: target <= 0.5, i.e. ratio >= 2), looped solve_ivp against batched RK45
(target <= 0.01, i.e. ratio >= 100), and the seconds per oracle call of the proximal point
method over explicit Euler's (target <= 3). Both sides of each ratio are timed in one run. The
JAX benchmark is skipped where jax is not installed.
"""

from __future__ import annotations

from .common import SMOKE
from .throughput import euler_ratio, euler_ratios, jax_available, proximal_call_cost, rk_ratio


class Throughput:
    timeout = 600

    def setup_cache(self):
        if SMOKE:
            return {**euler_ratio(batch=1_000, steps=50), **rk_ratio(batch=50, t_end=2.0,
                                                                 baseline=5)}
        return {**euler_ratio(batch=20_000, steps=1_000), **rk_ratio(batch=1_000, t_end=50.0,
                                                                     baseline=100)}

    def track_euler_slowdown_vs_fused_loop(self, ratios):
        return 1.0 / ratios["euler_ratio"]

    track_euler_slowdown_vs_fused_loop.unit = "x"

    def track_rk_time_share_vs_looped_solve_ivp(self, ratios):
        return 1.0 / ratios["rk_ratio"]

    track_rk_time_share_vs_looped_solve_ivp.unit = "x"


class JaxThroughput:
    timeout = 600

    def setup_cache(self):
        if not jax_available():
            return None
        if SMOKE:
            return euler_ratios(batch=1_000, steps=50, backends=("jax",), repeats=1)
        return euler_ratios(batch=20_000, steps=1_000, backends=("jax",))

    def setup(self, ratios):
        if ratios is None:
            raise NotImplementedError("jax is not installed")

    def track_jax_euler_slowdown_vs_fused_loop(self, ratios):
        return 1.0 / ratios["jax_euler_ratio"]

    track_jax_euler_slowdown_vs_fused_loop.unit = "x"


class ProximalCost:
    timeout = 600

    def setup_cache(self):
        if SMOKE:
            return proximal_call_cost(batch=50, t_max=2.0, repeats=1)
        return proximal_call_cost()

    def track_proximal_call_cost_vs_euler(self, ratios):
        return ratios["proximal_call_cost_ratio"]

    track_proximal_call_cost_vs_euler.unit = "x"
