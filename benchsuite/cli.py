"""The ``benchsuite`` command line: list, plugins, run, runs, verify, report, compare.

Output: results on stdout, fitted to 100 columns; progress, notes and warnings on stderr. An
error reads ``error: <what went wrong>``, followed where it helps by ``hint: <what to do>``; a
warning reads ``warning: ...`` (each on one line, for grep). ``-q`` prints only errors and the
result (a path), ``-v`` adds detail. ``--json`` prints one strict-JSON object on stdout
(non-finite numbers written as "inf", "-inf", "nan"). Progress: a bar on a terminal, a plain
line every 30 s otherwise ($BENCHSUITE_PROGRESS_INTERVAL seconds); --no-progress silences it.

Exit codes, one meaning each:

\b
- 0: success.
- 1: the run finished but some trajectories failed with an error (``verify``: damaged cells;
  ``compare``: a significant regression).
- 2: bad usage or input, refused before any work: unknown names, invalid values, a campaign
  with nothing to run, a grid too large without ``--yes``, a run folder holding another
  campaign or locked by another run.
- 3: a plugin failed to load in strict mode.
- 4: the disk refused a write (full, read-only, no permission); finished cells are kept.
- 130: interrupted (Ctrl-C, SIGTERM, SIGHUP); finished cells are kept, and running the same
  command again resumes.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import signal
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import pandas as pd

from benchsuite import jsonio
from benchsuite.backends import BACKENDS, Backend, BackendError, skip_reason
from benchsuite.campaign import (
    DEFAULT_CAMPAIGN_BUDGET,
    Campaign,
    CampaignAborted,
    CampaignError,
    Cell,
    WorkersRefused,
    campaign_from_dict,
    check_backend,
    load_campaign,
    make_executor,
    packaged_campaigns,
    plan,
    run_campaign,
)
from benchsuite.execution import ExecutorUnavailable, Interrupted, SerialExecutor
from benchsuite.fingerprint import digest, fingerprint
from benchsuite.harness import MAX_EXTEND
from benchsuite.labels import display_names, renamed
from benchsuite.observer import ENV_INTERVAL, ProgressBar, ProgressLog, outcome_phrase
from benchsuite.plugins import (
    ENV_ALLOW,
    ENV_STRICT,
    PluginLoadError,
    Registry,
    UnknownPluginName,
    check_plugin_names,
    env_flag,
    load_registry,
)
from benchsuite.results import (
    CampaignMismatch,
    CellCheck,
    FolderBusy,
    RunStore,
    StoreWriteError,
    disk_full,
    load_results,
    verify_run,
)
from benchsuite.runs import (
    RunSummary,
    latest_run,
    list_runs,
    local_time,
    scan_run,
    summarize_run,
    writer,
)
from benchsuite.vocabulary import Outcome, Stop

EXIT_TRAJECTORY_ERRORS, EXIT_USAGE, EXIT_PLUGIN, EXIT_UNWRITABLE = 1, 2, 3, 4
EXIT_INTERRUPTED = 130
EXIT_MEANINGS = {
    0: "success",
    EXIT_TRAJECTORY_ERRORS: "the run finished, but some trajectories failed with an error",
    EXIT_USAGE: "bad usage or input, refused before any work",
    EXIT_PLUGIN: "a plugin failed to load in strict mode",
    EXIT_UNWRITABLE: "the disk refused a write; finished cells are kept",
    EXIT_INTERRUPTED: "interrupted; finished cells are kept",
}
#: Campaigns with more cells, or more trajectories in all, need ``--yes``.
CONFIRM_CELLS, CONFIRM_TRAJECTORIES = 2_000, 50_000_000
#: Run ids follow the alphabet of cell names: no separators, no leading dot, no '..'.
_RUN_ID = re.compile(r"^[A-Za-z0-9_=,+\-][A-Za-z0-9_.=,+\-]{0,119}$")
#: The widest line the commands print (tables are fitted to it; paths may exceed it).
WIDTH = 100
#: Standalone figure files the report can write besides the page (``--figures``).
FIGURE_FORMATS = ("png", "svg", "pdf")


# -- one style for messages ------------------------------------------------------------------

class CliError(click.ClickException):
    """An error shown as ``error: <message>`` and, when given, ``hint: <what to do>``; with
    ``as_json`` (the command line had ``--json``) also as one strict-JSON object on stdout,
    ``{"error": ..., "hint": ..., "exit_status": ...}``."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None,
                 exit_code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.as_json = False
        if exit_code is not None:
            self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        if self.as_json:
            echo_json({"error": self.message, "hint": self.hint, "exit_status": self.exit_code,
                       "exit_meaning": EXIT_MEANINGS.get(self.exit_code)})
        error(self.message, self.hint)


def _wrap(text: str, prefix: str = "") -> str:
    return textwrap.fill(prefix + text, WIDTH, subsequent_indent="  ", break_on_hyphens=False,
                         break_long_words=False)


def _fill(text: str, first: str = "", rest: str = "  ") -> str:
    """``text`` wrapped to 100 columns, indented: never wider (a word too long is broken)."""
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False)


