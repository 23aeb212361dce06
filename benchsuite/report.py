"""The report: leaderboards and figures, pure functions of a run's tables (nothing is re-run).

* :func:`leaderboard`: per problem (and overall) integrators ranked by their rate of reaching
  the global infimum (converged_global or escape_global), with 95% Wilson intervals; median
  flow time and oracle calls to f - f_star <= target; rates of escape, step-limited and failed.
* :func:`performance_profile`: Dolan-More profiles across problems, the cost being the expected
  running time (COCO's ERT: all oracle calls spent, by successes and failures, per success).
* figures (seaborn): an outcome heatmap problem x integrator, outcome shares, |x(t)| and
  f(t) - f_star against flow time with quantile bands (log-log), and for 2-D problems the
  landscape with trajectories and initial points coloured by outcome (the paper's Figs. 2-3).
* :func:`write_report`: all of it as a static HTML page, with every figure also as PNG and SVG.

Only the landscape contours evaluate f (on a plotting grid, through the installed plugin that
provides the problem): they draw the landscape, not results.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report is files, never windows

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import binomtest

from benchsuite.agreement import agreement
from benchsuite.columns import points
from benchsuite.plugins import load_registry
from benchsuite.results import RunStore, load_results
from benchsuite.vocabulary import OUTCOMES

GLOBAL = ("converged_global", "escape_global")
TARGET = 1e-3
CONFIDENCE = 0.95
#: Quantile band of the trajectory figures.
BAND = (0.1, 0.9)
MAX_TRAJECTORIES_DRAWN = 60
PLOT_RANGE = (1e-30, 1e30)


def short_labels(labels: list[str]) -> dict[str, str]:
    """Compact display names: for each method, keep only the hyperparameters whose values
    differ among its integrators in this run (``rk45(rtol=1e-06,...)`` alone -> ``rk45``)."""
    parsed: dict[str, tuple[str, dict[str, str]]] = {}
    for label in labels:
        name, _, inside = label.partition("(")
        pairs = dict(p.split("=", 1) for p in inside.rstrip(")").split(",") if "=" in p)
        parsed[label] = (name, pairs)
    result = {}
    for label, (name, pairs) in parsed.items():
        siblings = [p for n, p in parsed.values() if n == name]
        varying = [k for k in pairs if len({s.get(k) for s in siblings}) > 1]
        inside = ",".join(f"{k}={pairs[k]}" for k in varying)
        result[label] = f"{name}({inside})" if inside else name
    return result


def compact_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The same table with compact integrator names."""
    names = short_labels(sorted(frame["integrator"].astype(str).unique()))
    return frame.assign(integrator=frame["integrator"].astype(str).map(names))


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (scipy's ``binomtest``)."""
    if trials == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def _rates(group: pd.DataFrame) -> pd.Series:
    outcome = group["outcome"].astype(str)
    n = len(group)
    hits = int(outcome.isin(GLOBAL).sum())
    low, high = wilson(hits, n)
    t_col, e_col = f"t_to_{TARGET:g}", f"evals_to_{TARGET:g}"
    return pd.Series({
        "trajectories": n,
        "global_rate": hits / n if n else math.nan,
        "ci_low": low,
        "ci_high": high,
        f"median_t_to_{TARGET:g}": group[t_col].median() if t_col in group else math.nan,
        f"median_evals_to_{TARGET:g}": group[e_col].median() if e_col in group else math.nan,
        "escape_rate": outcome.str.startswith("escape").mean(),
        "escape_spurious_rate": (outcome == "escape_spurious").mean(),
        "step_limited_rate": (outcome == "step_limited").mean(),
        "failed_rate": outcome.isin(["failed", "diverged"]).mean(),
        "undetermined_rate": (outcome == "undetermined").mean(),
    })


def leaderboard(trajectories: pd.DataFrame, by_problem: bool = True) -> pd.DataFrame:
    """Integrators ranked by their rate of reaching the global infimum, with Wilson intervals.

    Parameters
    ----------
    trajectories : DataFrame
        A run's trajectory table.
    by_problem : bool
        One ranking per problem (True), or one overall ranking pooling every trajectory.
    """
    if trajectories.empty:
        return pd.DataFrame()
    keys = ["problem", "integrator"] if by_problem else ["integrator"]
    table = trajectories.groupby(keys, observed=True).apply(_rates, include_groups=False)
    table = table.reset_index()
    table["trajectories"] = table["trajectories"].astype(int)
    sort = (["problem"] if by_problem else []) + ["global_rate", f"median_evals_to_{TARGET:g}"]
    ascending = ([True] if by_problem else []) + [False, True]
    table = table.sort_values(sort, ascending=ascending, na_position="last")
    rank_keys = ["problem"] if by_problem else None
    table["rank"] = (table.groupby(rank_keys).cumcount() + 1) if rank_keys else np.arange(
        1, len(table) + 1)
    return table.set_index([*keys[:-1], "rank"]) if by_problem else table.set_index("rank")


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
    """Dolan-More performance profiles: for each integrator, the fraction of problems it solves
    within a factor tau of the best integrator's cost (the expected running time, in oracle
    calls, to f - f_star <= TARGET).

    Returns
    -------
    DataFrame
        Long form: ``integrator``, ``tau``, ``fraction``.
    """
    col = f"evals_to_{TARGET:g}"
    if trajectories.empty or col not in trajectories:
        return pd.DataFrame(columns=["integrator", "tau", "fraction"])
    costs = trajectories.groupby(["problem", "integrator"], observed=True).apply(
        expected_running_time, include_groups=False).unstack("integrator")
    best = costs.min(axis=1).replace(0, 1)
    ratios = costs.div(best, axis=0)
    ratios = ratios[np.isfinite(best)]  # problems no integrator solves carry no information
    taus = np.geomspace(1, 1e3, 61) if taus is None else taus
    rows = [{"integrator": integ, "tau": tau, "fraction": float((ratios[integ] <= tau).mean())}
            for integ in ratios.columns for tau in taus] if len(ratios) else []
    return pd.DataFrame(rows, columns=["integrator", "tau", "fraction"])


# -- figures ----------------------------------------------------------------------------------


def outcome_heatmap(trajectories: pd.DataFrame) -> plt.Figure:
    """Rate of reaching the global infimum, problem x integrator, annotated with the most
    frequent outcome."""
    rate = trajectories.assign(hit=trajectories["outcome"].astype(str).isin(GLOBAL)).pivot_table(
        index="problem", columns="integrator", values="hit", aggfunc="mean", observed=True)
    top = trajectories.groupby(["problem", "integrator"], observed=True)["outcome"].agg(
        lambda s: s.astype(str).value_counts().index[0]).unstack()
    labels = top.reindex_like(rate).apply(
        lambda col: col.map(lambda o: OUTCOME_ABBREVIATIONS.get(o, "")))
    fig, ax = plt.subplots(figsize=(1.2 * rate.shape[1] + 5, 0.35 * rate.shape[0] + 3),
                           layout="constrained")
    sns.heatmap(rate, annot=labels, fmt="", vmin=0, vmax=1, cmap="viridis", ax=ax,
                cbar_kws={"label": "rate of reaching the global infimum"})
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_title("Annotation: the most frequent outcome of each cell", fontsize=9)
    return fig


#: Abbreviations of the outcomes in the heatmap's annotations.
OUTCOME_ABBREVIATIONS = {o: "".join(w[0] for w in o.split("_")) for o in OUTCOMES}


def outcome_shares(trajectories: pd.DataFrame) -> plt.Figure:
    """Share of each outcome, per integrator (all problems pooled)."""
    shares = pd.crosstab(trajectories["integrator"], trajectories["outcome"].astype(str),
                         normalize="index").reindex(columns=[o for o in OUTCOMES], fill_value=0)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shares) + 1.8), layout="constrained")
    shares.plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.8)
    ax.set_xlabel("share of trajectories")
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    return fig


