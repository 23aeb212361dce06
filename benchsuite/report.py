"""The report: a pure function of a run folder's tables and manifest (nothing is re-run, no
problem or integrator is rebuilt, no label is re-parsed).

Top to bottom, the page holds:

* warnings first: cells not finished, damaged or failed, the undetermined share, rows cut by the
  wall-time safety net, and evidence that contradicts a proved property
  (:mod:`benchsuite.evidence`);
* :func:`leaderboard`: integrators ranked by their rate of reaching the global infimum, pooled
  only over the problems every integrator applies to (and saying which), then per problem;
  every outcome has its own rate with a Wilson interval, and integrators whose intervals overlap
  the leader of their tier share its rank (``2=``);
* theory against evidence, and how far the labels can be trusted (generic rules against the
  problems' certificates);
* figures (matplotlib/seaborn): a Dolan-More :func:`performance_profile`, an outcome heatmap
  with the cells that do not apply hatched, outcome shares, |x(t)| and f(t) - f_star against
  flow time in small multiples, and for 2-D problems the landscape recorded by the run with the
  trajectories coloured by outcome (the paper's Figs. 2-3);
* sections contributed by plugins (the ``benchsuite_report_sections`` hook).

Figures are embedded in the page as PNG; standalone PNG/SVG/PDF files are written only when
asked (``formats``), for papers.
"""

from __future__ import annotations

import base64
import html
import io
import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")  # headless: the report is files, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from benchsuite.agreement import agreement
from benchsuite.columns import points
from benchsuite.evidence import contradiction_banner_html, evidence_html
from benchsuite.labels import display_names, renamed
from benchsuite.page import html_page
from benchsuite.results import RunStore, load_results
from benchsuite.stats import percent, wilson
from benchsuite.vocabulary import OUTCOMES, Stop

GLOBAL = ("converged_global", "escape_global")
TARGET = 1e-3
#: The leaderboard's rates: together they cover every outcome exactly once.
RATES = ("global", "converged_spurious", "escape_spurious", "step_limited", "diverged",
         "failed", "undetermined")
#: Quantile band of the trajectory figures.
BAND = (0.1, 0.9)
MAX_TRAJECTORIES_DRAWN = 60
PLOT_RANGE = (1e-30, 1e30)
#: |x| and f - f* below this are drawn at it (an exact 0 has no place on a log axis).
FLOOR = 1e-16
#: Problems per figure of the trajectory small multiples.
PROBLEMS_PER_FIGURE = 6
#: Line styles and markers per integrator: overlapping curves stay distinguishable.
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FORMATS = ("png", "svg", "pdf")
DPI = 90
#: Tick labels as plain numbers (1e-06, 0.01, 100).
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


# -- statistics ---------------------------------------------------------------------------------


