"""Short display names for integrators: a method's hyperparameters only where they vary.

Built from the run manifest's cells (method and parameters), never by parsing labels. Shared
by the command line and the report (this module imports pandas only, so the command line can
use it without loading matplotlib).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


def display_names(cells: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Compact names of the integrators of a run, from its manifest's ``cells``: for each
    method, only the hyperparameters whose values differ among its integrators in the run or
    from their declared defaults (``rk45(rtol=1e-06,...)`` alone -> ``rk45``;
    ``euler(h=0.1)`` beside ``euler(h=0.01)`` and ``scipy_ivp(method=RK23)`` stay as they
    are)."""
    by_label = {str(c["integrator"]): (str(c.get("method") or c["integrator"]),
                                       dict(c.get("params") or {}),
                                       dict(c.get("defaults") or {})) for c in cells}
    names = {}
    for label, (method, params, defaults) in by_label.items():
        siblings = [p for m, p, _ in by_label.values() if m == method]
        shown = [k for k in params
                 if len({repr(s.get(k)) for s in siblings}) > 1
                 or (k in defaults and repr(defaults[k]) != repr(params[k]))]
        inside = ",".join(f"{k}={params[k]}" for k in shown)
        names[label] = f"{method}({inside})" if inside else method
    return names


def renamed(frame: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The same table with display names in its ``integrator`` column (labels not in
    ``names`` are kept)."""
    if frame.empty or "integrator" not in frame:
        return frame
    column = frame["integrator"].astype(str)
    return frame.assign(integrator=column.map(dict(names)).fillna(column))
