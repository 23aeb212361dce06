"""Generic labels against exact truth: how far the classifier can be trusted without help.

Every trajectory table holds ``generic_outcome`` (the label of the generic rules alone) and
``certificate`` (what the problem's exact certificate proves at the last point, "" where it is
silent). Where a certificate speaks, it is the truth for the flow, so comparing the two
measures the generic classifier: a *confident disagreement* is a landscape label
(converged/escape, global/spurious) that contradicts the certificate, the error that must never
happen; an undetermined generic label is an honest abstention.
"""

from __future__ import annotations

import pandas as pd

from benchsuite.vocabulary import CONFIDENT, Outcome

COLUMNS = ["certified", "agree", "undetermined", "other", "disagree"]


def agreement(trajectories: pd.DataFrame, by: tuple[str, ...] = ("problem", "integrator")
              ) -> pd.DataFrame:
    """Per group, how the generic labels compare with the certificates where they speak.

    Parameters
    ----------
    trajectories : DataFrame
        A run's trajectory table (with ``generic_outcome`` and ``certificate``).
    by : tuple of str
        Grouping columns.

    Returns
    -------
    DataFrame
        ``certified`` (rows where a certificate spoke), ``agree`` (same label),
        ``undetermined`` (the generic rules abstained), ``other`` (a label about the run, not
        the landscape: step_limited, diverged, failed) and ``disagree`` (a confident generic
        label that contradicts the certificate). Empty when no certificate spoke.
    """
    needed = {"generic_outcome", "certificate", *by}
    if trajectories.empty or not needed <= set(trajectories.columns):
        return pd.DataFrame(columns=COLUMNS)
    spoke = trajectories[trajectories["certificate"].astype(str) != ""]
    if spoke.empty:
        return pd.DataFrame(columns=COLUMNS)
    generic = spoke["generic_outcome"].astype(str)
    confident = generic.isin([str(o) for o in CONFIDENT])
    flags = pd.DataFrame({
        "certified": 1,
        "agree": (generic == spoke["certificate"].astype(str)).astype(int),
        "undetermined": (generic == Outcome.UNDETERMINED).astype(int),
        "other": (~confident & (generic != Outcome.UNDETERMINED)).astype(int),
        "disagree": _disagrees(spoke).astype(int),
    })
    keys = [spoke[k].astype(str) for k in by]
    return flags.groupby(keys).sum()[COLUMNS]


def confident_disagreements(trajectories: pd.DataFrame) -> pd.DataFrame:
    """The rows whose confident generic label contradicts their certificate."""
    if trajectories.empty or not {"generic_outcome", "certificate"} <= set(trajectories):
        return trajectories.iloc[0:0]
    return trajectories[_disagrees(trajectories)]


def _disagrees(trajectories: pd.DataFrame) -> pd.Series:
    """A certificate spoke, and the generic label is a landscape label other than its."""
    generic = trajectories["generic_outcome"].astype(str)
    truth = trajectories["certificate"].astype(str)
    return (truth != "") & generic.isin([str(o) for o in CONFIDENT]) & (generic != truth)
