"""The ``benchsuite`` command line: list, plugins, run, report.

Exit codes: 0 success; 1 the run finished but some trajectories failed with an error;
2 bad usage or bad input (unknown names, invalid hyperparameters: nothing was run);
3 a plugin failed to load in strict mode; 4 the results folder cannot be written.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
import pandas as pd

from benchsuite.campaign import (
    DEFAULT_CAMPAIGN_BUDGET,
    Campaign,
    CampaignAborted,
    CampaignError,
    campaign_from_dict,
    load_campaign,
    packaged_campaigns,
    plan,
    run_campaign,
)
from benchsuite.execution import SerialExecutor, default_executor
from benchsuite.harness import MAX_EXTEND
from benchsuite.observer import ProgressBar
from benchsuite.plugins import ENV_STRICT, PluginLoadError, Registry, env_flag, load_registry
from benchsuite.results import RunStore, load_results
from benchsuite.vocabulary import Outcome, Stop

EXIT_TRAJECTORY_ERRORS, EXIT_USAGE, EXIT_PLUGIN, EXIT_UNWRITABLE = 1, 2, 3, 4


class Context:
    def __init__(self, strict: bool | None, blocked: tuple[str, ...]) -> None:
        self.strict, self.blocked = strict, blocked
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            try:
                self._registry = load_registry(strict=self.strict, blocked=self.blocked)
            except PluginLoadError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_PLUGIN)
            for err in self._registry.errors:
                click.echo(f"warning: {err}", err=True)
        return self._registry


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=__doc__)
@click.version_option(package_name="benchsuite")
@click.option("--strict/--no-strict", default=None,
              help="Stop at the first plugin that fails to load, and at the first trajectory "
                   f"that raises (default: ${ENV_STRICT}).")
@click.option("--no-plugin", "blocked", multiple=True, metavar="NAME",
              help="Do not load this plugin (entry-point or distribution name); repeatable. "
                   "BENCHSUITE_PLUGINS=a,b loads only those.")
@click.pass_context
def main(ctx: click.Context, strict: bool | None, blocked: tuple[str, ...]) -> None:
    """Do (sub)gradient trajectories stay bounded and reach a global minimum?

    Cross-runs every integrator on every problem from the same seeded initial points.
    """
    ctx.obj = Context(strict, blocked)


@main.command("list")
@click.option("-v", "--verbose", is_flag=True, help="All metadata of each problem.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_cmd(obj: Context, verbose: bool, as_json: bool) -> None:
    """List problems and integrators, with the plugin that provides each."""
    reg = obj.registry
    problems = []
    for name, p in reg.problems.items():
        src = reg.origin("problem", name)
        row = {"name": name, "plugin": src.name, "distribution": src.distribution,
               "description": p.summary()}
        problems.append({**row, **p.details()} if verbose else row)
    integrators = []
    for name, i in reg.integrators.items():
        src = reg.origin("integrator", name)
        integrators.append({"name": name, "plugin": src.name, "distribution": src.distribution,
                            "description": i.summary(), "requires": sorted(i.requires),
                            "order": i.order, "adaptive": i.adaptive, "params": i.params})
    if as_json:
        click.echo(json.dumps({"problems": problems, "integrators": integrators}, indent=2,
                              default=str))
        return
    click.echo(f"Problems ({len(problems)}):")
    for row in problems:
        click.echo(f"  {row['name']}  [{row['plugin']} / {row['distribution']}]")
        click.echo(f"      {row['description']}")
        if verbose:
            for key, value in reg.problems[row["name"]].details().items():
                if key not in ("name",) and value not in ({}, [], "", None):
                    click.echo(f"      {key}: {value}")
    click.echo(f"Integrators ({len(integrators)}):")
    for row in integrators:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        click.echo(f"  {row['name']}({params})  [{row['plugin']} / {row['distribution']}]")
        click.echo(f"      {row['description']}")


@main.command("plugins")
@click.pass_obj
def plugins_cmd(obj: Context) -> None:
    """List plugins: name, distribution, version, status and any load error."""
    reg = obj.registry
    for p in reg.plugins:
        click.echo(f"{p.name:<28} {p.distribution} {p.version:<10} {p.status:<11} {p.module}")
        if p.error:
            click.echo(f"    {p.error}")
    for err in reg.errors:
        if err.stage != "import":
            click.echo(f"error in {err}")


def _run_id(campaign: Campaign) -> str:
    blob = json.dumps(asdict(campaign), sort_keys=True, default=str).encode()
    return "run-" + hashlib.sha256(blob).hexdigest()[:10]


@main.command("run")
@click.option("-c", "--campaign", "campaign_file", metavar="FILE|NAME",
              help="A TOML campaign file, or a packaged one by name ("
                   + ", ".join(packaged_campaigns())
                   + "); options given on the command line override it.")
@click.option("-p", "--problem", "problems", multiple=True, metavar="GLOB",
              help="Problems to run (glob, repeatable). Default: all.")
@click.option("-i", "--integrator", "integrators", multiple=True, metavar="SPEC",
              help="Integrators: NAME, NAME(h=0.1) or a grid NAME(h=[0.1, 0.01]); repeatable. "
                   "Default: all, with default hyperparameters.")
@click.option("-n", "--n-points", type=int, default=Campaign.n_points, show_default=True,
              help="Initial points (trajectories) per problem.")
@click.option("--seed", type=int, default=Campaign.seed, show_default=True,
              help="Root seed of the initial points.")
@click.option("--t-max", type=float, default=DEFAULT_CAMPAIGN_BUDGET.t_max, show_default=True,
              help="Flow-time budget.")
@click.option("--max-steps", type=int, default=DEFAULT_CAMPAIGN_BUDGET.max_steps, show_default=True,
              help="Step budget.")
@click.option("--max-evals", type=int, default=None, help="Oracle-call budget per trajectory.")
@click.option("--wall-time", type=float, default=DEFAULT_CAMPAIGN_BUDGET.wall_time,
              show_default=True,
              help="Safety net, seconds per cell: rows it stops are undetermined, and a cell is "
                   "killed at twice this plus a minute. Results never depend on it unless reached.")
@click.option("--extend", type=click.IntRange(0, MAX_EXTEND), default=None,
              help="Re-run trajectories left undetermined with every deterministic budget "
                   "doubled, at most this many times (default 0).")
@click.option("--certificates/--no-certificates", default=None,
              help="Let problems' exact certificates decide where they speak (default), or "
                   "classify with the generic rules only.")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(),
              help="Where run folders go.")
@click.option("--run-id", default=None,
              help="Run folder name (default: a hash of the campaign, so the same command "
                   "resumes).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Finish an interrupted run: its campaign is read from its manifest.")
@click.option("-j", "--workers", type=int, default=None,
              help="Cells run in parallel (default: the number of cores; 1 runs in-process).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@click.pass_context
def run_cmd(ctx: click.Context, campaign_file, problems, integrators, n_points, seed, t_max,
            max_steps, max_evals, wall_time, extend, certificates, results_dir, run_id,
            resume_dir, workers, progress) -> None:
    """Run a campaign; with no options, the default one on the built-in catalog.

    Results go to RESULTS_DIR/RUN_ID/ (parquet tables and a manifest); finished cells of an
    earlier run of the same campaign are kept and skipped.
    """
    obj: Context = ctx.obj
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    try:
        if resume_dir is not None:
            manifest = RunStore(resume_dir).manifest()
            base = campaign_from_dict(manifest["campaign"], source=f"{resume_dir}/manifest.json")
            run_dir = Path(resume_dir)
        else:
            base = load_campaign(campaign_file) if campaign_file else Campaign()
            run_dir = None
        changes: dict[str, Any] = {}
        if "problems" in given:
            changes["problems"] = problems
        if "integrators" in given:
            changes["integrators"] = integrators
        if "n_points" in given:
            changes["n_points"] = n_points
        if "seed" in given:
            changes["seed"] = seed
        if "certificates" in given:
            changes["certificates"] = certificates
        budget_changes = {k: v for k, v in (("t_max", t_max), ("max_steps", max_steps),
                                            ("max_evals", max_evals), ("wall_time", wall_time),
                                            ("extend", extend))
                          if k in given}
        if budget_changes:
            changes["budget"] = replace(base.budget, **budget_changes)
        campaign = replace(base, **changes)
        plan(obj.registry, campaign)  # validate every name before any work starts
    except (CampaignError, ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc
    if run_dir is None:
        run_dir = Path(results_dir) / (run_id or _run_id(campaign))
    executor = SerialExecutor() if workers == 1 else default_executor(workers)
    strict = env_flag(ENV_STRICT) if obj.strict is None else obj.strict
    try:
        store = run_campaign(campaign, obj.registry, run_dir, executor=executor, strict=strict,
                             observers=[ProgressBar(disable=None if progress is None
                                                    else not progress)])
    except PermissionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNWRITABLE)
    except CampaignAborted as exc:
        click.echo(f"error: {exc}\nfinished cells are kept in {run_dir}; run the same "
                   "command again to resume", err=True)
        sys.exit(EXIT_TRAJECTORY_ERRORS)
    tables = load_results(store.path)
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        click.echo(summarize(tables).to_string())
    for line in verdict_notes(tables["trajectories"], campaign):
        click.echo(line, err=True)
    click.echo(f"\nresults: {store.path}\nreport:  benchsuite report {store.path}")
    if (tables["trajectories"].get("stop", pd.Series()) == "error").any():
        sys.exit(EXIT_TRAJECTORY_ERRORS)


def summarize(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per problem and integrator: how many trajectories ended in each outcome, and medians."""
    traj = tables["trajectories"]
    if traj.empty:
        return pd.DataFrame()
    keys = ["problem", "integrator"]
    counts = pd.crosstab([traj[k] for k in keys], traj["outcome"].astype(str))
    med = traj.groupby(keys, observed=True).agg(
        median_f_gap=("f_gap", "median"), median_norm=("norm", "median"),
        max_norm=("max_norm", "max"))
    return counts.join(med)


