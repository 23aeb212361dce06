"""benchsuite: do (sub)gradient trajectories stay bounded, and reach a global minimum?

The public API. Problems and integrators arrive through the ``benchsuite`` entry points
(:mod:`benchsuite.hookspecs`); the core holds no list of implementations.
"""

from benchsuite.harness import Budget, CellResult, Recording, run_cell
from benchsuite.hookspecs import hookimpl
from benchsuite.integrator import Flag, Integrator, State
from benchsuite.oracle import Oracle, OracleError
from benchsuite.plugins import Registry, load_registry
from benchsuite.problem import Problem, Theory, Verdict, gaussian, uniform_box

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "CellResult",
    "Flag",
    "Integrator",
    "Oracle",
    "OracleError",
    "Problem",
    "Recording",
    "Registry",
    "State",
    "Theory",
    "Verdict",
    "gaussian",
    "hookimpl",
    "load_registry",
    "run_cell",
    "uniform_box",
]
