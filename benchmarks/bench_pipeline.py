"""The rest of the pipeline: a small campaign end to end, the classifier, and the report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchsuite.agreement import agreement
from benchsuite.campaign import DEFAULT_CAMPAIGN_BUDGET, Campaign, run_campaign
from benchsuite.classify import classify
from benchsuite.execution import SerialExecutor
from benchsuite.report import write_report
from benchsuite.results import load_results

from .common import BATCH, BUDGET, SMOKE, registry, run

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
            write_report(run_dir, out, sections=[])


#: The problems whose certificates give the truth, under three kinds of integrator, at the
#: default campaign's budget (the smoke scale only checks that the benchmark runs).
VALIDATION = Campaign(
    problems=("mc2x2_example1", "remark3_rational_1d", "sigmoid2pt_fig3", "sigmoid2pt_example2",
              "relu_flat_fig2"),
    integrators=("euler", "rk45", "proximal"), n_points=4 if SMOKE else 32, certificates=False,
    budget=BUDGET if SMOKE else DEFAULT_CAMPAIGN_BUDGET)


class Verdicts:
    """The quality of the labels: how often the generic classifier abstains, and how often it
    contradicts an exact certificate (which must stay 0)."""

    timeout = 600

    def setup_cache(self):
        tmp = Path(tempfile.mkdtemp(prefix="benchsuite-asv-"))
        run_campaign(VALIDATION, registry(), tmp / "run", executor=SerialExecutor())
        return load_results(tmp / "run")["trajectories"]

    def track_undetermined_share(self, traj):
        return float((traj["generic_outcome"].astype(str) == "undetermined").mean())

    track_undetermined_share.unit = "fraction"

    def track_confident_disagreements(self, traj):
        table = agreement(traj)
        return int(table["disagree"].sum()) if len(table) else 0

    track_confident_disagreements.unit = "trajectories"