def verdict_notes(traj: pd.DataFrame, campaign: Campaign) -> list[str]:
    """What the user should know about the labels of a run: rows cut by the wall-time safety
    net (not findings), and the undetermined share, each with what to do about it."""
    if traj.empty or "stop" not in traj:
        return []
    notes = []
    cut = int((traj["stop"] == Stop.WALL_TIME).sum())
    if cut:
        notes.append(
            f"note: {cut} of {len(traj)} trajectories were stopped by the wall-time safety net "
            f"({campaign.budget.wall_time:g} s per cell) and are undetermined: that depends on "
            "the machine, not on the trajectory. Raise --wall-time or lower --t-max/--max-steps "
            "so that the deterministic budgets end every run.")
    undecided = int((traj["outcome"].astype(str) == Outcome.UNDETERMINED).sum())
    if undecided:
        hint = ("" if campaign.budget.extend >= MAX_EXTEND else
                "; --extend N re-runs them with the budget doubled up to N times")
        notes.append(f"note: {undecided} of {len(traj)} trajectories are undetermined (no "
                     f"conclusive evidence within the budget){hint}")
    return notes


@main.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN/report).")
@click.pass_obj
def report_cmd(obj: Context, run: str, out: str | None) -> None:
    """Leaderboards and figures of a finished run, as an HTML page (never re-runs anything)."""
    # imported here: matplotlib and seaborn would slow down every other command's start
    from benchsuite.report import compact_labels, leaderboard, write_report

    try:
        tables = load_results(run)
        page = write_report(run, out, registry=obj.registry)
    except (FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    with pd.option_context("display.width", 200, "display.max_rows", 200,
                           "display.float_format", "{:.3g}".format):
        board = leaderboard(compact_labels(tables["trajectories"]), by_problem=False)
        click.echo(board.to_string())
    click.echo(f"\nreport: {page}")


def entry(argv: list[str] | None = None) -> Any:
    """Run the CLI without exiting the interpreter (for tests)."""
    return main.main(args=argv, standalone_mode=False)