def _binned(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Checkpoints on a shared log grid of flow time (half-octave bins), for quantile bands."""
    cp = checkpoints[checkpoints["t"] > 0].copy()
    cp["t_bin"] = 2.0 ** (np.round(2 * np.log2(cp["t"])) / 2)
    return cp


def trajectory_bands(checkpoints: pd.DataFrame, problem: str, f_star: float) -> plt.Figure:
    """|x(t)| and f(t) - f_star against flow time: median and a quantile band per integrator."""
    cp = _binned(checkpoints[checkpoints["problem"] == problem])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, col, label in ((axes[0], "norm", "|x(t)|"), (axes[1], "f_gap", "f(t) - f_star")):
        values = cp[col].to_numpy(dtype=float)
        data = cp[np.isfinite(values) & (values > 0)]  # log axes: finite positive values only
        ax.set_xlabel("flow time t")
        ax.set_ylabel(label)
        if data.empty:
            ax.text(0.5, 0.5, "no finite positive values", ha="center", transform=ax.transAxes)
            continue
        grouped = data.groupby(["integrator", "t_bin"], observed=True)[col]
        # clip what is drawn (not the data): blow-ups reach 1e300, past what log axes can tick
        stats = grouped.quantile([BAND[0], 0.5, BAND[1]]).unstack().clip(*PLOT_RANGE)
        for integrator, sub in stats.groupby(level="integrator", observed=True):
            sub = sub.droplevel("integrator")
            line = ax.plot(sub.index, sub[0.5], label=str(integrator))[0]
            ax.fill_between(sub.index, sub[BAND[0]], sub[BAND[1]], alpha=0.2,
                            color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
    if not math.isfinite(f_star):
        axes[1].set_title("f_star = -inf: f - f_star is infinite", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{problem}: median and {BAND[0]:.0%}-{BAND[1]:.0%} band")
    return fig


def landscape(trajectories: pd.DataFrame, checkpoints: pd.DataFrame, problem: Any,
              integrator: str) -> plt.Figure:
    """A 2-D problem's contours with trajectories and initial points coloured by outcome."""
    traj = trajectories[(trajectories["problem"] == problem.name)
                        & (trajectories["integrator"] == integrator)]
    x0 = points(traj, "x0")
    cp = checkpoints[(checkpoints["problem"] == problem.name)
                     & (checkpoints["integrator"] == integrator)]
    lo = np.minimum(x0.min(axis=0), np.nanmin(cp[["x0", "x1"]].to_numpy(), axis=0)) - 0.5
    hi = np.maximum(x0.max(axis=0), np.nanmax(cp[["x0", "x1"]].to_numpy(), axis=0)) + 0.5
    lo, hi = np.maximum(lo, -12), np.minimum(hi, 12)
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    with np.errstate(all="ignore"):
        values = np.asarray(problem.f(np.stack([g0.ravel(), g1.ravel()], axis=1)))
    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    levels = np.quantile(values[np.isfinite(values)], np.linspace(0.02, 0.98, 25))
    ax.contour(g0, g1, values.reshape(g0.shape), levels=np.unique(levels), cmap="Greys",
               linewidths=0.6)
    palette = dict(zip(OUTCOMES, sns.color_palette("tab10", len(OUTCOMES)), strict=True))
    outcome = traj.set_index("traj")["outcome"].astype(str)
    shown = outcome.index[:MAX_TRAJECTORIES_DRAWN]
    for tid, path in cp[cp["traj"].isin(shown)].sort_values("step").groupby("traj"):
        ax.plot(path["x0"], path["x1"], color=palette[outcome[tid]], linewidth=0.8, alpha=0.7)
    for label, color in palette.items():
        mask = (traj["outcome"].astype(str) == label).to_numpy()
        if mask.any():
            ax.scatter(x0[mask, 0], x0[mask, 1], s=10, color=color, label=label, zorder=3)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(f"{problem.name}, {integrator}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def profile_figure(profile: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    if len(profile):
        sns.lineplot(profile, x="tau", y="fraction", hue="integrator", drawstyle="steps-post",
                     ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("tau (cost relative to the best integrator, oracle calls)")
    ax.set_ylabel(f"fraction of problems solved to f - f_star <= {TARGET:g}")
    ax.set_ylim(0, 1.02)
    return fig


# -- the HTML page ------------------------------------------------------------------------------


def _save(fig: plt.Figure, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(folder / f"{name}.{ext}", dpi=110)
    plt.close(fig)
    return f"figures/{name}.png"


def write_report(run: str | Path, out: str | Path | None = None,
                 registry: Any = None) -> Path:
    """Write ``index.html`` with the leaderboards and figures of a run; return its path.

    Parameters
    ----------
    run : path
        A run directory.
    out : path, optional
        Output folder (default: ``<run>/report``).
    registry : Registry, optional
        Used only to draw the contours of 2-D problems; loaded when not given.
    """
    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    figures = out / "figures"
    tables = load_results(run)
    traj, cp = tables["trajectories"], tables["checkpoints"]
    if traj.empty:
        raise ValueError(f"{run} has no finished cell yet: nothing to report")
    names = short_labels(sorted(traj["integrator"].astype(str).unique()))
    traj, cp = compact_labels(traj), compact_labels(cp) if len(cp) else cp
    sections: list[str] = [integrity_html(tables["cells"])]

    def table_html(frame: pd.DataFrame, caption: str) -> None:
        formatted = frame.to_html(float_format=lambda v: f"{v:.3g}", na_rep="-",
                                  classes="board", border=0)
        sections.append(f"<h3>{html.escape(caption)}</h3>{formatted}")

    def figure_html(fig: plt.Figure, name: str, caption: str) -> None:
        src = _save(fig, figures, name)
        sections.append(f'<figure><img src="{src}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)} "
                        f'(<a href="figures/{name}.svg">SVG</a>)</figcaption></figure>')

    sections.append("<h2>Leaderboards</h2>")
    table_html(leaderboard(traj, by_problem=False), "All problems pooled")
    profile = performance_profile(traj)
    figure_html(profile_figure(profile), "performance_profile",
                f"Dolan-More performance profiles (expected running time, in oracle calls, to "
                f"f - f_star <= {TARGET:g})")
    legend = ", ".join(f"{v} = {k}" for k, v in OUTCOME_ABBREVIATIONS.items())
    figure_html(outcome_heatmap(traj), "outcome_heatmap",
                f"Rate of reaching the global infimum, problem x integrator; {legend}")
    figure_html(outcome_shares(traj), "outcome_shares", "Outcomes per integrator")
    table_html(leaderboard(traj, by_problem=True), "Per problem")
    table_html(pd.DataFrame({"integrator": list(names.values()),
                             "full label (hyperparameters)": list(names.keys())}),
               "Integrators")
    verdicts_html(traj, sections, table_html)

    if registry is None:
        registry = load_registry(strict=False)
    sections.append("<h2>Trajectories</h2>")
    problems_meta = _manifest_problems(run)
    for i, name in enumerate(sorted(traj["problem"].astype(str).unique())):
        f_star = float(problems_meta.get(name, {}).get("f_star", math.nan))
        figure_html(trajectory_bands(cp, name, f_star), f"bands_{i:03d}",
                    f"{name}: |x(t)| and f(t) - f_star against flow time")
        problem = registry.problems.get(name)
        if problem is not None and problem.n == 2 and "x0" in cp:
            for j, integ in enumerate(sorted(traj[traj["problem"] == name]["integrator"]
                                             .astype(str).unique())):
                figure_html(landscape(traj, cp, problem, integ), f"landscape_{i:03d}_{j:02d}",
                            f"{name}, {integ}: trajectories and initial points by outcome")
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(_PAGE.format(title=html.escape(f"benchsuite report: {run.name}"),
                                 body="\n".join(sections)))
    return page


def verdicts_html(traj: pd.DataFrame, sections: list[str], table_html: Any) -> None:
    """The section on how far the labels can be trusted: rows cut by the wall-time safety net,
    the undetermined share and why, and the generic rules against the certificates."""
    sections.append("<h2>How far the labels can be trusted</h2>")
    notes = []
    if "stop" in traj:
        cut = int((traj["stop"].astype(str) == "wall_time").sum())
        if cut:
            notes.append(f"<p class=warn>{cut} trajectories were stopped by the wall-time "
                         "safety net: they are undetermined and carry no finding (the cut "
                         "depends on the machine). Rerun with a larger --wall-time.</p>")
    undecided = traj["outcome"].astype(str) == "undetermined"
    notes.append(f"<p>{int(undecided.sum())} of {len(traj)} trajectories "
                 f"({undecided.mean():.1%}) are undetermined: no rule found conclusive "
                 "evidence within the budget (<code>--extend N</code> re-runs them with the "
                 "budget doubled).</p>")
    sections.extend(notes)
    if undecided.any() and "reason" in traj:
        why = traj[undecided]["reason"].astype(str).str.removeprefix("undetermined: ")
        table_html(why.value_counts().rename_axis("missing evidence").to_frame("trajectories"),
                   "Why trajectories are undetermined")
    board = agreement(traj, by=("problem", "integrator"))
    if len(board):
        total = int(board["disagree"].sum())
        verdict = ("never contradict it" if total == 0 else
                   f"contradict it on {total} trajectories: a bug to report")
        sections.append(f"<p>Where a problem's exact certificate speaks, it is the truth; the "
                        f"generic rules alone (<code>generic_outcome</code>) {verdict}.</p>")
        table_html(board, "Generic rules against the certificates")


def integrity_html(cells: pd.DataFrame) -> str:
    """A warning at the top of the report for a run that is incomplete or damaged."""
    counts = cells["status"].value_counts()
    damaged, missing = int(counts.get("damaged", 0)), int(counts.get("missing", 0))
    if not damaged and not missing:
        return ""
    parts = []
    if missing:
        parts.append(f"{missing} of {len(cells)} cells are not finished: this report covers "
                     "part of the campaign (run the same command again to finish it)")
    if damaged:
        names = ", ".join(html.escape(k) for k in cells.loc[cells["status"] == "damaged",
                                                             "key"][:5])
        parts.append(f"{damaged} cells are damaged and left out ({names}); "
                     "<code>benchsuite verify</code> names them and a resume recomputes them")
    return "".join(f'<p class="warn">{p}.</p>' for p in parts)


def _manifest_problems(run: Path) -> dict[str, Any]:
    try:
        return RunStore(run).manifest().get("problems", {})
    except (OSError, ValueError):
        return {}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table.board {{ border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }}
table.board th, table.board td {{ padding: 2px 8px; border-bottom: 1px solid #ddd; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
figcaption {{ font-size: 12px; color: #444; }}
p.warn {{ background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.5em; }}
</style></head>
<body data-images-loaded="0"><h1>{title}</h1>
<p>Global rate: share of trajectories that reached the global infimum (converged_global or
escape_global), with 95% Wilson intervals. Costs are medians over trajectories that reached
f - f_star &lt;= target, on log-spaced checkpoints.</p>
{body}
<script>
// record how many figures the browser actually decoded (read by the report's browser test)
window.addEventListener("load", () => {{
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(document.images.length);
}});
</script>
</body></html>
"""