def _count(n: int, noun: str) -> str:
    """``1 cell``, ``2 cells``, ``1 trajectory``, ``0 trajectories``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _of(part: int, total: int, noun: str, verb: str = "") -> str:
    """``1 of 64 trajectories is``, ``3 of 64 trajectories are``, ``0 of 1 cell``: the noun
    agrees with the total, the verb (``is``/``was``) with the part."""
    verbs = {"is": "are", "was": "were", "has": "have"}
    word = verb if part == 1 or not verb else verbs.get(verb, verb)
    return f"{part} of {_count(total, noun)}" + (f" {word}" if verb else "")


def error(message: str, hint: str | None = None) -> None:
    """``error: ...`` (and ``hint: ...``) on stderr, each on one line (logs stay greppable)."""
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def warn(message: str, hint: str | None = None) -> None:
    """``warning: ...`` (and ``hint: ...``) on stderr, each on one line."""
    click.echo(f"warning: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def _wants_json(args: Sequence[str]) -> bool:
    """Whether a command line asks for ``--json`` (before any ``--``)."""
    args = list(args)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _restyled(exc: click.ClickException, as_json: bool = False) -> CliError:
    """A click error (bad option value, unknown option) in our style, exit code kept; with
    ``as_json``, also shown as JSON on stdout."""
    if isinstance(exc, CliError):
        exc.as_json = exc.as_json or as_json
        return exc
    message = exc.format_message()
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    hint = None
    if isinstance(exc, click.UsageError):
        hint = f"see '{ctx.command_path if ctx is not None else 'benchsuite'} --help'"
    restyled = CliError(message, hint, exit_code=exc.exit_code)
    restyled.as_json = as_json
    return restyled


def _format_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    ours = category.__module__.startswith("benchsuite")
    return f"warning: {message if ours else f'{category.__name__}: {message}'}\n"


class Context:
    def __init__(self, strict: bool | None, blocked: tuple[str, ...]) -> None:
        self.strict, self.blocked = strict, blocked
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            try:
                check_plugin_names(self.blocked)
            except UnknownPluginName as exc:
                hint = ("--no-plugin takes an entry-point or distribution name, as "
                        "'benchsuite plugins' lists them" if exc.source != ENV_ALLOW else
                        f"correct {ENV_ALLOW}, or unset it to load every installed plugin")
                raise CliError(str(exc), hint) from None
            try:
                self._registry = load_registry(strict=self.strict, blocked=self.blocked)
            except PluginLoadError as exc:
                raise CliError(str(exc), exit_code=EXIT_PLUGIN) from None
            for err in self._registry.errors:
                warn(str(err))
        return self._registry


_JSON_META = "benchsuite.json"


class _Group(click.Group):
    """Errors in one style (click's own usage errors included); SIGTERM and SIGHUP handled
    like Ctrl-C, any of them ending a command with exit 130 and a word (click's own handling
    says "Aborted!" with exit 1, the code of failed trajectories)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        as_json = _wants_json(args)  # a refusal is then JSON on stdout too
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _restyled(exc, as_json) from None
        ctx.meta[_JSON_META] = as_json
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM,
                                                                    signal.SIGHUP)
                    } if main_thread else {}
        formatter, warnings.formatwarning = warnings.formatwarning, _format_warning
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise _restyled(exc, ctx.meta.get(_JSON_META, False)) from None
        except KeyboardInterrupt as exc:
            click.echo(f"\ninterrupted by {getattr(exc, 'signal', 'SIGINT')}", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        finally:
            warnings.formatwarning = formatter
            for sig, previous in handlers.items():
                signal.signal(sig, previous)


def verbosity_options(verbose_help: str, quiet_help: str
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-v/--verbose`` and ``-q/--quiet`` (both countable), passed to the command as one
    ``verbosity`` (verbose minus quiet: 0 by default, < 0 quiet, > 0 verbose)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, verbose: int = 0, quiet: int = 0, **kwargs: Any) -> Any:
            return fn(*args, verbosity=verbose - quiet, **kwargs)

        wrapper = click.option("-q", "--quiet", count=True, help=quiet_help)(wrapper)
        return click.option("-v", "--verbose", count=True, help=verbose_help)(wrapper)

    return decorate


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="One strict-JSON object on stdout (non-finite numbers as "
                             "\"inf\", \"nan\").")(fn)


def echo_json(data: Any) -> None:
    click.echo(jsonio.dumps(data, indent=2))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=__doc__)
@click.version_option(package_name="benchsuite")
@click.option("--strict/--no-strict", default=None,
              help="Stop at the first plugin that fails to load, and at the first trajectory "
                   f"that raises (default: ${ENV_STRICT}).")
@click.option("--no-plugin", "blocked", multiple=True, metavar="NAME",
              help="Do not load this plugin (entry-point or distribution name); repeatable. "
                   f"{ENV_ALLOW}=a,b loads only those. Names that match no installed plugin "
                   "are refused.")
@click.pass_context
def main(ctx: click.Context, strict: bool | None, blocked: tuple[str, ...]) -> None:
    """Do (sub)gradient trajectories stay bounded and reach a global minimum?

    Cross-runs every integrator on every problem from the same seeded initial points.
    """
    ctx.obj = Context(strict, blocked)


# -- list, plugins ---------------------------------------------------------------------------

@main.command("list")
@click.option("-v", "--verbose", is_flag=True, help="All metadata of each problem.")
@_json_option
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
        echo_json({"problems": problems, "integrators": integrators})
        return
    # every line fitted to 100 columns: long names and descriptions wrap, indented
    click.echo(f"Problems ({len(problems)}):")
    for row in problems:
        click.echo(_fill(f"{row['name']}  [{row['plugin']} / {row['distribution']}]", "  ",
                         "      "))
        click.echo(_fill(row["description"], "      ", "      "))
        if verbose:
            for key, value in reg.problems[row["name"]].details().items():
                if key not in ("name",) and value not in ({}, [], "", None):
                    click.echo(_fill(f"{key}: {value}", "      ", "        "))
    click.echo(f"Integrators ({len(integrators)}):")
    for row in integrators:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        click.echo(_fill(f"{row['name']}({params})  [{row['plugin']} / {row['distribution']}]",
                         "  ", "      "))
        click.echo(_fill(row["description"], "      ", "      "))


@main.command("plugins")
@_json_option
@click.pass_obj
def plugins_cmd(obj: Context, as_json: bool) -> None:
    """List plugins: name, distribution, version, status and any load error."""
    reg = obj.registry
    if as_json:
        echo_json({"plugins": [vars(p) for p in reg.plugins],
                   "executors": [{"name": name, "description": getattr(x, "description", ""),
                                  "plugin": reg.source[("executor", name)].name}
                                 for name, x in reg.executors.items()],
                   "errors": [{"plugin": e.plugin.name, "distribution": e.plugin.distribution,
                               "stage": e.stage, "error": e.error} for e in reg.errors]})
        return
    rows = [[p.name, p.distribution, str(p.version), p.status, p.module] for p in reg.plugins]
    lines, _ = text_table(["plugin", "distribution", "version", "status", "module"], rows,
                          shrink=(4, 0, 1))
    click.echo(lines[0])
    for p, line in zip(reg.plugins, lines[1:], strict=True):
        click.echo(line)
        if p.error:
            click.echo(_fill(f"error: {p.error}", "    ", "      "))
    for err in reg.errors:
        if err.stage != "import":
            click.echo(f"error: {err}")
    if reg.executors:
        click.echo("\nexecutors (--executor NAME):")
        for name, plugin in reg.executors.items():
            click.echo(_fill(f"{name}: {getattr(plugin, 'description', '')}", "  ", "    "))


# -- check, new-plugin: the plugin author kit ------------------------------------------------

@main.command("check")
@click.argument("names", nargs=-1, metavar="[NAME|GLOB]...")
@click.option("--plugin", default=None, metavar="NAME",
              help="Only this plugin's problems and integrators (entry-point or distribution "
                   "name, as 'benchsuite plugins' lists them).")
@click.option("--slow", is_flag=True,
              help="Also run the slow checks (critical values reached by long descents).")
@click.option("--list-checks", is_flag=True, help="Print the table of checks and exit.")
@verbosity_options(verbose_help="Every finding, passes and skips included.",
                   quiet_help="Only failures, warnings and the summary line.")
