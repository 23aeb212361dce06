"""The rest of the pipeline: a small campaign end to end, the classifier, and the report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchsuite.campaign import Campaign, run_campaign
from benchsuite.classify import classify
from benchsuite.execution import SerialExecutor
from benchsuite.report import write_report
from benchsuite.results import load_results

from .common import BATCH, BUDGET, registry, run

SMALL = Campaign(problems=("mc2x2_example1", "sigmoid2pt_fig3", "remark3_rational_1d"),
                 integrators=("euler", "rk45", "subgradient"), n_points=BATCH // 2,
                 budget=BUDGET)


class Campaigns:
    timeout = 300

    def time_small_campaign(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_campaign(SMALL, registry(), Path(tmp) / "run", executor=SerialExecutor())


class Classifier:
    def setup(self):
        reg = registry()
        self.p, self.integ = reg.problems["mc2x2_example1"], reg.integrators["euler"]
        x0 = self.p.sample(np.random.default_rng(0), 50 * BATCH)
        res = run(self.p, self.integ, x0)
        self.traj = res.trajectories.drop(columns=["outcome"])
        self.checkpoints = res.checkpoints

    def time_classify(self):
        classify(self.p, self.integ, self.traj, self.checkpoints)


class Report:
    timeout = 300

    def setup_cache(self):
        tmp = Path(tempfile.mkdtemp(prefix="benchsuite-asv-"))
        run_campaign(SMALL, registry(), tmp / "run", executor=SerialExecutor())
        load_results(tmp / "run")
        return str(tmp / "run")

    def time_report(self, run_dir):
        with tempfile.TemporaryDirectory() as out:
            write_report(run_dir, out, registry=registry())
