"""The ``benchsuite`` command line: list, plugins, run, verify, report.

Exit codes, one meaning each:

- 0: success.
- 1: the run finished but some trajectories failed with an error (``verify``: damaged cells).
- 2: bad usage or input, refused before any work: unknown names, invalid values, a grid too
  large without ``--yes``, a run folder holding another campaign or locked by another run.
- 3: a plugin failed to load in strict mode.
- 4: the disk refused a write (full, read-only, no permission); finished cells are kept.
- 130: interrupted (Ctrl-C, SIGTERM, SIGHUP); finished cells are kept, and running the same
  command again resumes.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from dataclasses import replace
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
from benchsuite.execution import Interrupted, SerialExecutor, default_executor
from benchsuite.fingerprint import digest, fingerprint
from benchsuite.harness import MAX_EXTEND
from benchsuite.observer import ProgressBar
from benchsuite.plugins import ENV_STRICT, PluginLoadError, Registry, env_flag, load_registry
from benchsuite.results import (
    CampaignMismatch,
    FolderBusy,
    RunStore,
    StoreWriteError,
    disk_full,
    load_results,
    verify_run,
)
from benchsuite.vocabulary import Outcome, Stop

EXIT_TRAJECTORY_ERRORS, EXIT_USAGE, EXIT_PLUGIN, EXIT_UNWRITABLE = 1, 2, 3, 4
EXIT_INTERRUPTED = 130
#: Campaigns with more cells, or more trajectories in all, need ``--yes``.
CONFIRM_CELLS, CONFIRM_TRAJECTORIES = 2_000, 50_000_000
#: Run ids follow the alphabet of cell names: no separators, no leading dot, no '..'.
_RUN_ID = re.compile(r"^[A-Za-z0-9_=,+\-][A-Za-z0-9_.=,+\-]{0,119}$")


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


class _Group(click.Group):
    """SIGTERM and SIGHUP are handled like Ctrl-C, and any of them ends a command with exit 130
    and a word (click's own handling says "Aborted!" with exit 1, the code of failed
    trajectories)."""

    def invoke(self, ctx: click.Context) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM,
                                                                    signal.SIGHUP)
                    } if main_thread else {}
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            click.echo(f"\ninterrupted by {getattr(exc, 'signal', 'SIGINT')}", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        finally:
            for sig, previous in handlers.items():
                signal.signal(sig, previous)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=__doc__)
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


def _check_run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not _RUN_ID.match(value) or ".." in value):
        raise click.BadParameter(
            f"{value!r} is not a safe folder name: use letters, digits and _ . = , + - (at "
            "most 120, not starting with a dot, no '..'); --results-dir chooses where it goes")
    return value


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _echo_interrupted(exc: KeyboardInterrupt, run_dir: Path) -> None:
    name = getattr(exc, "signal", "SIGINT")
    click.echo(f"\ninterrupted by {name}: finished cells are kept in {run_dir}; run the same "
               "command again to resume", err=True)


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
@click.option("--run-id", default=None, callback=_check_run_id,
              help="Run folder name (default: a hash of the campaign's fingerprint, so the "
                   "same command resumes).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Finish an interrupted run: its campaign is read from its manifest.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Cells run in parallel, each in its own process (default: one per core).")
@click.option("--in-process", is_flag=True,
              help="Debugging only: run cells one by one in this process, with NO containment "
                   "(a crashing or hanging oracle takes the run with it; no hard time limit).")
@click.option("--wait", is_flag=True,
              help="If another run holds the run folder, wait for it instead of refusing.")
@click.option("-y", "--yes", is_flag=True,
              help=f"Start campaigns larger than {CONFIRM_CELLS} cells or "
                   f"{CONFIRM_TRAJECTORIES:.0e} trajectories without refusing.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@click.pass_context
def run_cmd(ctx: click.Context, campaign_file, problems, integrators, n_points, seed, t_max,
            max_steps, max_evals, wall_time, extend, certificates, results_dir, run_id,
            resume_dir, workers, in_process, wait, yes, progress) -> None:
    """Run a campaign; with no options, the default one on the built-in catalog.

    Results go to RESULTS_DIR/RUN_ID/ (parquet tables and a manifest); finished cells of an
    earlier run of the same campaign are kept and skipped.
    """
    obj: Context = ctx.obj
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    try:
        if resume_dir is not None:
            clash = sorted({"campaign_file", "run_id", "results_dir"} & given)
            if clash:
                raise CampaignError(
                    "--resume takes the campaign and the folder from RUN; it cannot be combined "
                    "with " + ", ".join({"campaign_file": "--campaign", "run_id": "--run-id",
                                         "results_dir": "--results-dir"}[c] for c in clash))
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
        cells = plan(obj.registry, campaign)  # validate every name before any work starts
    except (CampaignError, ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc
    trajectories = len(cells) * campaign.n_points
    if not yes and (len(cells) > CONFIRM_CELLS or trajectories > CONFIRM_TRAJECTORIES):
        raise click.UsageError(
            f"this campaign has {len(cells)} cells and {trajectories} trajectories, more than "
            f"{CONFIRM_CELLS} cells or {CONFIRM_TRAJECTORIES:.0e} trajectories: check the "
            "problem globs and integrator grids, and pass --yes to start it anyway")
    if run_dir is None:
        print_ = fingerprint(campaign, obj.registry, cells)
        run_dir = Path(results_dir) / (run_id or f"run-{digest(print_)[:10]}")
    executor = SerialExecutor() if in_process else default_executor(workers)
    strict = env_flag(ENV_STRICT) if obj.strict is None else obj.strict
    try:
        store = run_campaign(campaign, obj.registry, run_dir, executor=executor, strict=strict,
                             wait=wait, observers=[ProgressBar(disable=None if progress is None
                                                               else not progress)])
    except (CampaignMismatch, FolderBusy) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except StoreWriteError as exc:
        what = "free some space or choose" if disk_full(exc) else "choose"
        click.echo(f"error: {exc}\nfinished cells are kept in {run_dir}; {what} another "
                   "--results-dir, then run the same command again to resume", err=True)
        sys.exit(EXIT_UNWRITABLE)
    except KeyboardInterrupt as exc:
        _echo_interrupted(exc, run_dir)
        sys.exit(EXIT_INTERRUPTED)
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


@main.command("verify")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify_cmd(run: str, as_json: bool) -> None:
    """Check every cell of a run folder against its checksums and its campaign.

    Exit 0 when intact (unfinished cells are listed: incomplete is not damaged), 1 naming
    each damaged cell, 2 when RUN is not a readable run folder.
    """
    try:
        checks = verify_run(run)
    except CampaignMismatch as exc:
        raise click.UsageError(str(exc)) from exc
    damaged = [c for c in checks if c.status == "damaged"]
    missing = [c for c in checks if c.status == "missing"]
    if as_json:
        click.echo(json.dumps({"run": run, "intact": not damaged,
                               "cells": [vars(c) for c in checks]}, indent=2))
    else:
        click.echo(f"{run}: {len(checks)} cells: {len(checks) - len(damaged) - len(missing)} "
                   f"intact, {len(missing)} not finished, {len(damaged)} damaged")
        for c in damaged:
            click.echo(f"  damaged  {c.key}  ({c.problem} x {c.integrator}): {c.detail}")
        for c in missing:
            click.echo(f"  missing  {c.key}  ({c.problem} x {c.integrator})")
        if damaged:
            click.echo("a resume of the run moves damaged cells aside and recomputes them")
    sys.exit(EXIT_TRAJECTORY_ERRORS if damaged else 0)


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
    except ValueError as exc:  # not a run folder, or nothing finished yet
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        click.echo(f"error: cannot write the report: {exc.strerror or exc} "
                   f"({getattr(exc, 'filename', None) or out or run}); write it elsewhere "
                   "with -o DIR", err=True)
        sys.exit(EXIT_UNWRITABLE)
    with pd.option_context("display.width", 200, "display.max_rows", 200,
                           "display.float_format", "{:.3g}".format):
        board = leaderboard(compact_labels(tables["trajectories"]), by_problem=False)
        click.echo(board.to_string())
    click.echo(f"\nreport: {page}")


def entry(argv: list[str] | None = None) -> Any:
    """Run the CLI without exiting the interpreter (for tests)."""
    return main.main(args=argv, standalone_mode=False)