@_json_option
@click.pass_obj
def check_cmd(obj: Context, names: tuple[str, ...], plugin: str | None, slow: bool,
              list_checks: bool, verbosity: int, as_json: bool) -> None:
    """Check installed problems and integrators against benchsuite's contracts.

    Runs the plugin kit (benchsuite.testing) on every registered problem and integrator, or
    on those matching NAME|GLOB, or on one --plugin: gradients against finite differences,
    rows independent, pure steps, declared orders and stability limits, certificates, f_star.
    Exit 0 when nothing fails (warnings allowed), 1 when a check fails, 2 on bad usage.
    """
    from benchsuite.testing import Severity, check_installed, describe_checks

    if list_checks:
        if names or plugin:
            raise CliError("--list-checks takes no NAME or --plugin: it lists the checks "
                           "themselves", "run 'benchsuite check NAME' to check NAME")
        table = describe_checks()
        if as_json:
            echo_json({"checks": table})
            return
        for row in table:
            slow_note = " (slow)" if row["slow"] else ""
            click.echo(_fill(f"{row['kind']:<10s} {row['check']}{slow_note}: {row['verifies']}",
                             rest=" " * 11))
        return
    try:
        findings = check_installed(obj.registry, patterns=names, plugin=plugin, slow=slow)
    except LookupError as exc:
        raise CliError(exc.args[0], "'benchsuite list' names the problems and "
                       "integrators, 'benchsuite plugins' the plugins") from None
    counts = {s: sum(f.severity == s for f in findings) for s in Severity}
    if as_json:
        echo_json({"ok": counts[Severity.FAIL] == 0,
                   "counts": {str(s): n for s, n in counts.items()},
                   "findings": [{"subject": f.subject, "kind": f.kind, "check": f.check,
                                 "severity": str(f.severity), "message": f.message}
                                for f in findings]})
    else:
        _echo_findings(findings, verbosity)
        subjects = len({(f.kind, f.subject) for f in findings})
        click.echo(f"{_count(subjects, 'subject')}, {_count(len(findings), 'check')}: "
                   f"{counts[Severity.PASS]} passed, {counts[Severity.SKIP]} skipped, "
                   f"{_count(counts[Severity.WARN], 'warning')}, "
                   f"{_count(counts[Severity.FAIL], 'failure')}")
    if counts[Severity.FAIL]:
        sys.exit(EXIT_TRAJECTORY_ERRORS)


def _echo_findings(findings: list[Any], verbosity: int) -> None:
    """One row per subject with its counts, then a line per failure and warning (per finding
    with -v)."""
    from benchsuite.testing import Severity

    order: dict[tuple[str, str], dict[Severity, int]] = {}
    for f in findings:
        order.setdefault((f.kind, f.subject), dict.fromkeys(Severity, 0))[f.severity] += 1
    if verbosity >= 0:
        rows = [[subject, kind, *(str(c[s]) for s in Severity)]
                for (kind, subject), c in order.items()]
        lines, _ = text_table(["subject", "kind", *map(str, Severity)], rows,
                              right=(2, 3, 4, 5), shrink=(0,), min_width=24)
        for line in lines:
            click.echo(line)
    shown = [f for f in findings if verbosity > 0 or f.severity in (Severity.WARN,
                                                                     Severity.FAIL)]
    if shown and verbosity >= 0:
        click.echo("")
    for f in shown:
        click.echo(_fill(f"{f.severity}  {f.subject}: {f.check}: {f.message}", rest="      "))


@main.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to create the package folder benchsuite-NAME.")
def new_plugin_cmd(name: str, directory: str) -> None:
    """Write a ready plugin package: a problem, an integrator, an observer, tests, a README.

    NAME (lowercase letters, digits, underscores) becomes the entry point, the package
    benchsuite_NAME and the distribution benchsuite-NAME. Install it with pip install -e, run
    its tests with pytest, and check it with benchsuite check --plugin benchsuite-NAME.
    """
    from benchsuite.scaffold import write_plugin

    try:
        target = write_plugin(name, directory)
    except ValueError as exc:
        raise CliError(str(exc), "for example: benchsuite new-plugin my_methods") from None
    except FileExistsError as exc:
        raise CliError(str(exc), "choose another NAME or --dir, or remove the folder") from None
    except OSError as exc:
        raise CliError(f"cannot write {directory}: {exc.strerror or exc}",
                       exit_code=EXIT_UNWRITABLE) from None
    click.echo(str(target))
    click.echo(f"next: pip install -e '{target}[test]' && pytest {target} && "
               f"benchsuite check --plugin {target.name}", err=True)


# -- run -------------------------------------------------------------------------------------

def _check_run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not _RUN_ID.match(value) or ".." in value):
        raise click.BadParameter(
            f"{value!r} is not a safe folder name: use letters, digits and _ . = , + - (at "
            "most 120, not starting with a dot, no '..'); --results-dir chooses where it goes")
    return value


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


