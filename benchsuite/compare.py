"""Did a change make an integrator worse? Two runs compared cell by cell, with corrected tests.

Cells (problem, integrator full label) present and intact in both runs are *matched*. For each
matched cell, every outcome rate and the global rate (converged_global + escape_global, the
leaderboard's headline) are tested with Fisher's exact test (two-sided); the difference of rates
gets Newcombe's hybrid score interval (method 10 of Newcombe 1998, built from the two Wilson
intervals; no continuity correction). The cost to f - f_star <= TARGET (oracle calls and flow
time, over the trajectories that reached it) is compared by the ratio of medians new/base, with
a percentile bootstrap interval (999 resamples, seeded per cell: deterministic), and tested
with Mann-Whitney U. Skipped cells are not compared; cells comparable on one side only are
listed with why. When both runs started from the same points (same seed: ``traj`` and ``x0``
equal row by row), each cell also counts the trajectories whose label changed (informative,
not tested).

Multiple testing: Tarone's procedure (Tarone 1990, "A modified Bonferroni method for discrete
data"). Every finite p-value of the comparison (all cells, all metrics, the informative ones
included, so that "significant" means the same on every row) forms one family. Discrete tests
at small n cannot reach small p-values: each test gets ``p_min``, the smallest p-value the same
test can give for data with the same margins (Fisher: the row and column totals, the smallest
two-sided p of the two extreme tables; Mann-Whitney: the pooled costs, whose ranks and ties
are then fixed, the p of the two sorted assignments). K is the smallest integer with
M(K) = #{tests with p_min <= alpha/K} <= K; those M(K) tests are *testable*, the others
(``testable`` False) can never be significant and get ``p_adjusted`` 1. Holm (the default) is
applied to the testable tests with m = K: the j-th smallest p is multiplied by K - j + 1
(family-wise error <= alpha, conservative, valid under any dependence). ``--correction bh``
applies Benjamini-Hochberg to the testable tests only, also with m = K (false discovery rate).
K, so the adjusted p-values, depend on alpha: compare them with that alpha only. When no test
is testable and the sample sizes are the reason (even a change of every trajectory of one cell,
which moves two rates at the smallest p these sizes allow, would stay above alpha/2), a note
says how many trajectories per cell are needed.

Verdicts of a significant test (adjusted p <= alpha):

* ``regression``: the global rate fell; or the rate of converged_spurious, escape_spurious,
  step_limited, diverged, failed or undetermined rose; or the median cost rose.
* ``improvement``: the opposite direction.
* ``other change``: converged_global or escape_global changed (both reach the global infimum:
  the global rate, their sum, decides whether it is a regression; a fall of converged_global
  to undetermined trajectories shows there as a fall of the global rate), or a cost
  distribution changed with an equal median. Shown, never counted as a regression.

Costs are over the trajectories that reached the target, so a cell whose rate of reaching it
changes compares different subsets: read a cost change together with the rates. When the
budgets differ between the runs (a setting), cost changes are conditional on reaching the
target within different budgets and not comparable: the cost tests are then left out of the
family (raw p-values shown, ``p_adjusted`` missing, never a verdict) and a note says so.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import textwrap
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchsuite.columns import points
from benchsuite.fingerprint import IMPLIED
from benchsuite.results import RunStore, load_results
from benchsuite.stats import newcombe
from benchsuite.vocabulary import OUTCOMES

#: Same as ``benchsuite.report.TARGET``, not imported: the report pulls in matplotlib/seaborn.
TARGET = 1e-3
GLOBAL = ("converged_global", "escape_global")
#: Rate metrics in display order: the headline first, then every outcome label.
METRICS = ("global", *OUTCOMES)
WORSE_IF_DOWN = frozenset({"global"})
WORSE_IF_UP = frozenset(OUTCOMES) - set(GLOBAL)
COSTS = (f"evals_to_{TARGET:g}", f"t_to_{TARGET:g}")
#: Campaign settings that change results (from the manifests' fingerprints).
SETTINGS = ("n_points", "seed", "budget", "recording", "certificates", "backend", "device")
N_RESAMPLES = 999
#: The verdicts, in display order, with their section titles.
VERDICTS = {"regression": "REGRESSIONS", "improvement": "IMPROVEMENTS",
            "other change": "OTHER CHANGES (not gated: the global rate or the median decides)"}
CELL = ["problem", "integrator"]


@dataclass(frozen=True)
class Comparison:
    """The comparison of a NEW run against a BASE run (see the module docstring).

    Attributes
    ----------
    rates : DataFrame
        One row per matched cell and rate metric: counts, rates, ``diff`` (new - base) with its
        95% Newcombe interval ``ci_low``/``ci_high``, ``p_value``, ``p_min`` (the smallest
        p-value attainable with the same margins), ``testable`` (Tarone), ``p_adjusted``,
        ``change``.
    costs : DataFrame
        One row per matched cell and cost column: trajectories that reached the target, medians,
        ``ratio`` new/base with a 95% bootstrap interval, Mann-Whitney p-values, ``p_min``,
        ``testable``, ``change`` (``p_adjusted`` missing when the budgets differ).
    only_base, only_new : DataFrame
        Cells comparable on one side only (``problem``, ``integrator``, ``n``, ``why``).
    settings : list of str
        Campaign settings that differ between the runs (they may explain rate changes).
    alpha, correction
        Significance level and multiple-testing correction (``"holm"`` or ``"bh"``).
    cells : DataFrame
        Per matched cell: sizes, and when initial points match row by row the number of
        trajectories whose label changed (``changed``, else missing).
    versions : dict
        A one-line description of the code of each side (``base``, ``new``).
    names : tuple of str
        Display names of the two runs.
    tarone_k : int
        Tarone's K (0 when the family is empty).
    costs_tested : bool
        False when the budgets differ: cost tests are then out of the family.
    min_trajectories : int or None
        Set when no regression can be detected at these sample sizes: the trajectories per
        cell needed at least (see the module docstring).
    """

    rates: pd.DataFrame
    costs: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    settings: list[str]
    alpha: float
    correction: str
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    versions: dict[str, str] = field(default_factory=dict)
    names: tuple[str, str] = ("BASE", "NEW")
    tarone_k: int = 0
    costs_tested: bool = True
    min_trajectories: int | None = None

    def tests(self) -> pd.DataFrame:
        """Every test of the comparison, rates then costs, with a ``kind`` ("rate" or "cost")."""
        parts = [t.assign(kind=k) for k, t in (("rate", self.rates), ("cost", self.costs))
                 if len(t)]
        if not parts:
            return pd.DataFrame(columns=["kind", *CELL, "metric", "p_value", "p_min", "testable",
                                         "p_adjusted", "change"])
        every = pd.concat(parts, ignore_index=True)
        return every[["kind", *every.columns.drop("kind")]]

    def _verdict(self, change: str) -> pd.DataFrame:
        every = self.tests()
        return every[every["change"] == change].reset_index(drop=True)

    @property
    def regressions(self) -> pd.DataFrame:
        """Significant changes for the worse after correction (rates and costs, ``kind``)."""
        return self._verdict("regression")

    @property
    def improvements(self) -> pd.DataFrame:
        """Significant changes for the better after correction."""
        return self._verdict("improvement")

    @property
    def other_changes(self) -> pd.DataFrame:
        """Significant changes that are neither (see the module docstring): never gated."""
        return self._verdict("other change")

    def notes(self) -> list[str]:
        """What limits the comparison, one sentence each (shown before the verdicts)."""
        notes = []
        if not self.costs_tested:
            notes.append("budgets differ: costs are over the trajectories that reached the "
                         "target, so cost changes are conditional on reaching it within "
                         "different budgets and not comparable; cost tests are shown but not "
                         "tested (never a regression or an improvement)")
        if self.min_trajectories is not None:
            n = int(pd.concat([self.cells["base_n"], self.cells["new_n"]]).max())
            notes.append(f"no regression can be detected at this sample size: at least "
                         f"{self.min_trajectories} trajectories per cell are needed (these "
                         f"runs have at most {n}; no test can reach alpha {self.alpha:g})")
        return notes

    def summary(self) -> dict[str, int]:
        """Counts: matched cells, tests in the family and testable ones (Tarone's K), verdicts,
        one-sided and paired cells."""
        every = self.tests()
        verdicts = every["change"].value_counts()
        paired = self.cells["changed"].dropna() if "changed" in self.cells else pd.Series()
        return {"matched_cells": len(self.cells), "tests": int(every["p_adjusted"].notna().sum()),
                "testable": int(every["testable"].fillna(False).astype(bool).sum()),
                "tarone_k": self.tarone_k,
                **{f"{v.replace(' ', '_')}s": int(verdicts.get(v, 0)) for v in VERDICTS},
                "only_base": len(self.only_base), "only_new": len(self.only_new),
                "paired_cells": len(paired), "labels_changed": int(paired.sum())}

    def _header(self) -> list[str]:
        base, new = self.names
        method = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[self.correction]
        lines = [f"{base} -> {new}: {method} correction over the tests that can reach alpha "
                 f"(Tarone), alpha {self.alpha:g}"]
        same = len(set(self.versions.values())) == 1
        lines += [f"code of both: {self.versions['base']}"] if same else [
            f"code of {name}: {v}" for name, v in zip(self.names, self.versions.values(),
                                                      strict=False)]
        s = self.summary()
        lines.append(f"matched cells {s['matched_cells']}, tests {s['tests']} (can reach alpha "
                     f"{s['testable']}, Tarone K {s['tarone_k']}): regressions "
                     f"{s['regressions']}, improvements {s['improvements']}, other changes "
                     f"{s['other_changes']}; cells only in {base} {s['only_base']}, only in "
                     f"{new} {s['only_new']}")
        if s["paired_cells"]:
            cells = "cell" if s["paired_cells"] == 1 else "cells"
            trajectories = "trajectory" if s["labels_changed"] == 1 else "trajectories"
            lines.append(f"same initial points in {s['paired_cells']} {cells}: "
                         f"{s['labels_changed']} {trajectories} changed label")
        return lines

    def to_text(self, verbose: bool = False) -> str:
        """A plain-text report (about 100 columns): settings that differ, notes, verdicts
        first, counts, one-sided cells; ``verbose`` adds every test, cell by cell."""
        lines = []
        if self.settings:
            lines += ["SETTINGS DIFFER (they may explain rate changes):",
                      *(f"  {s}" for s in self.settings)]
        lines += [f"note: {n}" for n in self.notes()]
        lines = [textwrap.fill(line, 100, subsequent_indent="    ")
                 for line in lines + self._header()]
        for change, title in VERDICTS.items():
            rows = self._verdict(change)
            if len(rows):
                lines += ["", f"{title}:", *text_rows(rows)]
        for side, table in zip(self.names, (self.only_base, self.only_new), strict=True):
            lines += ["", f"ONLY IN {side}:"] if len(table) else []
            lines += [textwrap.fill(f"  {r.problem} x {r.integrator}: {r.why}", 100,
                                    subsequent_indent="    ") for r in table.itertuples()]
        if verbose:
            lines += ["", "ALL TESTS (untestable: cannot reach alpha with its margins):",
                      *text_rows(self.tests())]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A self-contained HTML fragment (``<section>``; tables of class ``board``)."""
        esc = html.escape
        out = ['<section class="comparison">',
               f"<h2>Comparison: {esc(self.names[0])} &rarr; {esc(self.names[1])}</h2>"]
        if self.settings:
            out.append('<p class="warn">Campaign settings differ (they may explain rate '
                       "changes):</p><ul>" + "".join(f"<li>{esc(s)}</li>" for s in self.settings)
                       + "</ul>")
        out += [f'<p class="warn">Note: {esc(n)}</p>' for n in self.notes()]
        out += [f"<p>{esc(line)}</p>" for line in self._header()]
        titles = {"regression": "Regressions", "improvement": "Improvements",
                  "other change": "Other changes (not gated: the global rate or the median "
                                  "decides)"}
        for title, frame in [*((titles[v], self._verdict(v)) for v in VERDICTS),
                             (f"Only in {self.names[0]}", self.only_base),
                             (f"Only in {self.names[1]}", self.only_new)]:
            body = _html_table(frame) if len(frame) else "<p>none</p>"
            out.append(f"<h3>{esc(title)}</h3>{body}")
        out.append("<details><summary>Every test (testable: can reach alpha with its margins, "
                   "Tarone)</summary>" + _html_table(self.rates) + _html_table(self.costs)
                   + "</details></section>")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON data (non-finite numbers become null)."""
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            # pandas writes NaN, inf and NA as null: strict JSON
            return json.loads(frame.to_json(orient="records", double_precision=15))

        tables = {"regressions": self.regressions, "improvements": self.improvements,
                  "other_changes": self.other_changes, "rates": self.rates,
                  "costs": self.costs, "cells": self.cells, "only_base": self.only_base,
                  "only_new": self.only_new}
        return {"base": self.names[0], "new": self.names[1], "alpha": self.alpha,
                "correction": self.correction, "target": TARGET, "settings": self.settings,
                "notes": self.notes(), "costs_tested": self.costs_tested,
                "min_trajectories": self.min_trajectories, "versions": self.versions,
                "summary": self.summary(), **{k: records(v) for k, v in tables.items()}}


@functools.lru_cache(maxsize=65536)
def _fisher(k1: int, n1: int, k2: int, n2: int) -> float:
    # cached: most tests of a campaign are the same few tables (0/n against 0/n)
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


@functools.lru_cache(maxsize=65536)
def _fisher_min(n1: int, n2: int, k: int) -> float:
    """The smallest two-sided Fisher p-value over the 2x2 tables with rows of ``n1`` and
    ``n2`` and ``k`` successes in all: the hypergeometric law is unimodal, so the least likely
    table, hence the smallest p, is one of the two extreme ones."""
    low, high = max(0, k - n2), min(n1, k)
    return min(_fisher(low, n1, k - low, n2), _fisher(high, n1, k - high, n2))


def _mwu_min(xb: np.ndarray, xn: np.ndarray) -> float:
    """The smallest Mann-Whitney p-value over the splits of the pooled costs into samples of
    these sizes: with the pooled values fixed, ranks and ties (so the method and the variance)
    are fixed too, and the p-value falls as U moves away from its mean, farthest for the two
    sorted splits."""
    pooled = np.sort(np.concatenate([xb, xn]))
    nb, nn = len(xb), len(xn)
    return min(_mwu(pooled[:nb], pooled[nb:]), _mwu(pooled[nn:], pooled[:nn]))


def min_trajectories(alpha: float) -> int:
    """The fewest trajectories per cell (on both sides) at which a change of every trajectory
    of one cell can be significant: its global rate and one outcome rate (at least two tests)
    reach p = 2 / C(2n, n), which must be at most alpha / 2 (Tarone's K = 2)."""
    n = 1
    while 2 / math.comb(2 * n, n) > alpha / 2:
        n += 1
    return n


def tarone(p: Any, p_min: Any, alpha: float, correction: str = "holm"
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """Tarone's procedure for discrete tests, followed by Holm or Benjamini-Hochberg.

    Parameters
    ----------
    p, p_min : array_like
        The p-values and the smallest p-value each test can attain given its margins; NaN
        entries of ``p`` are no test.
    alpha : float
        Significance level (K and the testable set depend on it).
    correction : {"holm", "bh"}
        Holm step-down (family-wise error) or Benjamini-Hochberg (false discovery rate),
        over the testable tests with m = K.

    Returns
    -------
    adjusted : ndarray
        Adjusted p-values: NaN where ``p`` is NaN, 1 where the test is not testable.
    testable : ndarray of bool
        The M(K) tests with ``p_min <= alpha / K``.
    k : int
        The smallest K >= 1 with M(K) = #{p_min <= alpha / K} <= K (0 for no test).
    """
    p, p_min = np.asarray(p, dtype=float), np.asarray(p_min, dtype=float)
    tested = np.isfinite(p)
    adjusted = np.where(tested, 1.0, np.nan)
    testable = np.zeros(len(p), dtype=bool)
    m = int(tested.sum())
    if not m:
        return adjusted, testable, 0
    floor = np.sort(np.where(np.isfinite(p_min), p_min, 0.0)[tested])  # unknown: testable
    ks = np.arange(1, m + 1)
    counts = np.searchsorted(floor, alpha / ks, side="right")
    k = int(ks[np.argmax(counts <= ks)])  # M(m) <= m: always found
    testable = tested & ~(np.where(np.isfinite(p_min), p_min, 0.0) > alpha / k)
    idx = np.flatnonzero(testable)
    order = idx[np.argsort(p[idx], kind="stable")]
    ranks = np.arange(1, len(order) + 1)
    if correction == "holm":  # step j multiplies by K - j + 1
        steps = np.maximum.accumulate(np.minimum(1.0, (k - ranks + 1) * p[order]))
    else:  # Benjamini-Hochberg with m = K
        steps = np.minimum.accumulate(np.minimum(1.0, k * p[order] / ranks)[::-1])[::-1]
    adjusted[order] = steps
    return adjusted, testable, k


def compare_tables(base: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame], *,
                   alpha: float = 0.05, correction: str = "holm",
                   base_manifest: dict[str, Any] | None = None,
                   new_manifest: dict[str, Any] | None = None, seed: int = 0,
                   names: tuple[str, str] = ("BASE", "NEW")) -> Comparison:
    """Compare two runs' tables (as :func:`benchsuite.results.load_results` returns them).

    Parameters
    ----------
    base, new : dict of DataFrame
        ``trajectories`` (required), ``skipped`` and ``cells`` (optional) of each run.
    alpha : float
        Significance level of the adjusted p-values.
    correction : {"holm", "bh"}
        Holm (family-wise error) or Benjamini-Hochberg (false discovery rate), both over the
        tests that can reach alpha (Tarone; see the module docstring).
    base_manifest, new_manifest : dict, optional
        The runs' manifests, to list differing campaign settings and versions (without both,
        the budgets count as equal).
    seed : int
        Seed of the bootstrap intervals (each cell's stream also depends on its name, so a
        cell's interval does not depend on which other cells are compared).
    names : tuple of str
        Display names of the two runs ("BASE" and "NEW" when they are equal).
    """
    if not (0 < alpha < 1 and math.isfinite(alpha)) or correction not in ("holm", "bh"):
        raise ValueError(f"alpha must be in (0, 1) and correction 'holm' or 'bh', got "
                         f"{alpha!r}, {correction!r}")
    if names[0] == names[1]:
        names = ("BASE", "NEW")
    sides = [_trajectories(t) for t in (base, new)]
    counts = [_counts(t) for t in sides]
    states = [_states(t, c) for t, c in zip((base, new), counts, strict=True)]
    matched = sorted(set(counts[0].index) & set(counts[1].index))
    only = [_one_sided(states[i], states[1 - i], names[1 - i], counts[i]) for i in (0, 1)]
    groups = [dict(tuple(t.groupby(CELL, sort=False))) if len(t) else {} for t in sides]
    rates = _rate_tests(counts[0].reindex(matched), counts[1].reindex(matched))
    costs = pd.DataFrame([row for cell in matched for row in
                          _cost_tests(cell, groups[0][cell], groups[1][cell], seed)])
    costs_tested = not _budgets_differ(base_manifest, new_manifest)
    p_costs = (costs["p_value"].to_numpy(float) if costs_tested
               else np.full(len(costs), np.nan)) if len(costs) else np.empty(0)
    family = np.concatenate([rates["p_value"].to_numpy(float) if len(rates) else [], p_costs])
    floors = np.concatenate([rates["p_min"].to_numpy(float) if len(rates) else [],
                             costs["p_min"].to_numpy(float) if len(costs) else []])
    adjusted, testable, k = tarone(family, floors, alpha, correction)
    for table, part in ((rates, slice(0, len(rates))), (costs, slice(len(rates), None))):
        if len(table):
            table["testable"] = testable[part]
            table["p_adjusted"] = adjusted[part]
            table["change"] = _changes(table, alpha)
    cells = pd.DataFrame([{"problem": c[0], "integrator": c[1], "base_n": len(groups[0][c]),
                           "new_n": len(groups[1][c]),
                           "changed": _changed(groups[0][c], groups[1][c])} for c in matched],
                         columns=[*CELL, "base_n", "new_n", "changed"])
    cells["changed"] = cells["changed"].astype("Int64")
    # the sample sizes alone forbid any verdict: even a change of every trajectory of the
    # most favourable cell (two rate tests at its smallest attainable p) stays above alpha/2
    blind = len(cells) and not testable.any() and min(
        min(_fisher(nb, nb, 0, nn), _fisher(0, nb, nn, nn))
        for nb, nn in zip(cells["base_n"], cells["new_n"], strict=True)) > alpha / 2
    return Comparison(rates, costs, only[0], only[1],
                      _settings(base_manifest, new_manifest, names), alpha, correction, cells,
                      {"base": _version(base_manifest), "new": _version(new_manifest)}, names,
                      tarone_k=k, costs_tested=costs_tested,
                      min_trajectories=min_trajectories(alpha) if blind else None)


def compare_runs(base: str | Path, new: str | Path, *, alpha: float = 0.05,
                 correction: str = "holm", seed: int = 0) -> Comparison:
    """Compare two run folders (their intact cells only).

    Parameters
    ----------
    base, new : path
        Run folders (``results/<run-id>``); their folder names label them in the reports
        ("BASE" and "NEW" when the names are equal).
    alpha, correction, seed
        As in :func:`compare_tables`.

    Raises
    ------
    benchsuite.results.CampaignMismatch
        If a folder is not a benchsuite run (a ``ValueError``).
    """
    return compare_tables(load_results(base), load_results(new), alpha=alpha,
                          correction=correction, base_manifest=RunStore(base).manifest(),
                          new_manifest=RunStore(new).manifest(), seed=seed,
                          names=(_name(base), _name(new)))


def _name(path: str | Path) -> str:
    """A run's display name: its folder's name ("." and ".." resolved, links kept)."""
    return Path(os.path.abspath(path)).name or str(path)


def _trajectories(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The trajectory table with plain-string keys and labels (categoricals, Arrow strings)."""
    traj = tables.get("trajectories")
    if traj is None or traj.empty or not {*CELL, "outcome"} <= set(traj.columns):
        return pd.DataFrame(columns=[*CELL, "outcome"])
    return traj.assign(**{c: traj[c].astype(str) for c in (*CELL, "outcome")})


def _counts(traj: pd.DataFrame) -> pd.DataFrame:
    """Per cell: ``n`` trajectories and the count of each metric."""
    if traj.empty:
        return pd.DataFrame(columns=["n", *METRICS], index=pd.MultiIndex.from_tuples(
            [], names=CELL), dtype=int)
    table = pd.crosstab([traj["problem"], traj["integrator"]], traj["outcome"])
    n = table.sum(axis=1)  # unknown labels count in n, and in no metric
    table = table.reindex(columns=list(OUTCOMES), fill_value=0)
    return table.assign(n=n, **{"global": table[list(GLOBAL)].sum(axis=1)})


def _states(tables: dict[str, pd.DataFrame], counts: pd.DataFrame) -> dict[tuple, str]:
    """Why each cell of a run is, or is not, comparable ("ok" when it has trajectories)."""
    states: dict[tuple, str] = {}
    cells = tables.get("cells")
    if cells is not None and len(cells) and {*CELL, "status"} <= set(cells.columns):
        for r in cells.astype(str).itertuples():
            states[(r.problem, r.integrator)] = {
                "ok": "no trajectories", "missing": "not finished"}.get(
                r.status, f"{r.status} ({getattr(r, 'detail', '')})")
    skipped = tables.get("skipped")
    if skipped is not None and len(skipped) and set(CELL) <= set(skipped.columns):
        for r in skipped.astype(str).itertuples():
            states[(r.problem, r.integrator)] = f"skipped ({getattr(r, 'reason', '')})"
    states.update({cell: "ok" for cell in counts.index})
    return states


def _one_sided(mine: dict[tuple, str], other: dict[tuple, str], name: str,
               counts: pd.DataFrame) -> pd.DataFrame:
    """Cells comparable on this side only (``n`` trajectories), with why the other has none."""
    rows = [{"problem": c[0], "integrator": c[1], "n": int(counts.loc[c, "n"]),
             "why": f"{name}: {other[c]}" if c in other else f"not in {name}"}
            for c, state in sorted(mine.items()) if state == "ok" and other.get(c) != "ok"]
    return pd.DataFrame(rows, columns=[*CELL, "n", "why"])


def _rate_tests(cb: pd.DataFrame, cn: pd.DataFrame) -> pd.DataFrame:
    """Fisher's exact test and Newcombe's interval for every matched cell and rate metric."""
    cells = list(cb.index)
    m = len(METRICS)
    kb, kn = cb[list(METRICS)].to_numpy(int).ravel(), cn[list(METRICS)].to_numpy(int).ravel()
    nb, nn = np.repeat(cb["n"].to_numpy(int), m), np.repeat(cn["n"].to_numpy(int), m)
    low, high = newcombe(kn, nn, kb, nb)
    return pd.DataFrame({
        "problem": np.repeat([c[0] for c in cells], m).astype(object),
        "integrator": np.repeat([c[1] for c in cells], m).astype(object),
        "metric": np.tile(METRICS, len(cells)).astype(object),
        "base_k": kb, "base_n": nb, "new_k": kn, "new_n": nn,
        "base_rate": kb / np.maximum(nb, 1), "new_rate": kn / np.maximum(nn, 1),
        "diff": kn / np.maximum(nn, 1) - kb / np.maximum(nb, 1), "ci_low": low, "ci_high": high,
        "p_value": [_fisher(*t) for t in zip(kb, nb, kn, nn, strict=True)],
        "p_min": [_fisher_min(b, n, k) for b, n, k in zip(nb, nn, kb + kn, strict=True)]})


def _cost_tests(cell: tuple, b: pd.DataFrame, n: pd.DataFrame, seed: int) -> list[dict]:
    """Ratio of median costs new/base (bootstrap interval) and Mann-Whitney U, per column."""
    rows = []
    for col in COSTS:
        if col not in b or col not in n:
            continue
        xb, xn = (pd.to_numeric(t[col], errors="coerce").to_numpy(float, na_value=np.nan)
                  for t in (b, n))
        xb, xn = xb[np.isfinite(xb)], xn[np.isfinite(xn)]
        row = {"problem": cell[0], "integrator": cell[1], "metric": col, "base_reached": len(xb),
               "new_reached": len(xn), "base_median": np.nan, "new_median": np.nan, "ratio": np.nan,
               "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "p_min": np.nan}
        if len(xb) and len(xn):
            mb, mn = float(np.median(xb)), float(np.median(xn))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = 1.0 if mb == mn else float(np.float64(mn) / mb)  # 0/0: same cost
            rng = np.random.default_rng([seed, zlib.crc32(f"{cell}{col}".encode())])
            row.update(base_median=mb, new_median=mn, ratio=ratio, p_value=_mwu(xb, xn),
                       p_min=_mwu_min(xb, xn),
                       **dict(zip(("ci_low", "ci_high"), _bootstrap(xb, xn, rng), strict=True)))
        rows.append(row)
    return rows


def _median_ratio(xb: np.ndarray, xn: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(xn, axis=axis) / np.median(xb, axis=axis)


def _bootstrap(xb: np.ndarray, xn: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile bootstrap interval of the median ratio; NaN when it cannot be had."""
    if len(xb) < 2 or len(xn) < 2:
        return (math.nan, math.nan)
    with warnings.catch_warnings():  # degenerate resamples (a zero median) give NaN, not noise
        warnings.simplefilter("ignore")
        ci = stats.bootstrap((xb, xn), _median_ratio, n_resamples=N_RESAMPLES, vectorized=True,
                             method="percentile", rng=rng).confidence_interval
    low, high = float(ci.low), float(ci.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)


def _mwu(xb: np.ndarray, xn: np.ndarray) -> float:
    if np.all(xb == xb[0]) and np.all(xn == xb[0]):
        return 1.0  # every value equal: no rank information (and a zero variance in scipy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.mannwhitneyu(xn, xb, alternative="two-sided").pvalue)


def _changes(table: pd.DataFrame, alpha: float) -> np.ndarray:
    """regression / improvement / other change / "" per test (see the module docstring)."""
    significant = (table["p_adjusted"] <= alpha).to_numpy()
    if "diff" in table:
        up, metric = table["diff"].to_numpy() > 0, table["metric"]
        worse = np.where(metric.isin(WORSE_IF_DOWN), ~up, up)
        directed = metric.isin(WORSE_IF_DOWN | WORSE_IF_UP).to_numpy()
    else:
        worse = (table["new_median"] > table["base_median"]).to_numpy()
        directed = (table["new_median"] != table["base_median"]).to_numpy()
    verdict = np.where(~directed, "other change", np.where(worse, "regression", "improvement"))
    return np.where(significant, verdict, "").astype(object)


def _changed(b: pd.DataFrame, n: pd.DataFrame) -> int | None:
    """Trajectories whose label changed, if both sides started from the same points (same
    ``traj`` and ``x0`` row by row); None otherwise."""
    if "traj" not in b or "traj" not in n or "x0" not in b or "x0" not in n or len(b) != len(n):
        return None
    b, n = b.sort_values("traj", kind="stable"), n.sort_values("traj", kind="stable")
    try:
        same = (np.array_equal(b["traj"].to_numpy(), n["traj"].to_numpy())
                and np.array_equal(points(b, "x0"), points(n, "x0")))
    except (ValueError, TypeError):  # ragged or unreadable points: no paired view
        return None
    return int((b["outcome"].to_numpy() != n["outcome"].to_numpy()).sum()) if same else None


def _settings(base: dict | None, new: dict | None, names: tuple[str, str]) -> list[str]:
    """Differences of the campaign settings that change results, one line each."""
    if base is None and new is None:
        return []
    if base is None or new is None:
        return [f"no manifest for {names[0 if base is None else 1]}: settings not compared"]
    old, now = base.get("fingerprint", {}), new.get("fingerprint", {})
    lines = []
    for key in SETTINGS:  # (a key left out of a fingerprint has its implied value)
        a, b = old.get(key, IMPLIED.get(key)), now.get(key, IMPLIED.get(key))
        pairs = ([(f"{key}.{k}", a.get(k), b.get(k)) for k in sorted({*a, *b})]
                 if isinstance(a, dict) and isinstance(b, dict) else [(key, a, b)])
        lines += [f"{k}: {names[0]} {x!r}, {names[1]} {y!r}" for k, x, y in pairs if x != y]
    return lines


def _budgets_differ(base: dict | None, new: dict | None) -> bool:
    """Whether the runs' deterministic budgets differ (unknown without both manifests: counted
    as equal). The wall-time safety net is left out: results do not depend on it unless it is
    reached, and then the rows say so."""
    if base is None or new is None:
        return False

    def budget(manifest: dict) -> dict:
        found = dict(manifest.get("fingerprint", {}).get("budget") or {})
        found.pop("wall_time", None)
        return found

    return budget(base) != budget(new)


def _version(manifest: dict | None) -> str:
    """Versions, source digests and git commit of a run, in one line."""
    if manifest is None:
        return "unknown (no manifest)"
    fp = manifest.get("fingerprint", {})
    runs = manifest.get("invocations") or [{}]
    parts = [f"{k} {v}" for k, v in fp.get("versions", {}).items()]
    if fp.get("code"):  # source digests: an editable install changes without a new version
        parts.append("source " + "/".join(str(v)[:8] for v in fp["code"].values()))
    commit = runs[-1].get("git_commit")
    return ", ".join(parts + ([f"git {commit[:10]}"] if commit else [])) or "unknown"


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def text_rows(rows: pd.DataFrame) -> list[str]:
    """Tests grouped under their cell: rate rows as k/n and points, cost rows as medians; a
    test that cannot reach alpha with its margins (Tarone) says "untestable"."""
    lines = []
    for (problem, integrator), group in rows.groupby(CELL, sort=False):
        lines.append(f"  {problem} x {integrator}"[:100])
        for r in group.itertuples():
            if r.kind == "rate":
                counts = f"{r.base_k:.0f}/{r.base_n:.0f} -> {r.new_k:.0f}/{r.new_n:.0f}"
                what = (counts.ljust(23) + f"{100 * r.diff:+.1f} pp [{100 * r.ci_low:+.1f}, "
                        f"{100 * r.ci_high:+.1f}]".ljust(27))
            else:
                what = (f"med {_fmt(r.base_median)} -> {_fmt(r.new_median)}".ljust(23)
                        + f"x{_fmt(r.ratio)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]".ljust(27))
            flag = str(r.change).upper() or (
                "untestable" if getattr(r, "testable", True) is False
                and math.isfinite(r.p_adjusted) else "")
            lines.append(f"    {r.metric:<19}{what}p_adj {_fmt(r.p_adjusted, '.2g'):<8} "
                         f"{flag}".rstrip())
    return lines


def _html_table(frame: pd.DataFrame) -> str:
    # verdict tables mix rate and cost rows: leave out the columns that are empty throughout
    table = frame.dropna(axis=1, how="all").to_html(
        index=False, classes="board", border=0, na_rep="-", escape=True,
        float_format=lambda v: f"{v:.3g}")
    return f'<div class="scroll">{table}</div>'  # wide tables scroll, the page does not
