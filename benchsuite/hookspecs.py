"""The plugin door: every hook a benchsuite plugin may implement.

A plugin is any module or object registered under the ``benchsuite`` entry-point group
(``[project.entry-points.benchsuite]`` in its ``pyproject.toml``) that implements one or more
of the hooks below, decorated with :data:`hookimpl`::

    from benchsuite import hookimpl

    @hookimpl
    def benchsuite_problems():
        return [my_problem()]

Built-in problems and integrators use exactly this door. All hooks take keyword arguments
only and *collect*: the host calls every implementation, flattens their lists, sorts the result
by name and refuses duplicate names. A hook implementation that raises, or returns the wrong
type, is reported with its plugin and distribution and the rest keeps working (unless strict
mode is on, see :mod:`benchsuite.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from benchsuite.integrator import Integrator
    from benchsuite.observer import RunObserver
    from benchsuite.problem import Problem

PROJECT = "benchsuite"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorator that marks a function as the implementation of a benchsuite hook.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def benchsuite_problems() -> list[Problem]:
    """Return the problems this plugin contributes (see :mod:`benchsuite.problem` for the
    oracles, the metadata and the certificate contract).

    Returns
    -------
    list of Problem
        Each with a name unique across all installed plugins. Parametrized families register
        one named instance per parameter set (``deep_linear_net[L=4]``, say).
    """


@hookspec
def benchsuite_integrators() -> list[Integrator]:
    """Return the integrators this plugin contributes, with default hyperparameters (see
    :mod:`benchsuite.integrator`: a pure step, and the fixed-step declaration ``explicit_step``
    and ``stability_limit`` that the classifier's step-limit test needs).

    Returns
    -------
    list of Integrator
        Instances; campaigns derive other hyperparameters with :meth:`Integrator.with_params`.
    """


@hookspec
def benchsuite_observers() -> list[RunObserver]:
    """Return observers that are told about a campaign while it runs.

    An observer implements any of (see :class:`benchsuite.observer.RunObserver`):

    * ``campaign_started(campaign, cells)``: once, with the :class:`~benchsuite.campaign.
      Campaign` and the list of :class:`~benchsuite.campaign.Cell` still to run;
    * ``shards_planned(count)``: once, with the number of shards to run (a cell of more
      than ``shard_size`` trajectories runs as several);
    * ``shard_finished(cell, shard, result)``: after each shard is written to disk, with its
      :class:`~benchsuite.harness.CellResult` (``trajectories``, ``checkpoints``, ``wall_time``,
      ``skipped``, ``info``; rows numbered cell-wide);
    * ``cell_finished(cell, result)``: once a cell is written whole, with its last shard's
      result (the whole cell's when it has one shard);
    * ``campaign_finished(run_dir)``: once, with the run directory.

    Use them to stream results to a tracker, send a notification or log extra diagnostics. An
    observer that raises is reported and dropped, never allowed to stop the campaign.

    Returns
    -------
    list of RunObserver
    """


@hookspec
def benchsuite_report_sections() -> list[Any]:
    """Return sections to add to every report (``benchsuite report``), after the built-in ones.

    A section is any object with

    * ``title``: a string, the section's heading;
    * ``render(tables, manifest) -> str``: an HTML fragment, from the run's tables (the dict
      :func:`benchsuite.results.load_results` returns: ``trajectories``, ``checkpoints``,
      ``landscapes``, ``skipped``, ``timings``, ``cells``) and its manifest (a dict). Escape
      what you did not write (:func:`html.escape`).

    The report stays a function of the run folder: render from the tables and the manifest,
    never by re-running anything. A section that raises is replaced by a warning naming the
    error; the rest of the report is written.

    Returns
    -------
    list
    """


@hookspec
def benchsuite_executors() -> list[Any]:
    """Return executors: ways to run a campaign's shards elsewhere (a Ray cluster, SLURM).

    An executor plugin is any object with (see :class:`benchsuite.execution.ExecutorPlugin`)

    * ``name`` (chosen with ``--executor NAME`` or the campaign key ``executor``) and
      ``description`` (one line, for ``benchsuite plugins``);
    * ``create(*, workers=None, address=None)``: an executor, whose
      ``run(fn, tasks, time_limit)`` yields ``(index, result)`` as tasks finish and keeps the
      contract of :class:`benchsuite.execution.Executor` (faults contained to their task,
      hard time limit, nothing left running when closed).

    Tasks are plain, picklable data (:class:`benchsuite.tasks.Task`) and ``fn`` is a module
    function, so they can be shipped to any process that has the same benchsuite and plugins
    installed; :func:`benchsuite.execution.run_contained` runs one there with the local
    guarantees. benchsuite's own ``local`` and ``dask`` executors come through this hook.

    Returns
    -------
    list
    """