class _Tally:
    """Counts the cells this invocation runs, and says first how many were already done."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say = total, say
        self.todo: int | None = None
        self.finished = 0

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        self.todo = len(cells)
        done = self.total - self.todo
        if done == self.total:
            self.say("the only cell was already done" if self.total == 1 else
                     f"all {self.total} cells were already done")
        elif done:
            self.say(f"{_of(done, self.total, 'cell')} already done; running {self.todo}")

    def cell_finished(self, cell: Any, result: Any) -> None:
        self.finished += 1


def _refuse_nothing_to_run(cells: list[Cell], registry: Registry, backend: str = "numpy"
                           ) -> None:
    """Refuse a campaign whose every cell would be skipped (no integrator applies, or every
    cell needs a numpy-only plugin and the campaign runs on another ``backend``)."""
    # only the name matters to skip_reason: the library itself is never started here
    on = Backend(name=backend, device="cpu", compiled=False)
    reasons: dict[str, int] = {}
    by_backend = False
    for cell in cells:
        try:
            lacks = skip_reason(on, cell.problem) or skip_reason(on, cell.integrator)
            why = lacks or cell.integrator.skip(cell.problem)
        except Exception:  # a plugin's skip() that raises: its cell will say so
            return
        if why is None:
            return
        by_backend = by_backend or lacks is not None
        reasons[why] = reasons.get(why, 0) + 1
    problems = list({c.problem.name: c.problem for c in cells}.values())
    applicable = []
    for name, integrator in registry.integrators.items():
        try:
            if skip_reason(on, integrator) is None and all(
                    skip_reason(on, p) is None and integrator.skip(p) is None for p in problems):
                applicable.append(name)
        except Exception:
            continue
    shown = "; ".join(list(reasons)[:3]) + (f"; and {_count(len(reasons) - 3, 'more reason')}"
                                            if len(reasons) > 3 else "")
    where = "" if len(cells) == 1 else f"in all {len(cells)} cells of this campaign, "
    what = "the cell is skipped" if by_backend else "the integrator does not apply to the problem"
    message = f"nothing to run: {where}{what} ({shown})"
    if by_backend and not applicable:
        hint = ("numpy-only plugins run on the numpy backend only (the default: --backend "
                "numpy), or choose other problems and integrators")
    elif applicable:
        these = "this problem" if len(problems) == 1 else "these problems"
        hint = f"choose integrators that apply to {these}, e.g. -i {' -i '.join(applicable[:4])}"
    else:
        hint = ("no installed integrator applies to every selected problem: choose other "
                "problems (-p) or integrators (-i); 'benchsuite list' says what each needs")
    raise CliError(message, hint)


def _progress_observer(progress: bool | None, quiet: bool) -> Any:
    """A bar on a terminal, plain periodic lines otherwise (CI logs), or nothing."""
    if progress is False or quiet:
        return None
    isatty = getattr(sys.stderr, "isatty", None)
    return ProgressBar(disable=False) if callable(isatty) and isatty() else ProgressLog()


@main.command("run")
@verbosity_options(verbose_help="Also print a table of every cell (-vv: wider names).",
                   quiet_help="Print only errors and the path of the run folder; no progress.")
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
              help="Safety net, seconds per shard (a whole cell, unless it has more than "
                   "--shard-size trajectories): rows it stops are undetermined, and a shard is "
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
@click.option("--shard-size", type=click.IntRange(min=1), default=None,
              help="Trajectories per shard, the unit of work and of resume (default "
                   f"{Campaign.shard_size}); results do not depend on it.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Shards run in parallel, each in its own process (default: one per core); "
                   "with --executor dask and no --scheduler, the local cluster's workers.")
@click.option("--executor", "executor_name", default=None, metavar="NAME",
              help="Where shards run: local (default), dask, or one a plugin adds "
                   "('benchsuite plugins' lists them).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A Dask scheduler to run on (tcp://HOST:PORT; implies --executor dask). "
                   "Default: Dask's scheduler-address setting, else a local cluster.")
@click.option("--backend", default=None, metavar="NAME",
              help="The array library that runs the trajectories: numpy (default) or jax (a "
                   "compiled loop, float64); torch, cupy where installed. Numpy-only plugins "
                   "are skipped on any other backend.")
@click.option("--device", default=None, metavar="DEVICE",
              help="Where the backend computes: cpu (default), gpu, gpu:1 (jax); cuda, cuda:1 "
                   "(torch).")
@click.option("--in-process", is_flag=True,
              help="Debugging only: run shards one by one in this process, with NO containment "
                   "(a crashing or hanging oracle takes the run with it; no hard time limit).")
@click.option("--wait", is_flag=True,
              help="If another run holds the run folder, wait for it instead of refusing.")
@click.option("-y", "--yes", is_flag=True,
              help=f"Start campaigns larger than {CONFIRM_CELLS} cells or "
                   f"{CONFIRM_TRAJECTORIES:.0e} trajectories without refusing.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr (default: on): a bar on a terminal, otherwise a line "
                   f"every 30 s (${ENV_INTERVAL} seconds) and one at the end.")
@_json_option
@click.pass_context
def run_cmd(ctx: click.Context, campaign_file, problems, integrators, n_points, seed, t_max,
            max_steps, max_evals, wall_time, extend, certificates, results_dir, run_id,
            resume_dir, shard_size, workers, executor_name, scheduler, backend, device,
            in_process, wait, yes, progress, as_json, verbosity) -> None:
    """Run a campaign; with no options, the default one on the built-in catalog.

    Results go to RESULTS_DIR/RUN_ID/ (parquet tables and a manifest); finished cells of an
    earlier run of the same campaign are kept and skipped. At the end it prints a summary:
    cells by state, trajectories by outcome, and what needs attention.
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
        if "shard_size" in given:
            changes["shard_size"] = shard_size
        if "executor_name" in given:
            changes["executor"] = executor_name
        elif "scheduler" in given:
            changes["executor"] = "dask"
        if "backend" in given:
            changes["backend"] = backend
            if "device" not in given and backend != base.backend:
                changes["device"] = None  # a device is its backend's: take the new one's default
        if "device" in given:
            changes["device"] = device
        budget_changes = {k: v for k, v in (("t_max", t_max), ("max_steps", max_steps),
                                            ("max_evals", max_evals), ("wall_time", wall_time),
                                            ("extend", extend))
                          if k in given}
        if budget_changes:
            changes["budget"] = replace(base.budget, **budget_changes)
        campaign = replace(base, **changes)
        cells = plan(obj.registry, campaign)  # validate every name before any work starts
        check_backend(campaign.backend, campaign.device)  # installed, and the device present
    except BackendError as exc:
        raise CliError(str(exc), f"backends: {', '.join(BACKENDS)}; the default, numpy, needs "
                       "nothing more (README: Backends and GPUs)") from exc
    except (CampaignError, ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc), "see 'benchsuite run --help'; 'benchsuite list' shows the "
                       "problems and integrators") from exc
    _refuse_nothing_to_run(cells, obj.registry, campaign.backend)
    trajectories = len(cells) * campaign.n_points
    if not yes and (len(cells) > CONFIRM_CELLS or trajectories > CONFIRM_TRAJECTORIES):
        raise CliError(
            f"this campaign has {len(cells)} cells and {trajectories} trajectories, more than "
            f"{CONFIRM_CELLS} cells or {CONFIRM_TRAJECTORIES:.0e} trajectories",
            "check the problem globs and integrator grids, and pass --yes to start it anyway")
    if run_dir is None:
        print_ = fingerprint(campaign, obj.registry, cells)
        run_dir = Path(results_dir) / (run_id or f"run-{digest(print_)[:10]}")
    clash = [f"--{name.replace('_name', '')}" for name in ("executor_name", "scheduler")
             if name in given]
    if in_process and clash:
        raise CliError(f"--in-process runs every shard in this process: it cannot be combined "
                       f"with {' or '.join(clash)}", "drop one of them")
    if "scheduler" in given and ("workers" in given or not scheduler):
        raise CliError("--scheduler names a running cluster: give its address (tcp://HOST:PORT),"
                       " and no -j (its size is its workers')",
                       "start more 'dask worker' processes to grow it")
    try:
        executor = (SerialExecutor() if in_process else
                    make_executor(obj.registry, campaign.executor, workers, scheduler))
    except CampaignError as exc:
        raise CliError(str(exc), "'benchsuite plugins' lists the executors") from exc
    strict = env_flag(ENV_STRICT) if obj.strict is None else obj.strict
    quiet = verbosity < 0
    tally = _Tally(len(cells), (lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    observers: list[Any] = [tally]
    bar = _progress_observer(progress, quiet or as_json)
    if bar is not None:
        observers.append(bar)
    try:
        store = run_campaign(campaign, obj.registry, run_dir, executor=executor, strict=strict,
                             wait=wait, observers=observers)
    except (CampaignMismatch, FolderBusy) as exc:
        raise CliError(str(exc), getattr(exc, "hint", None)) from None
    except ExecutorUnavailable as exc:
        raise CliError(str(exc), "finished cells are kept; start the cluster (or choose "
                       "another --executor), then run the same command again") from None
    except WorkersRefused as exc:
        raise CliError(str(exc), f"nothing was recorded for that shard; finished ones are kept in "
                       f"{run_dir}; install the client's versions on every worker, then run "
                       "the same command again to resume") from None
    except StoreWriteError as exc:
        what = "free some space or choose" if disk_full(exc) else "choose"
        raise CliError(str(exc), f"finished cells are kept in {run_dir}; {what} another "
                       "--results-dir, then run the same command again to resume",
                       exit_code=EXIT_UNWRITABLE) from None
    except KeyboardInterrupt as exc:
        name = getattr(exc, "signal", "SIGINT")
        click.echo(f"\ninterrupted by {name}: finished cells are kept in {run_dir}", err=True)
        _echo_incomplete(run_dir)
        click.echo("hint: run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except CampaignAborted as exc:
        if not quiet:
            _report_run(run_dir, campaign, tally, verbosity, as_json, EXIT_TRAJECTORY_ERRORS,
                        meaning="strict mode stopped the campaign at its first trajectory "
                                "that raised; finished cells are kept")
        error(str(exc), f"finished cells are kept in {run_dir}; run the same command again "
              "to resume")
        sys.exit(EXIT_TRAJECTORY_ERRORS)
    code = _report_run(store.path, campaign, tally, verbosity, as_json)
    if code:
        sys.exit(code)


def _echo_incomplete(run_dir: Path) -> None:
    """How far an interrupted run got (records counted, nothing hashed)."""
    try:
        info = scan_run(run_dir)
    except (CampaignMismatch, OSError):
        return
    warn(f"the run folder is incomplete: {_of(info.done, info.total, 'cell')} finished, "
         f"{info.missing} missing" + (f", {info.damaged} damaged" if info.damaged else ""))


def _report_run(path: Path, campaign: Campaign, tally: _Tally, verbosity: int,
                as_json: bool, exit_code: int | None = None, meaning: str | None = None) -> int:
    """Print the end-of-run summary (or its JSON); return the exit status."""
    tables = load_results(path)
    summary = replace(summarize_run(path, tables), run_now=tally.finished,
                      already_done=None if tally.todo is None else tally.total - tally.todo)
    traj = tables["trajectories"]
    if exit_code is None:
        errors = "stop" in traj and bool((traj["stop"].astype(str) == Stop.ERROR).any())
        exit_code = EXIT_TRAJECTORY_ERRORS if errors else 0
    notes = verdict_notes(traj, campaign)
    if as_json:
        echo_json({**summary.to_dict(), "notes": notes, "exit_status": exit_code,
                   "exit_meaning": meaning or EXIT_MEANINGS[exit_code]})
        for note in notes:
            click.echo(_wrap(note), err=True)
        _echo_integrity(summary)
        return exit_code
    if verbosity < 0:
        _echo_integrity(summary)
        click.echo(str(path))
        return exit_code
    if verbosity > 0:
        names = display_names(RunStore(path).manifest()["cells"])
        for line in cell_table(tables, names, wide=verbosity > 1):
            click.echo(line)
        click.echo()
    for line in summary_lines(summary):
        click.echo(line)
    for note in notes:
        click.echo(_wrap(note), err=True)
    _echo_integrity(summary)
    click.echo(f"\nresults: {path}\nreport:  benchsuite report {path}")
    return exit_code


def summary_lines(s: RunSummary) -> list[str]:
    """The end-of-run summary: cells by state, trajectories by outcome (<= 100 columns).

    ``8 cells: 7 run, 1 skipped (the integrator does not apply), 0 missing; 8 finished now,
    0 already done``: run, skipped, missing and damaged cells add up to the total (cells
    "finished now" or "already done" include the skipped ones)."""
    ran = f"{s.finished - s.skipped} run"
    if s.with_errors:
        ran += f" ({s.with_errors} with failed trajectories)"
    parts = [ran]
    if s.skipped:
        parts.append(f"{s.skipped} skipped (the integrator does not apply)")
    parts.append(f"{s.missing} missing")
    if s.damaged:
        parts.append(f"{s.damaged} damaged")
    line = f"{_count(s.total, 'cell')}: {', '.join(parts)}"
    if s.run_now is not None and s.already_done is not None:
        line += f"; {s.run_now} finished now, {s.already_done} already done"
    lines = [_wrap(line)]
    if s.trajectories:
        phrase = outcome_phrase(s.outcomes)
        if s.undetermined:
            phrase += f" ({s.undetermined_share:.1%})"
        lines.append(_wrap(f"{_count(s.trajectories, 'trajectory')}: {phrase}"))
    else:
        lines.append("no trajectories")
    return lines


def _echo_integrity(s: RunSummary) -> None:
    """Flag a run folder that is incomplete or damaged, or whose trajectories raised."""
    run = s.path
    if s.missing or s.damaged:
        parts = [f"{n} {what}" for n, what in ((s.missing, "missing"), (s.damaged, "damaged"))
                 if n]
        warn(f"the run folder is incomplete: {' and '.join(parts)} of {_count(s.total, 'cell')}",
             f"run the same command again (or 'benchsuite run --resume {run}') to finish it"
             + ("; 'benchsuite verify' names damaged cells" if s.damaged else ""))
    if s.with_errors:
        warn(f"{s.with_errors} cell{'s' if s.with_errors != 1 else ''} had trajectories that "
             "raised an error (exit status 1)",
             "their rows carry the error in the 'message' column; --strict stops at the first")


def verdict_notes(traj: pd.DataFrame, campaign: Campaign) -> list[str]:
    """What the user should know about the labels of a run: rows cut by the wall-time safety
    net (not findings), and the undetermined share, each with what to do about it."""
    if traj.empty or "stop" not in traj:
        return []
    notes = []
    cut = int((traj["stop"] == Stop.WALL_TIME).sum())
    if cut:
        notes.append(
            f"note: {_of(cut, len(traj), 'trajectory', 'was')} "
            "stopped by the wall-time safety net "
            f"({campaign.budget.wall_time:g} s per cell) and {'is' if cut == 1 else 'are'} "
            "undetermined: that depends on the machine, not on the trajectory. Raise "
            "--wall-time or lower --t-max/--max-steps so that the deterministic budgets end "
            "every run.")
    undecided = int((traj["outcome"].astype(str) == Outcome.UNDETERMINED).sum())
    if undecided:
        hint = ("" if campaign.budget.extend >= MAX_EXTEND else
                "; --extend N re-runs them with the budget doubled up to N times")
        notes.append(f"note: {_of(undecided, len(traj), 'trajectory', 'is')} undetermined "
                     f"(no conclusive evidence within the budget){hint}")
    return notes


# -- text tables -----------------------------------------------------------------------------

def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` in the middle (``deep_line~-30-10]``): names that differ only
    in their parameters, at the end, stay apart."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "~" + text[len(text) - (width - 1 - head):]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
               right: Sequence[int] = (), shrink: Sequence[int] = (), min_width: int = 16,
               width: int = WIDTH) -> tuple[list[str], list[str]]:
    """Rows of text as aligned columns at most ``width`` wide: the widest ``shrink`` column is
    clipped first (in the middle, down to ``min_width``), then the next; then columns are
    dropped from the right. Returns the lines and the names of the dropped columns."""
    n = len(header)
    widths = [max([len(header[i]), *(len(r[i]) for r in rows)]) for i in range(n)]
    keep = list(range(n))

    def total() -> int:
        return sum(widths[i] for i in keep) + 2 * (len(keep) - 1)

    while total() > width:
        can = [i for i in shrink if widths[i] > min_width]
        if not can:
            break
        i = max(can, key=lambda j: widths[j])
        others = sorted((widths[j] for j in can if j != i), reverse=True)
        floor = max(min_width, others[0] if others else min_width)
        widths[i] = max(floor, widths[i] - (total() - width))
        if widths[i] == floor and others and total() > width:
            continue
    dropped = []
    while total() > width and len(keep) > 2:
        dropped.append(header[keep.pop()])

    def render(cells: Sequence[str]) -> str:
        out = []
        for i in keep:
            cell = _clip(cells[i], widths[i])
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [render(header), *(render(r) for r in rows)], dropped


#: Short names of the outcomes, for tables that would not fit with the full ones.
OUTCOME_CODES = {"converged_global": "glob", "converged_spurious": "spur",
                 "escape_global": "esc_glob", "escape_spurious": "esc_spur",
                 "step_limited": "step", "diverged": "div", "failed": "fail",
                 "undetermined": "undet"}


def _number(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(value) else f"{value:.3g}"


def cell_table(tables: dict[str, pd.DataFrame], names: dict[str, str], wide: bool = False
               ) -> list[str]:
    """One line per cell: its trajectories by outcome and their median gap to the infimum,
    with the display ``names`` of the integrators, at most 100 columns (``wide``: no limit);
    skipped cells below, with their reasons."""
    traj, skipped = tables["trajectories"], tables["skipped"]
    lines: list[str] = []
    if len(traj):
        frame = traj.assign(integrator=traj["integrator"].astype(str).map(names),
                            problem=traj["problem"].astype(str),
                            outcome=traj["outcome"].astype(str))
        counts = pd.crosstab([frame["problem"], frame["integrator"]], frame["outcome"])
        gaps = frame.groupby(["problem", "integrator"])["f_gap"].median()
        width = 10**6 if wide else WIDTH
        for codes in ({}, OUTCOME_CODES):  # full outcome names when they fit
            rows = []
            for (problem, integrator), row in counts.iterrows():
                found = {str(k): int(v) for k, v in row.items() if v}
                text = ", ".join(f"{n} {codes.get(k, k)}" for k, n in _ordered(found))
                rows.append([problem, integrator, text, _number(gaps.get((problem, integrator)))])
            header = ["problem", "integrator", "trajectories", "med_f_gap"]
            natural = sum(max(len(h), *(len(r[i]) for r in rows))
                          for i, h in enumerate(header)) + 2 * (len(header) - 1)
            if natural <= width or codes:
                break
        table, _ = text_table(header, rows, right=(3,), shrink=(0, 1), width=width)
        lines += table
        used = sorted({k for k in counts.columns if counts[k].any()} & set(codes))
        if used:
            lines.append(_wrap("(" + ", ".join(f"{codes[k]} = {k}" for k, _ in _ordered(
                dict.fromkeys(used, 1))) + ")"))
    if len(skipped):  # one line per reason, the problem's name taken out of it
        groups: dict[str, tuple[dict[str, None], dict[str, None], list[str]]] = {}
        for problem, integrator, reason in zip(skipped["problem"].astype(str),
                                               skipped["integrator"].astype(str),
                                               skipped["reason"].astype(str), strict=True):
            probs, integs, keys = groups.setdefault(reason.replace(problem, "<problem>"),
                                                    ({}, {}, []))
            probs[problem] = integs[names.get(integrator, integrator)] = None
            keys.append(problem)
        for reason, (probs, integs, keys) in groups.items():
            where = (f"{len(keys)} cell{'s' if len(keys) != 1 else ''}: "
                     f"{', '.join(integs)} on {len(probs)} problem{'s' if len(probs) != 1 else ''}")
            tail = f"; <problem>: {', '.join(probs)}" if "<problem>" in reason else ""
            lines.append(_wrap(f"skipped ({where}): {reason}{tail}"))
    return lines


def _ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
    order = {name: i for i, name in enumerate(OUTCOME_CODES)}
    return sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def _board_header(name: str) -> str:
    short = {"trajectories": "n", **OUTCOME_CODES,
             "converged_global": "conv_glob"}
    if name in short:
        return short[name]
    return short.get(name, name.replace("median_", "med_"))


def board_lines(board: pd.DataFrame) -> list[str]:
    """A leaderboard as text at most 100 columns wide: rates as percentages, the interval of
    the first (the ranking) rate beside it, other numbers to 3 significant digits; columns
    that do not fit are named below."""
    frame = board.reset_index()
    frame = frame.drop(columns=[c for c in frame.columns if c == "index"])
    names = [str(c) for c in frame.columns]
    intervals = {c: (f"{c}_low", f"{c}_high") for c in names
                 if f"{c}_low" in names and f"{c}_high" in names}
    hidden = {part for pair in intervals.values() for part in pair}
    front = [c for c in ("rank", "problem", "integrator") if c in names]
    columns = front + [c for c in names if c not in front and c not in hidden]
    rates = [c for c in columns if c in intervals]
    first_rate = rates[0] if rates else None

    def cell(row: pd.Series, c: str) -> str:
        value = row[c]
        if c in rates:
            if pd.isna(value):
                return "-"
            text = f"{float(value):.0%}"
            if c == first_rate and c in intervals:
                low, high = (row[k] for k in intervals[c])
                if not (pd.isna(low) or pd.isna(high)):
                    text += f" [{float(low) * 100:.0f}-{float(high) * 100:.0f}]"
            return text
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return str(value) if isinstance(value, int) else _number(value)

    header = [_board_header(c) for c in columns]
    rows = [[cell(row, c) for c in columns] for _, row in frame.iterrows()]
    text = {"problem", "integrator"}
    lines, dropped = text_table(header, rows,
                                right=[i for i, c in enumerate(columns) if c not in text])
    if first_rate in intervals and _board_header(first_rate) not in dropped:
        lines.append(f"({_board_header(first_rate)}: share of trajectories, with its "
                     "confidence interval in %)")
    if dropped:
        lines.append(_wrap(f"(not shown: {', '.join(reversed(dropped))}; see the HTML "
                           "report)"))
    return lines


# -- runs, verify, report --------------------------------------------------------------------

@main.command("runs")
@verbosity_options(verbose_help="Also show each campaign's globs, damage details, and "
                                "folders that are not runs.",
                   quiet_help="Print only the paths of the run folders.")
@click.option("--results-dir", default="results", show_default=True,
              type=click.Path(file_okay=False), help="Where the run folders are.")
@click.option("--verify", "full", is_flag=True,
              help="Check every checksum (slower); by default cell records are only counted.")
@_json_option
def runs_cmd(results_dir: str, full: bool, as_json: bool, verbosity: int) -> None:
    """List the run folders under RESULTS_DIR, least recently run first (the last one is the
    run that 'benchsuite report' picks when given none): cells done, damage, campaign."""
    runs, others = list_runs(results_dir, verify=full)
    if as_json:
        echo_json({"results_dir": results_dir, "order": "least recently run first",
                   "runs": [r.to_dict() for r in runs],
                   "not_runs": [o.to_dict() for o in others]})
        return
    if verbosity < 0:
        for r in runs:
            click.echo(str(r.path))
        return
    if not runs:
        click.echo(f"no run folders in {results_dir}" + (f" ({len(others)} other folders; -v "
                                                          "lists them)" if others else ""),
                   err=True)
    else:
        click.echo(_wrap(f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {results_dir}, "
                         "least recently run first ('benchsuite report' picks the last):"))
        header = ["id", "last run", "created", "cells", "campaign", "n", "status"]
        rows = []
        for r in runs:
            status = r.status
            if r.status == "incomplete":
                status += f" ({r.missing} missing)"
            elif r.status == "damaged":
                status += f" ({r.damaged})" + (f", {r.missing} missing" if r.missing else "")
            rows.append([r.id, local_time(r.last_invocation), local_time(r.created),
                         f"{r.done}/{r.total}", f"{r.n_problems} x {r.n_integrators}",
                         "-" if r.n_points is None else str(r.n_points), status])
        lines, _ = text_table(header, rows, right=(3, 5), shrink=(0, 6))
        for line in lines:
            click.echo(line)
        click.echo(_wrap("(campaign: problems x integrators; n: points per problem; "
                         + ("every checksum verified)" if full else "cell records counted, "
                            "files not hashed: --verify checks them)")))
    flagged = [r for r in runs if r.status in ("incomplete", "damaged")]
    for r in flagged:
        warn(f"{r.id} is {r.status}: {_of(r.missing, r.total, 'cell')} missing"
             + (f", {r.damaged} damaged" if r.damaged else ""))
    if verbosity > 0:
        for r in runs:
            click.echo(_wrap(f"{r.id}: problems {', '.join(r.problems)}; integrators "
                             f"{', '.join(r.integrators)}; {r.invocations} invocation(s)"
                             + (f"; written by {r.running}" if r.running else "")))
            for detail in r.details:
                click.echo(_wrap(f"damaged: {detail}", "  "))
        for o in others:
            click.echo(_wrap(f"{o.id}: not a run ({o.reason})"))
    if flagged:
        click.echo("hint: 'benchsuite run --resume RUN' finishes a run, 'benchsuite verify RUN' "
                   "names damage", err=True)


@main.command("verify")
@verbosity_options(verbose_help="Also list the intact cells.",
                   quiet_help="Print only damaged cells.")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@_json_option
def verify_cmd(run: str, as_json: bool, verbosity: int) -> None:
    """Check every cell of a run folder against its checksums and its campaign.

    Exit 0 when intact (unfinished cells are listed: incomplete is not damaged), 1 naming
    each damaged cell, 2 when RUN is not a readable run folder.
    """
    try:
        checks = verify_run(run)
    except CampaignMismatch as exc:
        raise CliError(str(exc), "pass a folder written by 'benchsuite run'; 'benchsuite "
                       "runs' lists them") from None
    damaged = [c for c in checks if c.status == "damaged"]
    missing = [c for c in checks if c.status == "missing"]
    if as_json:
        echo_json({"run": run, "intact": not damaged, "complete": not (damaged or missing),
                   "cells": [vars(c) for c in checks]})
        if damaged:
            sys.exit(EXIT_TRAJECTORY_ERRORS)
        return
    def cell(c: CellCheck) -> str:  # cell keys run past 100 columns: the names say it
        return f"{c.problem} x {c.integrator}" if c.problem else f"record {_clip(c.key, 60)}"

    for c in damaged:
        click.echo(_fill(f"damaged  {cell(c)}: {c.detail}", rest="         "))
    if verbosity >= 0:
        for c in missing:
            click.echo(_fill(f"missing  {cell(c)}", rest="         "))
    if verbosity > 0:
        for c in checks:
            if c.status == "ok":
                click.echo(_fill(f"ok       {cell(c)}", rest="         "))
    if verbosity >= 0:
        click.echo(f"{run}: {_count(len(checks), 'cell')}: "
                   f"{len(checks) - len(damaged) - len(missing)} intact, {len(missing)} not "
                   f"finished, {len(damaged)} damaged")
    if damaged:
        click.echo("hint: a resume of the run moves damaged cells aside and recomputes them",
                   err=True)
    if damaged:
        sys.exit(EXIT_TRAJECTORY_ERRORS)


def _figure_formats(values: tuple[str, ...]) -> tuple[str, ...]:
    formats: list[str] = []
    for value in values:
        for part in value.split(","):
            fmt = part.strip().lower().lstrip(".")
            if not fmt:
                continue
            if fmt not in FIGURE_FORMATS:
                close = difflib.get_close_matches(fmt, FIGURE_FORMATS, n=1)
                raise CliError(f"unknown figure format {fmt!r}"
                               + (f"; did you mean {close[0]!r}?" if close else ""),
                               f"--figures takes {', '.join(FIGURE_FORMATS)} (comma-separated "
                               "or repeated)")
            if fmt not in formats:
                formats.append(fmt)
    return tuple(formats)


@main.command("report")
@verbosity_options(verbose_help="Also print the leaderboard of each problem.",
                   quiet_help="Print only the path of the page.")
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--results-dir", default="results", show_default=True,
              type=click.Path(file_okay=False),
              help="Without RUN, report the most recent run in this folder.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN/report).")
@click.option("--figures", "figures", multiple=True, metavar="FORMATS",
              help="Also write every figure as a standalone file in these formats: "
                   f"{', '.join(FIGURE_FORMATS)} (comma-separated or repeated).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in a web browser.")
def report_cmd(run: str | None, results_dir: str, out: str | None, figures: tuple[str, ...],
               open_page: bool, verbosity: int) -> None:
    """Leaderboards and figures of a run, as an HTML page (never re-runs anything).

    RUN defaults to the most recent run in --results-dir (the last one 'benchsuite runs'
    lists).
    """
    formats = _figure_formats(figures)
    if run is None:
        latest = latest_run(results_dir)
        if latest is None:
            raise CliError(f"no run folder in {results_dir}",
                           "pass RUN, or --results-dir DIR where 'benchsuite run' wrote its "
                           "runs")
        run = str(latest.path)
        if verbosity >= 0:
            click.echo(_wrap(f"reporting the most recent run in {results_dir}: {latest.id} "
                             f"(last run {local_time(latest.last_invocation)})"), err=True)
    # imported here: matplotlib and seaborn would slow down every other command's start
    import benchsuite.report as report_module

    try:
        tables = load_results(run)
        page = report_module.write_report(run, out, formats=formats, tables=tables)
    except (ValueError, CampaignMismatch) as exc:  # not a run folder, or nothing finished yet
        raise CliError(str(exc), "'benchsuite runs' lists the run folders and how far each "
                       "got") from None
    except OSError as exc:
        error(f"cannot write the report: {exc.strerror or exc} "
              f"({getattr(exc, 'filename', None) or out or run})",
              "write it elsewhere with -o DIR")
        sys.exit(EXIT_UNWRITABLE)
    if verbosity >= 0:
        traj = renamed(tables["trajectories"], display_names(RunStore(run).manifest()["cells"]))
        for line in board_lines(report_module.leaderboard(traj, by_problem=False)):
            click.echo(line)
        if verbosity > 0:
            for problem, group in traj.groupby("problem", observed=True):
                click.echo(f"\n{problem}:")
                for line in board_lines(report_module.leaderboard(group, by_problem=False)):
                    click.echo(line)
    cells = tables["cells"]
    missing, damaged = (int((cells["status"] == s).sum()) for s in ("missing", "damaged"))
    busy = writer(run) if missing or damaged else None
    if busy:  # a resume would be refused by the lock: the run is still going
        warn(f"a run is writing this folder now ({busy}); the report covers the cells finished "
             f"so far ({_of(len(cells) - missing - damaged, len(cells), 'cell')})",
             "report again when it has finished")
    elif missing or damaged:
        parts = [f"{n} {what}" for n, what in ((missing, "missing"), (damaged, "damaged")) if n]
        warn(f"{run} is incomplete: {' and '.join(parts)} of {_count(len(cells), 'cell')}; the "
             "report covers the finished cells only",
             f"'benchsuite run --resume {run}' finishes it"
             + ("; 'benchsuite verify' names damaged cells" if damaged else ""))
    click.echo(str(page) if verbosity < 0 else f"\nreport: {page}")
    if open_page and not _open_in_browser(Path(page)):
        warn(f"could not open a browser; open {page} yourself")


def _open_in_browser(page: Path) -> bool:
    """Open ``page`` in a web browser; False when none opened it. The opener's own complaints
    (xdg-open's, say) are silenced: the caller says it in one warning line."""
    import os
    import webbrowser

    try:
        saved = os.dup(2)
    except OSError:
        saved = None
    try:
        if saved is not None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        return bool(webbrowser.open(page.resolve().as_uri()))
    except Exception:  # webbrowser.Error, or an opener that cannot be started
        return False
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


@main.command("compare")
@verbosity_options(verbose_help="List every test, not only the significant changes.",
                   quiet_help="Print only the regressions.")
@click.argument("base", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True,
              help="Significance level, after correcting for the number of tests.")
@click.option("--correction", type=click.Choice(["holm", "bh"]), default="holm",
              show_default=True,
              help="Holm (family-wise error rate) or Benjamini-Hochberg (false discovery rate), "
                   "over the tests that can reach alpha (Tarone).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the comparison as an HTML page (default: "
                   "NEW/report/compare.html; inside a run folder only under its report/; an "
                   "existing file only if it ends in .html).")
@_json_option
def compare_cmd(base: str, new: str, alpha: float, correction: str, html_out: str | None,
                as_json: bool, verbosity: int) -> None:
    """Did NEW make an integrator worse than BASE? Exit 1 on a significant regression.

    Cells are matched by problem and integrator. Each outcome rate is compared with Fisher's
    exact test, each cost to the target (oracle calls, flow time) with a Mann-Whitney test
    and a bootstrap interval of the ratio of medians; p-values are corrected for the number
    of tests that can reach alpha at these sample sizes (Tarone, then Holm). Cells on one side
    only are listed. Typical use: a run on the main branch, a run of the same campaign on a
    change, then 'benchsuite compare MAIN_RUN CHANGE_RUN' in CI. Exit 2 when the runs share no
    cell.
    """
    from benchsuite.compare import compare_runs, text_rows
    from benchsuite.page import html_page

    if not math.isfinite(alpha):  # nan passes click's range check (every comparison is False)
        raise CliError(f"invalid value for '--alpha': {alpha} is not a number in (0, 1)",
                       "e.g. --alpha 0.05")
    page = Path(html_out) if html_out else Path(new) / "report" / "compare.html"
    # never write over a run's files: inside a run folder, only under its report/ folder
    target = page.resolve()  # links followed: the file that would be written
    for folder in target.parents:
        if (folder / "manifest.json").is_file() and (
                folder / "report" not in target.parents
                or target == folder / "report" / "index.html"):  # the run's own report
            raise CliError(f"refusing to write the comparison page inside the run folder "
                           f"{folder}: {page} is not under {folder / 'report'}, or is its "
                           "report page",
                           f"pass --html {folder / 'report' / 'compare.html'}, or a file "
                           "outside the run folders")
    if target.exists() and not target.name.lower().endswith((".html", ".htm")):
        raise CliError(f"refusing to overwrite {page}: not an HTML file",
                       "pass --html FILE with a name ending in .html")
    try:
        comparison = compare_runs(base, new, alpha=alpha, correction=correction)
    except (ValueError, CampaignMismatch) as exc:
        raise CliError(str(exc), "'benchsuite runs' lists the run folders") from None
    names = comparison.names
    if comparison.cells.empty:
        def cells(table: pd.DataFrame) -> str:
            listed = [f"{r.problem} x {r.integrator}" for r in table.head(3).itertuples()]
            more = f" and {len(table) - 3} more" if len(table) > 3 else ""
            return f"{len(table)} cells" + (f" ({', '.join(listed)}{more})" if listed else "")

        raise CliError(f"nothing to compare: {names[0]} and {names[1]} share no intact cell "
                       f"({names[0]}: {cells(comparison.only_base)}; {names[1]}: "
                       f"{cells(comparison.only_new)})",
                       "compare two runs of the same campaign; 'benchsuite runs' lists them")
    if len(comparison.only_base):
        count = len(comparison.only_base)
        warn(f"{count} {'cell' if count == 1 else 'cells'} of {names[0]} "
             f"{'is' if count == 1 else 'are'} not compared (missing, "
             f"damaged or skipped in {names[1]}): listed under ONLY IN {names[0]}")
    if comparison.min_trajectories is not None:
        warn(comparison.notes()[-1], "run more trajectories per cell (-n N, or n_points in "
             "the campaign file)")
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(html_page(f"benchsuite compare: {names[0]} -> {names[1]}",
                                  comparison.to_html()))
    except OSError as exc:
        error(f"cannot write the comparison page: {exc.strerror or exc} ({page})",
              "write it elsewhere with --html FILE")
        sys.exit(EXIT_UNWRITABLE)
    regressions = comparison.regressions
    if as_json:
        echo_json({**comparison.to_json(), "html": str(page)})
    elif verbosity < 0:
        if len(regressions):
            click.echo("\n".join(["REGRESSIONS:", *text_rows(regressions)]))
    else:
        click.echo(comparison.to_text(verbose=verbosity > 0))
        click.echo(f"\ncomparison: {page}")
    sys.exit(EXIT_TRAJECTORY_ERRORS if len(regressions) else 0)


def entry(argv: list[str] | None = None) -> Any:
    """Run the CLI without exiting the interpreter (for tests)."""
    return main.main(args=argv, standalone_mode=False)