def outcome_rates(trajectories: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: trajectories, and for each of :data:`RATES` its count, rate and Wilson
    interval (``<rate>``, ``<rate>_low``, ``<rate>_high``), plus median flow time and oracle
    calls to f - f_star <= TARGET among the trajectories that got there."""
    outcome = trajectories["outcome"].astype(str)
    flags = pd.DataFrame({"global": outcome.isin(GLOBAL)}, index=trajectories.index)
    for rate in RATES[1:]:
        flags[rate] = outcome == rate
    groups = [trajectories[k].astype(str) for k in keys]
    counts = flags.groupby(groups).sum()
    n = flags.groupby(groups).size()
    table = pd.DataFrame({"trajectories": n})
    for rate in RATES:
        low, high = wilson(counts[rate], n)
        table[rate], table[f"{rate}_low"], table[f"{rate}_high"] = counts[rate] / n, low, high
    for what, col in (("t", f"t_to_{TARGET:g}"), ("evals", f"evals_to_{TARGET:g}")):
        median = (trajectories[col].groupby(groups).median() if col in trajectories
                  else pd.Series(math.nan, index=n.index))
        table[f"median_{what}_to_{TARGET:g}"] = median
    return table


def tied_ranks(table: pd.DataFrame, rate: str = "global") -> pd.Series:
    """Competition ranks by ``rate`` (descending; cost breaks exact ties), where a row whose
    Wilson interval overlaps that of its tier's leader shares the leader's rank.

    Returns a Series of strings: ``"1"``, or ``"2="`` for each member of a tier of several.
    """
    cost = table.get(f"median_evals_to_{TARGET:g}", pd.Series(math.nan, index=table.index))
    order = table.assign(_cost=cost).sort_values([rate, "_cost"], ascending=[False, True],
                                                 na_position="last").index
    rank, leader, tiers = {}, None, {}
    for position, row in enumerate(order, start=1):
        if leader is None or table.at[row, f"{rate}_high"] < table.at[leader, f"{rate}_low"]:
            leader = row
        rank[row] = tiers.setdefault(leader, position)
    sizes = pd.Series(rank).value_counts()
    return pd.Series({row: f"{r}=" if sizes[r] > 1 else str(r) for row, r in rank.items()})


def common_problems(trajectories: pd.DataFrame) -> list[str]:
    """The problems on which every integrator of the run has trajectories."""
    present = trajectories.groupby("problem", observed=True)["integrator"].nunique()
    return sorted(present.index[present == trajectories["integrator"].nunique()].astype(str))


def leaderboard(trajectories: pd.DataFrame, by_problem: bool = True) -> pd.DataFrame:
    """Integrators ranked by their rate of reaching the global infimum, with Wilson intervals.

    Parameters
    ----------
    trajectories : DataFrame
        A run's trajectory table.
    by_problem : bool
        One ranking per problem (True), or one overall ranking (False) pooled over the
        problems *every* integrator applies to (``attrs["common_problems"]``; the others are
        in ``attrs["excluded_problems"]``), with each integrator's ``coverage`` (problems it
        ran on, of all in the run) and ``mean_rank`` (its mean per-problem rank on the common
        problems, ties averaged).

    Returns
    -------
    DataFrame
        Indexed by (problem, integrator) or integrator; ``rank`` as from :func:`tied_ranks`.
    """
    if trajectories.empty:
        return pd.DataFrame()
    if by_problem:
        table = outcome_rates(trajectories, ["problem", "integrator"])
        ranks = [tied_ranks(group) for _, group in table.groupby(level="problem")]
        table.insert(0, "rank", pd.concat(ranks))
        position = table["rank"].str.rstrip("=").astype(int)
        return table.assign(_p=position).sort_values(["problem", "_p"]).drop(columns="_p")
    common = common_problems(trajectories)
    shared = trajectories[trajectories["problem"].astype(str).isin(common)]
    if shared.empty:
        table = pd.DataFrame(columns=["rank", "coverage", "mean_rank", "trajectories", *RATES])
    else:
        table = outcome_rates(shared, ["integrator"])
        per_problem = outcome_rates(shared, ["problem", "integrator"])["global"]
        table["mean_rank"] = per_problem.groupby(level="problem").rank(
            ascending=False, method="average").groupby(level="integrator").mean()
        ran = trajectories.groupby("integrator", observed=True)["problem"].nunique()
        total = trajectories["problem"].nunique()
        table.insert(0, "coverage", [f"{ran[i]}/{total}" for i in table.index])
        table.insert(0, "rank", tied_ranks(table))
        position = table["rank"].str.rstrip("=").astype(int)
        table = table.assign(_p=position).sort_values("_p").drop(columns="_p")
    table.attrs["common_problems"] = common
    table.attrs["excluded_problems"] = sorted(
        set(trajectories["problem"].astype(str)) - set(common))
    return table


def expected_running_time(group: pd.DataFrame) -> float:
    """COCO's expected running time to the target: oracle calls spent by all trajectories
    (successes until they reach it, failures in full) divided by the number of successes."""
    reached = group[f"evals_to_{TARGET:g}"]
    success = reached.notna()
    if not success.any():
        return math.inf
    total = group["nfev"] + group["ngev"] + group["nprox"]
    return float((reached[success].sum() + total[~success].sum()) / success.sum())


def performance_profile(trajectories: pd.DataFrame, taus: np.ndarray | None = None
                        ) -> pd.DataFrame:
    """Dolan-More performance profiles over the problems every integrator applies to: for
    each integrator, the fraction of those problems it solves within a factor tau of the best
    integrator's cost (the expected running time, in oracle calls, to f - f_star <= TARGET).

    Returns
    -------
    DataFrame
        Long form: ``integrator``, ``tau``, ``fraction``; ``attrs["problems"]`` is the number
        of problems the fractions are over.
    """
    col = f"evals_to_{TARGET:g}"
    empty = pd.DataFrame(columns=["integrator", "tau", "fraction"])
    if trajectories.empty or col not in trajectories:
        return empty
    shared = trajectories[trajectories["problem"].astype(str).isin(
        common_problems(trajectories))]
    costs = shared.groupby(["problem", "integrator"], observed=True).apply(
        expected_running_time, include_groups=False).unstack("integrator")
    best = costs.min(axis=1).replace(0, 1)
    ratios = costs.div(best, axis=0)
    ratios = ratios[np.isfinite(best)]  # problems no integrator solves carry no information
    taus = np.geomspace(1, 1e3, 61) if taus is None else taus
    rows = [{"integrator": integ, "tau": tau, "fraction": float((ratios[integ] <= tau).mean())}
            for integ in ratios.columns for tau in taus] if len(ratios) else []
    profile = pd.DataFrame(rows, columns=empty.columns)
    profile.attrs["problems"] = len(ratios)
    return profile


# -- figures ------------------------------------------------------------------------------------


def _styles(integrators: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One colour, dash pattern and marker per integrator, the same in every figure."""
    palette = sns.color_palette("tab10", max(len(integrators), 1))
    return {name: {"color": palette[i % len(palette)], "linestyle": DASHES[i % len(DASHES)],
                   "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(integrators)}


def profile_figure(profile: pd.DataFrame, styles: Mapping[str, dict[str, Any]]) -> plt.Figure:
    """The performance profiles, one dashed, marked step curve per integrator."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for integrator, curve in profile.groupby("integrator", sort=True):
        style = styles.get(str(integrator), {})
        ax.step(curve["tau"], curve["fraction"], where="post", label=str(integrator),
                markevery=6, markersize=5, linewidth=1.4, **style)
    ax.set_xscale("log")
    ax.set_xlabel("tau: cost relative to the best integrator (oracle calls, ratio)")
    ax.set_ylabel(f"fraction of problems solved\nto f - f* <= {TARGET:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.subplots_adjust(left=0.12, right=0.72, bottom=0.14, top=0.95)
    return fig


#: Abbreviations of the outcomes in the heatmap's annotations.
OUTCOME_ABBREVIATIONS = {o: "".join(w[0] for w in o.split("_")) for o in OUTCOMES}


def outcome_heatmap(trajectories: pd.DataFrame, skipped: pd.DataFrame,
                    missing: pd.DataFrame) -> plt.Figure:
    """Rate of reaching the global infimum, problem x integrator, annotated with the most
    frequent outcome; cells where the integrator does not apply are hatched ("n/a"), cells not
    finished or damaged are marked ("missing")."""
    rate = trajectories.assign(hit=trajectories["outcome"].astype(str).isin(GLOBAL)).pivot_table(
        index="problem", columns="integrator", values="hit", aggfunc="mean", observed=True)
    rows = sorted(set(rate.index) | set(skipped.get("problem", [])) | set(missing.get(
        "problem", [])))
    cols = sorted(set(rate.columns) | set(skipped.get("integrator", [])) | set(missing.get(
        "integrator", [])))
    rate = rate.reindex(index=rows, columns=cols)
    top = trajectories.groupby(["problem", "integrator"], observed=True)["outcome"].agg(
        lambda s: OUTCOME_ABBREVIATIONS.get(s.astype(str).value_counts().index[0], ""))
    labels = top.unstack().reindex(index=rows, columns=cols).fillna("")
    for frame, word in ((skipped, "n/a"), (missing, "missing")):
        for _, cell in frame.iterrows():
            labels.loc[cell["problem"], cell["integrator"]] = word
    # margins in inches, so that labels fit whatever the number of problems
    label_width = 0.055 * max((len(str(r)) for r in rows), default=10) + 0.7
    width, height = 0.9 * len(cols) + label_width + 1.6, max(0.28 * len(rows) + 1.6, 3.0)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_facecolor("#e8e8e8")
    ax.patch.set_hatch("///")
    ax.patch.set_edgecolor("#bbbbbb")
    sns.heatmap(rate, annot=labels.to_numpy(), fmt="", vmin=0, vmax=1, cmap="viridis", ax=ax,
                annot_kws={"fontsize": 7}, cbar_kws={"label": "global rate", "shrink": 0.6})
    for (i, j), word in np.ndenumerate(labels.to_numpy()):
        if word in ("n/a", "missing"):
            ax.text(j + 0.5, i + 0.5, word, ha="center", va="center", fontsize=7, color="#444")
    ax.set_xlabel("integrator")
    ax.set_ylabel("problem")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.tick_params(axis="y", labelsize=7, labelrotation=0)
    fig.subplots_adjust(left=label_width / width, right=1 - 0.2 / width,
                        bottom=1.2 / height, top=1 - 0.15 / height)
    return fig


def outcome_shares(trajectories: pd.DataFrame) -> plt.Figure:
    """Share of each outcome, per integrator, on the problems every integrator applies to."""
    shared = trajectories[trajectories["problem"].astype(str).isin(
        common_problems(trajectories))]
    shares = pd.crosstab(shared["integrator"], shared["outcome"].astype(str),
                         normalize="index").reindex(columns=list(OUTCOMES), fill_value=0)
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(shares) + 1.6))
    shares.plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.8)
    ax.set_xlabel("share of trajectories")
    ax.set_ylabel("integrator")
    ax.set_xlim(0, 1)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.2, right=0.75, bottom=0.6 / (0.4 * len(shares) + 1.6) + 0.1)
    return fig


def _log_axes(ax: plt.Axes, low: float, high: float) -> None:
    """Log-log axes with a few labelled ticks and no minor ones (ticks dominate the cost of
    drawing log axes); y values spanning less than a decade get 1-2-5 ticks, else one
    labelled decade would be all the reader sees."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    narrow = high < 10 * low
    for axis, subs in ((ax.xaxis, (1.0,)), (ax.yaxis, (1.0, 2.0, 5.0) if narrow else (1.0,))):
        axis.set_major_locator(LogLocator(numticks=5, subs=subs))
        axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(PLAIN)  # mathtext labels (10^k) cost more than the plot


def band_statistics(checkpoints: pd.DataFrame, f_star: Mapping[str, float]
                    ) -> dict[str, pd.DataFrame]:
    """Per problem, integrator and half-octave of flow time: the median and the quantile band
    of |x| (``norm``) and f - f_star (``f_gap``) over *all* the trajectories.

    Each trajectory is read on a common grid of flow times (half-octaves) at its last
    checkpoint at or before each time, and holds its last value after it stopped: a median
    over whichever trajectories happen to have a checkpoint in a bin would follow a few
    unrepresentative ones (adaptive steps, early stops). Values are floored at
    :data:`FLOOR` (an exact 0 on a log axis) and drawn clipped to :data:`PLOT_RANGE`.
    """
    stats: dict[str, pd.DataFrame] = {}
    keys = ["problem", "integrator", "traj"]
    cp = checkpoints[[*keys, "t", "norm", "f_gap"]] if len(checkpoints) else checkpoints
    cp = cp[np.isfinite(cp["t"].to_numpy(float))] if len(cp) else cp
    positive = cp[cp["t"] > 0] if len(cp) else cp
    if positive.empty:
        return stats
    grids = []
    for problem, times in positive.groupby("problem", observed=True)["t"]:
        first, last = np.log2(times.min()), np.log2(times.max())
        ts = 2.0 ** (np.arange(math.ceil(2 * first), math.floor(2 * last) + 1) / 2)
        ts = np.unique(np.concatenate([ts, [times.max()]]))
        rows = cp.loc[cp["problem"] == problem, keys].drop_duplicates()
        grids.append(rows.merge(pd.DataFrame({"t": ts}), how="cross"))
    grid = pd.concat(grids, ignore_index=True).sort_values("t", kind="stable")
    held = pd.merge_asof(grid, cp.sort_values("t", kind="stable"), on="t", by=keys,
                         direction="backward")
    finite = {p: math.isfinite(v) for p, v in f_star.items()}
    has_gap = held["problem"].map(finite).fillna(False).to_numpy(bool)  # f* = -inf: no gap
    for col, rows in (("norm", held), ("f_gap", held[has_gap])):
        # a blown-up value (inf, or NaN once it overflowed) is drawn at the top of the plot:
        # it must count in the median, not vanish from it (inf - inf would make it NaN)
        values = np.nan_to_num(rows[col].to_numpy(float), nan=PLOT_RANGE[1],
                               posinf=PLOT_RANGE[1], neginf=FLOOR)
        data = rows.assign(**{col: np.clip(values, FLOOR, PLOT_RANGE[1])})
        stats[col] = data.groupby(["problem", "integrator", "t"], observed=True)[col].quantile(
            [BAND[0], 0.5, BAND[1]]).unstack()
    return stats


def trajectory_bands(stats: Mapping[str, pd.DataFrame], problems: Sequence[str],
                     f_star: Mapping[str, float], styles: Mapping[str, dict[str, Any]]
                     ) -> plt.Figure:
    """|x(t)| and f(t) - f_star against flow time for several problems (one row each): the
    median per integrator and its quantile band (from :func:`band_statistics`)."""
    # one flow-time axis per column: inner rows need no tick labels of their own
    fig, axes = plt.subplots(len(problems), 2, figsize=(10, 2.3 * len(problems) + 0.9),
                             squeeze=False, sharex="col")
    for row, problem in enumerate(problems):
        for ax, col, label in ((axes[row, 0], "norm", "|x(t)|"),
                               (axes[row, 1], "f_gap", "f(x(t)) - f*")):
            ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            table = stats.get(col)
            if table is None or problem not in table.index.get_level_values("problem"):
                why = ("f* = -inf: no gap to draw" if col == "f_gap"
                       and not math.isfinite(f_star.get(problem, math.nan))
                       else "no finite positive values")
                ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
                ax.tick_params(left=False, labelleft=False)  # an empty panel has no scale
                continue
            mine = table.loc[problem]
            for integrator, sub in mine.groupby(level="integrator"):
                sub = sub.droplevel("integrator")
                style = styles.get(str(integrator), {})
                ax.plot(sub.index, sub[0.5], label=str(integrator), markevery=3, markersize=3,
                        linewidth=1.1, **style)
                ax.fill_between(sub.index, sub[BAND[0]], sub[BAND[1]], alpha=0.15,
                                color=style.get("color"), linewidth=0)
            _log_axes(ax, float(mine.to_numpy().min()), float(mine.to_numpy().max()))
        axes[row, 0].set_title(problem, fontsize=8, loc="left")
    for ax in axes[-1]:
        ax.set_xlabel("flow time t (log scale)", fontsize=8)
    for ax in axes[:-1].flat:
        ax.tick_params(labelbottom=False)
    handles = [plt.Line2D([], [], label=name, markersize=4, **style)
               for name, style in styles.items()]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False)
    top = 1 - (0.35 + 0.22 * math.ceil(len(handles) / 4)) / (2.3 * len(problems) + 0.9)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.6 / (2.3 * len(problems) + 0.9),
                        top=top, hspace=0.45, wspace=0.22)
    return fig


