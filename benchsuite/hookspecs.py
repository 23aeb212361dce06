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

from typing import TYPE_CHECKING

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
    """Return the problems this plugin contributes.

    Returns
    -------
    list of Problem
        Each with a name unique across all installed plugins. Parametrized families register
        one named instance per parameter set (``deep_linear_net[L=4]``, say).
    """


@hookspec
def benchsuite_integrators() -> list[Integrator]:
    """Return the integrators this plugin contributes, with default hyperparameters.

    Returns
    -------
    list of Integrator
        Instances; campaigns derive other hyperparameters with :meth:`Integrator.with_params`.
    """


@hookspec
def benchsuite_observers() -> list[RunObserver]:
    """Return observers that are told about a campaign while it runs.

    Observers receive ``campaign_started``, ``cell_finished`` and ``campaign_finished`` calls
    (see :class:`benchsuite.observer.RunObserver`): use them to stream results to a tracker,
    send a notification or log extra diagnostics. An observer that raises is reported and
    dropped, never allowed to stop the campaign.

    Returns
    -------
    list of RunObserver
    """
