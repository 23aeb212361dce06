"""Shared pieces of the asv suites: the registry, representative problems, small budgets."""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from benchsuite import Budget, load_registry, run_cell

#: ``BENCHSUITE_BENCH_SCALE=smoke`` shrinks every benchmark for CI's quick pass, which checks
#: that each benchmark runs, not what it measures.
SMOKE = os.environ.get("BENCHSUITE_BENCH_SCALE", "") == "smoke"
#: One problem of each kind: smooth and escaping, sigmoid, nonsmooth, deep and linear (in the
#: smoke pass, a smooth and a nonsmooth one: every benchmark still runs, and every way a pair
#: is skipped, on a third of the pairs).
REPRESENTATIVE = (["mc2x2_example1", "l1_rank1_factorization"] if SMOKE else
                  ["mc2x2_example1", "sigmoid2pt_fig3", "relu_flat_fig2",
                   "deep_linear_net[dims=4-3-2-3-2]", "l1_rank1_factorization"])
BATCH = 8 if SMOKE else 64
BUDGET = Budget(t_max=2.0, max_steps=200, wall_time=30.0) if SMOKE else Budget(
    t_max=10.0, max_steps=2000, wall_time=60.0)


@cache
def registry():
    return load_registry()


def integrator_names() -> list[str]:
    return list(registry().integrators)


def cell(integrator: str, problem: str):
    """The problem, integrator and initial points of a benchmark cell, or NotImplementedError
    (asv's way to skip) when the integrator does not apply."""
    reg = registry()
    if problem not in reg.problems:
        raise NotImplementedError(f"problem {problem} is not installed")
    p, integ = reg.problems[problem], reg.integrators[integrator]
    if integ.skip(p) is not None:
        raise NotImplementedError(integ.skip(p))
    return p, integ, p.sample(np.random.default_rng(0), BATCH)


def run(p, integ, x0):
    return run_cell(p, integ, x0, BUDGET)