def landscape_figure(trajectories: pd.DataFrame, checkpoints: pd.DataFrame,
                     landscapes: pd.DataFrame, problem: str, integrators: Sequence[str],
                     notes: Mapping[tuple[str, str], str] | None = None) -> plt.Figure:
    """A 2-D problem's landscape as recorded by the run (filled contours of f), with the
    trajectories and initial points of each integrator coloured by outcome."""
    ncols = min(len(integrators), 3)
    nrows = math.ceil(len(integrators) / ncols)
    # one scale for every panel of the problem, so that the integrators compare at a glance
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.1 * ncols + 1.2, 3.7 * nrows + 0.8),
                             squeeze=False, sharex=True, sharey=True)
    palette = dict(zip(OUTCOMES, sns.color_palette("tab10", len(OUTCOMES)), strict=True))
    mappable, extents = None, []
    for ax, integrator in zip(axes.flat, integrators, strict=False):
        mine = (trajectories["problem"] == problem) & (trajectories["integrator"] == integrator)
        traj = trajectories[mine]
        grid = landscapes[(landscapes["problem"] == problem)
                          & (landscapes["integrator"] == integrator)] if len(landscapes) else []
        side = math.isqrt(len(grid))
        if len(grid) and side * side == len(grid):
            g0, g1, values = (grid[c].to_numpy(float).reshape(side, side)
                              for c in ("g0", "g1", "f"))
            extents.append((g0.min(), g0.max(), g1.min(), g1.max()))
            finite = values[np.isfinite(values)]
            if finite.size:
                levels = np.unique(np.quantile(finite, np.linspace(0, 1, 16)))
                if levels.size > 1:
                    mappable = ax.contourf(g0, g1, values, levels=levels, cmap="Greys_r",
                                           alpha=0.55)
        else:
            why = (notes or {}).get((problem, integrator)) or (
                "no landscape: the cell failed, or the run predates landscapes")
            ax.text(0.5, 0.02, why, ha="center", fontsize=6, wrap=True,
                    transform=ax.transAxes)
        cp = checkpoints[(checkpoints["problem"] == problem)
                         & (checkpoints["integrator"] == integrator)]
        outcome = traj.set_index("traj")["outcome"].astype(str)
        shown = outcome.index[:MAX_TRAJECTORIES_DRAWN]
        if {"x0", "x1"} <= set(cp):
            for tid, path in cp[cp["traj"].isin(shown)].groupby("traj"):
                ax.plot(path["x0"], path["x1"], color=palette[outcome[tid]], linewidth=0.8,
                        alpha=0.8)
        x0 = points(traj, "x0")
        labels = traj["outcome"].astype(str).to_numpy()
        for label, color in palette.items():
            mask = labels == label
            if mask.any():
                ax.scatter(x0[mask, 0], x0[mask, 1], s=9, color=color, zorder=3)
        ax.set_title(integrator, fontsize=8)
        ax.set_xlabel("x1", fontsize=8)
        ax.set_ylabel("x2", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(integrators):]:
        ax.set_visible(False)
    if extents:  # the recorded grids, not escaping trajectories, set the shared frame
        box = np.array(extents)
        axes[0, 0].set_xlim(box[:, 0].min(), box[:, 1].max())
        axes[0, 0].set_ylim(box[:, 2].min(), box[:, 3].max())
    present = sorted(set(trajectories[trajectories["problem"] == problem]["outcome"].astype(
        str)), key=OUTCOMES.index)
    handles = [plt.Line2D([], [], color=palette[o], marker="o", label=o) for o in present]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False)
    height = 3.7 * nrows + 0.8
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.45 / height, top=1 - 0.7 / height,
                        wspace=0.3, hspace=0.4)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
        bar.set_label("f(x) (levels at quantiles of the grid)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig


# -- sections -----------------------------------------------------------------------------------


def _percent(rate: float, low: float, high: float) -> str:
    """"45% (38%-52%)"; below 1%, one more digit, so that 0 of 4000 reads (0%-0.1%)."""
    if not math.isfinite(rate):
        return "-"
    return f"{percent(rate)} ({percent(low)}-{percent(high)})"


def board_html(table: pd.DataFrame, index: Sequence[str]) -> str:
    """A leaderboard as an HTML table that fits: each rate as "45% (38%-52%)", its Wilson
    interval beside it, wrapped in a horizontally scrolling box."""
    shown = pd.DataFrame(index=table.index)
    for column, header in (("rank", "rank"), ("coverage", "coverage"),
                           ("trajectories", "n")):
        if column in table:
            shown[header] = table[column]
    for rate in RATES:
        shown[rate] = [_percent(r, lo, hi) for r, lo, hi in zip(
            table[rate], table[f"{rate}_low"], table[f"{rate}_high"], strict=True)]
    if "mean_rank" in table:
        shown["mean rank"] = table["mean_rank"].map(lambda v: f"{v:.2f}")
    for what, unit in (("evals", "oracle calls"), ("t", "flow time")):
        col = f"median_{what}_to_{TARGET:g}"
        shown[f"median {unit} to target"] = table[col].map(
            lambda v: "-" if not math.isfinite(v) else f"{v:.3g}")
    shown.index.names = list(index)
    # headers may break after an underscore (a zero-width space), so that the table fits
    shown.columns = [str(c).replace("_", "_\u200b") for c in shown.columns]
    return f'<div class="scroll">{shown.to_html(classes="board", border=0)}</div>'


def _names(items: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(items[:most]) + (", ..." if len(items) > most else "")
    return html.escape(shown)


def _excluded_html(excluded: Sequence[str], skipped: pd.DataFrame, cells: pd.DataFrame,
                   ranked: Collection[str]) -> str:
    """Why problems are left out of the pooled board: an integrator does not apply to them,
    or some of their cells are not finished or damaged (counting only the ``ranked``
    integrators, those with finished cells: the others are on no board at all)."""
    if not excluded:
        return ""
    bad = cells[(cells["status"] != "ok") & cells["integrator"].astype(str).isin(ranked)]
    unfinished = set(bad["problem"].astype(str))
    inapplicable = set(skipped["problem"].astype(str)) if len(skipped) else set()
    parts = []
    for why, found in (("some integrators do not apply to", inapplicable),
                       ("some cells are not finished or damaged for", unfinished)):
        these = [p for p in excluded if p in found]
        if these:
            parts.append(f"{why} {len(these)} ({_names(these)})")
    return (f"; {len(excluded)} more {'is' if len(excluded) == 1 else 'are'} ranked per "
            "problem below: " + "; ".join(parts))


def _absent_html(names: Mapping[str, str], problems: Collection[str],
                 trajectories: pd.DataFrame) -> str:
    """Integrators and problems of the campaign without a single finished cell (absent from
    every board)."""
    parts = []
    for what, planned, column in (("integrators", names.values(), "integrator"),
                                  ("problems", problems, "problem")):
        absent = sorted(set(planned) - set(trajectories[column].astype(str)))
        if absent:
            parts.append(f"{what} {_names(absent)}")
    return (". Not on any board, for want of a finished cell: " + "; ".join(parts)
            if parts else "")


def integrity_html(cells: pd.DataFrame, trajectories: pd.DataFrame) -> str:
    """Warnings for the top of the report: cells not finished or damaged, cells that failed,
    the undetermined share."""
    counts = cells["status"].value_counts()
    damaged, missing = int(counts.get("damaged", 0)), int(counts.get("missing", 0))
    parts = []
    if missing:
        parts.append(f"{missing} of {len(cells)} cells are not finished: this report covers "
                     "part of the campaign (run the same command again to finish it)")
    if damaged:
        bad = cells[cells["status"] == "damaged"]
        names = _names([f"{p} x {i}" for p, i in zip(bad["problem"], bad["integrator"],
                                                     strict=True)], most=5)
        parts.append(f"{damaged} cells are damaged and left out ({names}); "
                     "<code>benchsuite verify</code> names them and a resume recomputes them")
    if len(trajectories):
        failed = trajectories["stop"].astype(str) == Stop.ERROR
        if failed.any():
            cells_failed = trajectories[failed].groupby(["problem", "integrator"]).ngroups
            parts.append(f"{int(failed.sum())} trajectories in {cells_failed} cells failed "
                         "with an error (their messages are in the trajectory table)")
        share = (trajectories["outcome"].astype(str) == "undetermined").mean()
        if share > 0.25:
            parts.append(f"{share:.0%} of the trajectories are undetermined: the labels cover "
                         "less than three quarters of the run (<code>--extend N</code>)")
    return "".join(f'<p class="warn">{p}.</p>' for p in parts)


def trust_html(trajectories: pd.DataFrame) -> str:
    """How far the labels can be trusted: rows cut by the wall-time safety net, the
    undetermined share and why, and the generic rules against the certificates."""
    out = ["<h2>How far the labels can be trusted</h2>"]
    cut = int((trajectories["stop"].astype(str) == Stop.WALL_TIME).sum())
    if cut:
        out.append(f"<p class=warn>{cut} trajectories were stopped by the wall-time "
                   "safety net: they are undetermined and carry no finding (the cut "
                   "depends on the machine). Rerun with a larger --wall-time.</p>")
    undecided = trajectories["outcome"].astype(str) == "undetermined"
    out.append(f"<p>{int(undecided.sum())} of {len(trajectories)} trajectories "
               f"({undecided.mean():.1%}) are undetermined: no rule found conclusive evidence "
               "within the budget (<code>--extend N</code> re-runs them with the budget "
               "doubled).</p>")
    if undecided.any() and "reason" in trajectories:
        why = trajectories[undecided]["reason"].astype(str).str.removeprefix("undetermined: ")
        table = why.value_counts().rename_axis("missing evidence").to_frame("trajectories")
        out.append("<h3>Why trajectories are undetermined</h3>"
                   f'<div class="scroll">{table.to_html(classes="board", border=0)}</div>')
    board = agreement(trajectories, by=("problem", "integrator"))
    if len(board):
        total = int(board["disagree"].sum())
        verdict = ("never contradict it" if total == 0 else
                   f"contradict it on {total} trajectories: a bug to report")
        out.append(f"<p>Where a problem's exact certificate speaks, it is the truth; the "
                   f"generic rules alone (<code>generic_outcome</code>) {verdict}.</p>"
                   "<h3>Generic rules against the certificates</h3>"
                   f'<div class="scroll">{board.to_html(classes="board", border=0)}</div>')
    return "\n".join(out)


def campaign_html(manifest: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """What was run: the campaign, the integrators' full labels, versions."""
    campaign = manifest.get("campaign", {})
    budget = campaign.get("budget", {})
    invocations = manifest.get("invocations") or [{}]
    versions = sorted({f"{p.get('distribution')} {p.get('version')}"
                       for p in invocations[-1].get("plugins", [])})
    rows = {
        "created": manifest.get("created", "?"),
        "problems x integrators": f"{len(manifest.get('problems', {}))} x {len(names)} "
                                  f"({len(manifest.get('cells', []))} cells)",
        "initial points per problem": campaign.get("n_points", "?"),
        "seed": campaign.get("seed", "?"),
        "budgets": ", ".join(f"{k} = {v}" for k, v in budget.items()),
        "certificates": campaign.get("certificates", "?"),
        "backend": backend_text(campaign, invocations[-1].get("backend")),
        "versions": ", ".join(versions) or "?",
    }
    rows.update({f"integrator {short}": full for full, short in names.items()})
    table = pd.Series(rows, name="").to_frame().to_html(classes="board", border=0,
                                                         header=False)
    return f'<details><summary>Campaign</summary><div class="scroll">{table}</div></details>'


def backend_text(campaign: Mapping[str, Any], about: Mapping[str, Any] | None) -> str:
    """Which array library ran a campaign, on which device: ``jax 0.4.35 on gpu
    (gpu:NVIDIA H100)``, from the campaign and what an invocation found
    (:func:`benchsuite.campaign.check_backend`); runs made before backends existed ran numpy."""
    name = campaign.get("backend") or "numpy"
    about = about if isinstance(about, Mapping) else {}
    device = about.get("device") or campaign.get("device") or "cpu"
    version = f" {about['version']}" if about.get("version") else ""
    platform = f" ({about['platform']})" if about.get("platform") else ""
    return f"{name}{version} on {device}{platform}"


class ReportSection(Protocol):
    """What a plugin's report section is (the ``benchsuite_report_sections`` hook)."""

    title: str

    def render(self, tables: Mapping[str, pd.DataFrame], manifest: Mapping[str, Any]) -> str:
        """An HTML fragment from the run's tables and manifest."""


def _plugin_sections(sections: Sequence[ReportSection], tables: Mapping[str, pd.DataFrame],
                     manifest: Mapping[str, Any]) -> list[str]:
    """Sections contributed by plugins: each titled, and a raising one reported in its place
    (a plugin must never cost the user the rest of the report)."""
    out = []
    for section in sections:
        title = str(getattr(section, "title", type(section).__name__))
        try:
            body = str(section.render(tables, manifest))
        except Exception as exc:
            body = (f'<p class="warn">this section raised {html.escape(type(exc).__name__)}: '
                    f"{html.escape(str(exc))}</p>")
        out.append(f"<section><h2>{html.escape(title)}</h2>{body}</section>")
    return out


INTRO = ("Global rate: share of trajectories that reached the global infimum (converged_global "
         "or escape_global). Costs are medians over the trajectories that reached f - f* &lt;= "
         "target, on log-spaced checkpoints.")


# -- the page -----------------------------------------------------------------------------------


class _Figures:
    """The page's figures: queued as builders, then built and rendered (inline PNG, and
    standalone files when asked), in forked processes when there are cores to spare (drawing
    is most of the report's time, and figures are independent)."""

    def __init__(self, folder: Path, formats: Collection[str]) -> None:
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown figure format(s) {sorted(unknown)}: use "
                             + ", ".join(FORMATS))
        self.folder, self.formats = folder, tuple(f for f in FORMATS if f in formats)
        self.jobs: list[tuple[Callable[[], plt.Figure], str, str]] = []

    def add(self, build: Callable[[], plt.Figure], name: str, caption: str) -> str:
        """Queue a figure; return the placeholder that :meth:`fill` replaces by it."""
        self.jobs.append((build, name, caption))
        return f"<!--figure {len(self.jobs) - 1}-->"

    def render(self, index: int) -> str:
        build, name, caption = self.jobs[index]
        fig = build()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        links = []
        for fmt in self.formats:
            self.folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.folder / f"{name}.{fmt}", dpi=2 * DPI if fmt == "png" else DPI)
            links.append(f'<a href="figures/{name}.{fmt}">{fmt.upper()}</a>')
        plt.close(fig)
        data = base64.b64encode(buffer.getvalue()).decode()
        more = f" ({', '.join(links)})" if links else ""
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}{more}</figcaption></figure>")

    def fill(self, page: str) -> str:
        """``page`` with every placeholder replaced by its rendered figure."""
        workers = min(len(self.jobs), len(os.sched_getaffinity(0))
                      if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            global _RENDERING  # read by the forked workers: builders are closures, not pickles
            _RENDERING = self
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=_quiet_worker)
            try:
                rendered = pool.map(_render, range(len(self.jobs)), chunksize=1)
                pool.close()  # let the workers exit on their own, never a SIGTERM mid-write
            finally:
                pool.terminate()
                pool.join()
                _RENDERING = None
        else:
            rendered = [self.render(i) for i in range(len(self.jobs))]
        for i, figure in enumerate(rendered):
            page = page.replace(f"<!--figure {i}-->", figure, 1)
        return page


