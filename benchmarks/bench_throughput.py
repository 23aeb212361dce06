"""The throughput ratios of benchmarks/throughput.py, tracked across versions.

Tracked as slowdowns (lower is better, like everything asv compares): the harness-batched Euler
against a hand-fused numpy loop (target <= 2, i.e. ratio >= 0.5), and looped solve_ivp
against batched RK45 (target <= 0.01, i.e. ratio >= 100). Both sides are timed in one run.
"""

from __future__ import annotations

from .common import SMOKE
from .throughput import euler_ratio, rk_ratio


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
