"""Tasks as plain data: a worker resolves a cell by name in its own registry, refuses other
code, and computes exactly what the client would."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, replace

import pandas as pd
import pytest

from benchsuite.campaign import Campaign, initial_points, plan
from benchsuite.harness import Budget, run_cell
from benchsuite.plugins import load_registry
from benchsuite.tasks import Task, TaskRefused, make_task, resolve, run_task


@pytest.fixture(scope="module")
def setting():
    registry = load_registry()
    campaign = Campaign(problems=("mc2x2_example1",), integrators=("euler(h=0.02)",),
                        n_points=6, seed=3, budget=Budget(t_max=2.0, wall_time=60.0))
    (cell,) = plan(registry, campaign)
    return registry, campaign, cell


def test_a_task_is_plain_data(setting):
    registry, campaign, cell = setting
    task = make_task(cell, campaign, registry)
    assert Task(**json.loads(json.dumps(asdict(task)))) == task  # JSON round trip
    assert pickle.loads(pickle.dumps(task)) == task
    assert task.params == {"h": 0.02} and task.versions["benchsuite"]
    assert "benchsuite" in task.code  # the source digest travels with it


def test_the_worker_computes_what_the_client_would(setting):
    registry, campaign, cell = setting
    task = make_task(cell, campaign, registry)
    assert resolve(task, registry).key == cell.key
    x0 = initial_points(cell.problem, campaign.n_points, campaign.seed)
    expected = run_cell(cell.problem, cell.integrator, x0, campaign.budget)
    got = run_task(task)
    pd.testing.assert_frame_equal(got.trajectories, expected.trajectories)
    pd.testing.assert_frame_equal(got.checkpoints, expected.checkpoints)


def test_a_worker_with_other_code_or_plugins_refuses_and_names_why(setting):
    registry, campaign, cell = setting
    task = make_task(cell, campaign, registry)
    older = replace(task, versions={**task.versions, "benchsuite": "0.0.1"})
    with pytest.raises(TaskRefused, match=r"version of benchsuite: client '0.0.1', worker"):
        resolve(older, registry)
    edited = replace(task, code={**task.code, "benchsuite_problems": "0" * 16})
    with pytest.raises(TaskRefused, match="source of benchsuite_problems"):
        resolve(edited, registry)
    with pytest.raises(TaskRefused, match="no problem named 'not_here'"):
        resolve(replace(task, problem="not_here"), registry)
    with pytest.raises(TaskRefused, match="no integrator named 'leapfrog'"):
        resolve(replace(task, integrator="leapfrog"), registry)
