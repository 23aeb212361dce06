"""How a trajectory ends: the one vocabulary of stop reasons and outcomes.

Integrators, the harness, the classifier, certificates, the report and the result tables all
speak these two enums (string-valued, so a table column holds plain strings and compares equal
to them: ``Outcome.ESCAPE_SPURIOUS == "escape_spurious"``).

:class:`Stop` says *why the run of a trajectory stopped*: a deterministic budget, the wall-time
safety net, or a fault. :class:`Outcome` says *what the trajectory did*: the label the
classifier (:mod:`benchsuite.classify`) gives it from the evidence.
"""

from __future__ import annotations

import enum


class Stop(enum.StrEnum):
    """Why a trajectory stopped running (the ``stop`` column)."""

    T_MAX = "t_max"
    MAX_STEPS = "max_steps"
    MAX_EVALS = "max_evals"
    WALL_TIME = "wall_time"
    NONFINITE = "nonfinite"
    PROX_FAILED = "prox_failed"
    STEP_COLLAPSE = "step_collapse"
    ERROR = "error"


#: Budgets that are a function of the campaign alone: a run stopped by one of them is
#: reproducible, and can be extended (``Budget.extend``).
DETERMINISTIC_BUDGETS = frozenset({Stop.T_MAX, Stop.MAX_STEPS, Stop.MAX_EVALS})
#: Stops that mean the integrator or an oracle could not go on.
FAULTS = frozenset({Stop.ERROR, Stop.PROX_FAILED, Stop.STEP_COLLAPSE})

STOP_MESSAGES = {
    Stop.T_MAX: "reached the flow-time budget",
    Stop.MAX_STEPS: "reached the step budget",
    Stop.MAX_EVALS: "reached the oracle-call budget",
    Stop.WALL_TIME: "stopped by the wall-time safety net of the cell (a property of the machine, "
    "not of the trajectory); raise --wall-time or lower the deterministic budgets",
    Stop.NONFINITE: "the state or f became non-finite (overflow or blow-up); try a smaller step",
    Stop.PROX_FAILED: "no proximal step satisfied the descent inequality even at the smallest "
    "tau; the prox subproblem may be unbounded below",
    Stop.STEP_COLLAPSE: "the adaptive step size fell below its minimum: the vector field is "
    "discontinuous or the solution blows up",
    Stop.ERROR: "the integrator or an oracle raised an exception",
}


class Outcome(enum.StrEnum):
    """What a trajectory did (the ``outcome`` column); see :mod:`benchsuite.classify`."""

    CONVERGED_GLOBAL = "converged_global"
    CONVERGED_SPURIOUS = "converged_spurious"
    ESCAPE_GLOBAL = "escape_global"
    ESCAPE_SPURIOUS = "escape_spurious"
    STEP_LIMITED = "step_limited"
    DIVERGED = "diverged"
    FAILED = "failed"
    UNDETERMINED = "undetermined"


#: Every outcome label, in display order (the categories of the ``outcome`` column).
OUTCOMES = tuple(str(o) for o in Outcome)
#: Labels that claim something about the landscape; the others report the run itself.
CONFIDENT = frozenset({Outcome.CONVERGED_GLOBAL, Outcome.CONVERGED_SPURIOUS,
                       Outcome.ESCAPE_GLOBAL, Outcome.ESCAPE_SPURIOUS})
