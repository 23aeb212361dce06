"""Sharded cells: results are a function of the campaign, the seed and the code, never of the
shard size (1e-12) or of where and in which order shards ran (byte-identical); a shard is
written atomically and resumed on its own; readers see a cell as one table."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchsuite.campaign import Campaign, run_campaign
from benchsuite.execution import ForkExecutor, SerialExecutor, TaskFailure
from benchsuite.harness import Budget, Recording
from benchsuite.results import DamagedCellWarning, RunStore, load_results, verify_run

# one problem of each kind (smooth in 4-D, 2-D with a landscape, nonsmooth, with an invariant),
# every integrator: what could couple the rows of a batch is exercised somewhere
CAMPAIGN = Campaign(problems=("mc2x2_example1", "xy_minus_one", "l1_rank1_factorization",
                              "deep_linear_net[dims=4-3-2-3-2]"),
                    integrators=("*",), n_points=11, seed=5,
                    budget=Budget(t_max=5.0, max_steps=500, wall_time=600.0), shard_size=4)
WHOLE = replace(CAMPAIGN, shard_size=1000)


def files_sha(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for kind in ("trajectories", "checkpoints", "landscapes")
            for p in sorted((run / kind).glob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from benchsuite.plugins import load_registry

    registry = load_registry(strict=True)
    root = tmp_path_factory.mktemp("shards")
    run_campaign(WHOLE, registry, root / "whole", executor=ForkExecutor(2))
    run_campaign(CAMPAIGN, registry, root / "two", executor=ForkExecutor(2))
    # one worker, in order, on two of the problems: their files must be the same bytes
    run_campaign(replace(CAMPAIGN, problems=CAMPAIGN.problems[:2]), registry, root / "one",
                 executor=SerialExecutor())
    return registry, root


def test_results_do_not_depend_on_the_shard_size(runs):
    _, root = runs
    whole, sharded = load_results(root / "whole"), load_results(root / "two")
    for kind in ("trajectories", "checkpoints"):
        a, b = whole[kind], sharded[kind]
        assert len(a) > 0 and list(a.columns) == list(b.columns) and len(a) == len(b)
        numbers = a.select_dtypes("number").columns
        np.testing.assert_allclose(b[numbers].to_numpy(float), a[numbers].to_numpy(float),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)
        texts = [c for c in a.columns if c not in numbers and c not in ("x0", "x")]
        pd.testing.assert_frame_equal(a[texts].astype(str), b[texts].astype(str))
    # a sharded cell is one table: every trajectory once, numbered cell-wide
    traj = sharded["trajectories"]
    counts = traj.groupby(["problem", "integrator"], observed=True)["traj"].agg(["nunique", "max"])
    assert (counts["nunique"] == 11).all() and (counts["max"] == 10).all()


def test_results_do_not_depend_on_workers_or_order(runs):
    _, root = runs
    one, two = files_sha(root / "one"), files_sha(root / "two")
    assert len(one) > 24 and any(".00002.parquet" in name for name in one)  # 3 shards per cell
    assert one == {name: sha for name, sha in two.items() if name in one}


def test_the_landscape_does_not_depend_on_the_shard_size_and_timings_add_up(runs):
    _, root = runs
    tables, whole = load_results(root / "two"), load_results(root / "whole")
    land = tables["landscapes"]
    assert len(land) and (land.groupby(["problem", "integrator"]).size() == 100 * 100).all()
    # drawn once the shards are written, framing all their points: the same picture
    pd.testing.assert_frame_equal(land, whole["landscapes"])
    timings = tables["timings"]
    ran = tables["trajectories"][["problem", "integrator"]].drop_duplicates()
    assert len(timings) == len(ran) and (timings["wall_time"] > 0).all()
    assert (timings["shards"] == 3).all()


def test_verify_checks_every_shard_and_a_folder_lists_no_shard_records_when_done(runs):
    _, root = runs
    assert all(c.status == "ok" for c in verify_run(root / "two"))
    assert not list((root / "two" / "shards").glob("*.json"))


class StopAfter:
    """An executor that runs ``n`` tasks, then is interrupted (a Ctrl-C mid-campaign);
    records which tasks it was given."""

    def __init__(self, n: int | None) -> None:
        self.n, self.given = n, []

    def run(self, fn, tasks, time_limit=None):
        self.given += list(tasks)
        for i, outcome in SerialExecutor().run(fn, tasks):
            if self.n is not None and i == self.n:
                raise KeyboardInterrupt
            yield i, outcome


def test_a_shard_is_resumed_on_its_own_and_a_damaged_one_recomputed(runs, tmp_path):
    registry, root = runs
    small = replace(CAMPAIGN, problems=("mc2x2_example1",), integrators=("euler", "rk45"))
    with pytest.raises(KeyboardInterrupt):
        run_campaign(small, registry, tmp_path / "r", executor=StopAfter(4))
    missing = [c for c in verify_run(tmp_path / "r") if c.status != "ok"]
    assert [c.detail for c in missing] == ["1 of its 3 shards written"]
    # damage a written shard of the unfinished cell: resume sets it aside and recomputes it
    store = RunStore(tmp_path / "r")
    victim = sorted((tmp_path / "r" / "shards").glob("*.json"))[0]
    key, shard, _ = victim.name.rsplit(".", 2)
    shard = int(shard)
    table = tmp_path / "r" / "trajectories" / f"{key}.{shard:05d}.parquet"
    table.write_bytes(table.read_bytes()[:-7])
    again = StopAfter(None)
    with pytest.warns(DamagedCellWarning, match=f"shard {shard} of mc2x2_example1"):
        run_campaign(small, registry, tmp_path / "r", executor=again)
    assert len(again.given) == 3  # the cell's 2 missing shards and the damaged one, no more
    assert list(store.path.glob("quarantine/*/why.txt"))
    assert all(c.status == "ok" for c in verify_run(tmp_path / "r"))
    full = load_results(root / "two")["trajectories"]
    got = load_results(tmp_path / "r")["trajectories"]
    want = full[full["problem"] == "mc2x2_example1"]
    want = want[want["integrator"].isin(got["integrator"].unique())]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


class FailShard:
    """An executor whose shard 1 of every cell fails (its worker died)."""

    def run(self, fn, tasks, time_limit=None):
        for i, task in enumerate(tasks):
            yield i, (TaskFailure("worker killed by signal SIGKILL") if task.shard == 1
                      else fn(task))


def test_a_failed_shard_fails_its_own_rows_only(runs, tmp_path):
    registry, _ = runs
    small = replace(CAMPAIGN, problems=("mc2x2_example1",), integrators=("euler",))
    run_campaign(small, registry, tmp_path / "r", executor=FailShard())
    traj = load_results(tmp_path / "r")["trajectories"]
    failed = traj[traj["outcome"].astype(str) == "failed"]
    assert failed["traj"].tolist() == [4, 5, 6, 7]
    assert (failed["message"] == "worker killed by signal SIGKILL").all()
    assert len(traj) == 11 and traj["traj"].tolist() == list(range(11))


def test_a_cell_that_does_not_apply_is_written_whole(runs, tmp_path):
    registry, _ = runs
    small = replace(CAMPAIGN, problems=("l1_rank1_factorization",), integrators=("rk45",))
    executor = StopAfter(None)
    run_campaign(small, registry, tmp_path / "r", executor=executor)
    assert executor.given == []  # known without shipping a shard
    tables = load_results(tmp_path / "r")
    assert len(tables["skipped"]) == 1 and tables["trajectories"].empty


def test_checkpoints_of_a_subsample_leave_every_verdict_unchanged(runs, tmp_path):
    registry, root = runs
    sub = replace(CAMPAIGN, problems=CAMPAIGN.problems[:2], recording=Recording(trajectories=5))
    run_campaign(sub, registry, tmp_path / "r", executor=ForkExecutor(2))
    full, got = load_results(root / "two"), load_results(tmp_path / "r")
    ran = full["trajectories"]["problem"].isin(sub.problems)
    pd.testing.assert_frame_equal(got["trajectories"],
                                  full["trajectories"][ran].reset_index(drop=True))
    cp = full["checkpoints"][full["checkpoints"]["problem"].isin(sub.problems)]
    pd.testing.assert_frame_equal(got["checkpoints"],
                                  cp[cp["traj"] < 5].reset_index(drop=True))


class InterruptLandscapes:
    """Runs shards, and is interrupted at the first landscape task (a Ctrl-C between a 2-D
    cell's last shard and its picture)."""

    def run(self, fn, tasks, time_limit=None):
        for i, task in enumerate(tasks):
            if task.landscape is not None:
                raise KeyboardInterrupt
            yield i, fn(task)


def test_a_landscape_interrupted_is_drawn_by_the_resume_alone(runs, tmp_path):
    registry, root = runs
    small = replace(CAMPAIGN, problems=("xy_minus_one",), integrators=("euler",))
    with pytest.raises(KeyboardInterrupt):
        run_campaign(small, registry, tmp_path / "r", executor=InterruptLandscapes())
    (check,) = verify_run(tmp_path / "r")
    assert (check.status, check.detail) == ("missing", "3 of its 3 shards written")
    again = StopAfter(None)
    run_campaign(small, registry, tmp_path / "r", executor=again)
    assert [t.landscape is not None for t in again.given] == [True]  # no shard run again
    land = load_results(tmp_path / "r")["landscapes"]
    whole = load_results(root / "whole")["landscapes"]
    pd.testing.assert_frame_equal(land, whole[whole["integrator"] == land["integrator"].iloc[0]]
                                  .reset_index(drop=True))
