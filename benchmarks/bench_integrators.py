"""Every registered integrator on representative problems: speed, memory and quality.

Generated from the plugin registry, so a newly installed integrator is benchmarked too. Pairs
that do not apply are skipped (setup raises NotImplementedError). Quality is tracked as
lower-is-better quantities, as asv reports increases as regressions: the rate of missing the
global infimum, and oracle calls to f - f_star <= 1e-3.
"""

from __future__ import annotations

from typing import ClassVar

from .common import REPRESENTATIVE, cell, integrator_names, run


class Cells:
    params = (integrator_names(), REPRESENTATIVE)
    param_names: ClassVar[list[str]] = ["integrator", "problem"]
    timeout = 300

    def setup(self, integrator, problem):
        self.p, self.integ, self.x0 = cell(integrator, problem)

    def time_cell(self, integrator, problem):
        run(self.p, self.integ, self.x0)

    def peakmem_cell(self, integrator, problem):
        run(self.p, self.integ, self.x0)


class Quality:
    params = (integrator_names(), REPRESENTATIVE)
    param_names: ClassVar[list[str]] = ["integrator", "problem"]
    timeout = 300

    def setup(self, integrator, problem):
        p, integ, x0 = cell(integrator, problem)
        self.traj = run(p, integ, x0).trajectories

    def track_missed_global_rate(self, integrator, problem):
        hit = self.traj["outcome"].astype(str).isin(["converged_global", "escape_global"])
        return float(1.0 - hit.mean())

    track_missed_global_rate.unit = "fraction"

    def track_median_evals_to_target(self, integrator, problem):
        value = self.traj["evals_to_0.001"].median()
        return float(value) if value == value else float("inf")

    track_median_evals_to_target.unit = "oracle calls"