_RENDERING: _Figures | None = None


def _quiet_worker() -> None:
    """A drawing worker leaves interrupts to the parent, and dies silently when stopped (it
    inherits the command line's handlers, which would print a traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)


def _render(index: int) -> str:
    assert _RENDERING is not None
    return _RENDERING.render(index)


def write_report(run: str | Path, out: str | Path | None = None, *,
                 formats: Collection[str] = (), sections: Sequence[ReportSection] | None = None,
                 tables: Mapping[str, pd.DataFrame] | None = None) -> Path:
    """Write ``index.html`` with the warnings, leaderboards, evidence and figures of a run.

    Parameters
    ----------
    run : path
        A run directory.
    out : path, optional
        Output folder (default: ``<run>/report``).
    formats : collection of {"png", "svg", "pdf"}
        Also write every figure as a standalone file of these formats in ``out/figures``
        (the page embeds its own PNGs either way).
    sections : sequence, optional
        Extra sections, objects with a ``title`` and ``render(tables, manifest) -> str``
        (HTML). Default: those of the installed plugins (``benchsuite_report_sections``).
    tables : dict of DataFrame, optional
        The run's tables, if already read with :func:`benchsuite.results.load_results` (a
        caller that needs them too saves reading and verifying the folder twice).

    Returns
    -------
    Path
        The page.
    """
    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    manifest = RunStore(run).manifest()
    tables = load_results(run) if tables is None else tables
    traj, cp = tables["trajectories"], tables["checkpoints"]
    if traj.empty:
        raise ValueError(f"{run} has no finished cell yet: nothing to report")
    figures = _Figures(out / "figures", formats)
    names = display_names(manifest.get("cells", []))
    problems = manifest.get("problems", {})
    traj, cp = renamed(traj, names), renamed(cp, names)
    landscapes = renamed(tables["landscapes"], names)
    skipped, cells = renamed(tables["skipped"], names), renamed(tables["cells"], names)
    styles = _styles(sorted(traj["integrator"].unique()))

    page = [integrity_html(cells, traj), contradiction_banner_html(traj, problems),
            campaign_html(manifest, names), "<h2>Leaderboards</h2>"]
    pooled = leaderboard(traj, by_problem=False)
    common, excluded = pooled.attrs["common_problems"], pooled.attrs["excluded_problems"]
    scope = (f"Pooled over the {len(common)} problem{'s' * (len(common) != 1)} every "
             "integrator has finished cells on"
             + _excluded_html(excluded, skipped, cells, set(traj["integrator"].astype(str)))
             + _absent_html(names, problems, traj)
             + ". Rates with 95% Wilson intervals; integrators whose interval overlaps that "
             "of the leader of their tier share its rank (shown 1=, 2=, ...). Coverage: "
             "problems run, of all; n: trajectories.")
    page += [f"<h3>All problems pooled</h3><p>{scope}</p>", board_html(pooled, ["integrator"])]
    profile = performance_profile(traj)
    if profile.attrs.get("problems", 0) >= 2:
        page.append(figures.add(
            lambda: profile_figure(profile, styles), "performance_profile",
            f"Dolan-More performance profiles over {profile.attrs['problems']} problems: the "
            "cost is COCO's expected running time to f - f* <= "
            f"{TARGET:g}, in oracle calls, which charges every trajectory that never gets "
            "there its whole budget (so it can differ from the leaderboard's median cost, "
            "taken over the trajectories that got there)"))
    else:
        page.append("<p>No performance profile: it needs at least two problems that every "
                    "integrator applies to and some integrator solves.</p>")
    legend = ", ".join(f"{v} = {k}" for k, v in OUTCOME_ABBREVIATIONS.items())
    missing = cells[cells["status"] != "ok"]
    page.append(figures.add(
        lambda: outcome_heatmap(traj, skipped, missing), "outcome_heatmap",
        "Rate of reaching the global infimum, problem x integrator, annotated with the most "
        f"frequent outcome ({legend}); hatched n/a: the integrator does not apply to the "
        "problem (e.g. no gradient, or numpy-only code on another backend); missing: cell "
        "not finished or damaged"))
    page.append(figures.add(lambda: outcome_shares(traj), "outcome_shares",
                             "Outcomes per integrator, on the problems every integrator "
                             "applies to"))
    per_problem = leaderboard(traj, by_problem=True)
    page += ["<h3>Per problem</h3>", f"<details><summary>{len(per_problem)} rows: each problem's "
             "integrators ranked, same columns</summary>",
             board_html(per_problem, ["problem", "integrator"]), "</details>"]
    page += [evidence_html(traj, problems),
             trust_html(traj), "<h2>Trajectories</h2>"]
    f_star = {name: float(meta.get("f_star", math.nan)) for name, meta in problems.items()}
    ordered = sorted(traj["problem"].astype(str).unique())
    stats = band_statistics(cp, f_star)
    for i in range(0, len(ordered), PROBLEMS_PER_FIGURE):
        chunk = ordered[i:i + PROBLEMS_PER_FIGURE]
        page.append(figures.add(
            lambda chunk=chunk: trajectory_bands(stats, chunk, f_star, styles),
            f"bands_{i // PROBLEMS_PER_FIGURE:02d}",
            f"|x(t)| and f(x(t)) - f* against flow time: median (line) and {BAND[0]:.0%}-"
            f"{BAND[1]:.0%} band over the trajectories of each integrator"))
    timings = renamed(tables["timings"], names)
    notes = ({(str(r.problem), str(r.integrator)): str(r.landscape)
              for r in timings.itertuples() if isinstance(r.landscape, str)}
             if "landscape" in timings else {})
    for j, problem in enumerate(p for p in ordered if int(problems.get(p, {}).get("n", 0)) == 2):
        integrators = sorted(traj.loc[traj["problem"] == problem, "integrator"].unique())
        page.append(figures.add(
            lambda problem=problem, integrators=integrators: landscape_figure(
                traj, cp, landscapes, problem, integrators, notes), f"landscape_{j:02d}",
            f"{problem}: trajectories and initial points coloured by outcome, on the "
            "landscape recorded by the run"))
    if sections is None:
        from benchsuite.plugins import load_registry  # only for the plugins' own sections

        sections = load_registry(strict=False,
                                 hooks={"benchsuite_report_sections"}).report_sections
    page += _plugin_sections(sections, tables, manifest)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    body = figures.fill("\n".join(p for p in page if p))
    index.write_text(html_page(f"benchsuite report: {run.name}", body, intro=INTRO))
    return index
