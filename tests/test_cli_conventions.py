"""Command-line conventions: -q/-v, strict JSON, progress in logs, runs, report's default run,
refusals with suggestions, and one style for errors."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import benchsuite.tasks
from benchsuite import jsonio
from benchsuite.campaign import Campaign
from benchsuite.cli import WIDTH, _format_warning, main, summary_lines, verdict_notes
from benchsuite.fingerprint import digest
from benchsuite.observer import ProgressLog
from benchsuite.results import CellCheck, DamagedCellWarning, RunStore
from benchsuite.runs import RunSummary

#: 2 problems x 2 integrators, 3 points each: a second or two.
TINY = ["-p", "mc2x2_example1", "-p", "xy_minus_one", "-i", "euler", "-i", "rk45", "-n", "3",
        "--t-max", "2", "-j", "1"]
#: 1 problem x 2 integrators.
SMALL = ["-p", "xy_minus_one", "-i", "euler(h=[0.1, 0.05])", "-n", "2", "--t-max", "2", "-j", "1"]


def invoke(*args, env=None):
    return CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)


def strict(text: str):
    """Parse JSON refusing NaN and Infinity, as jq or JSON.parse would."""
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON output")
    return json.loads(text, parse_constant=refuse)


def drop_cell(run: Path, stem_start: str) -> None:
    """Make a run folder look interrupted before one cell was written."""
    (record,) = (run / "cells").glob(f"{stem_start}*.json")
    record.unlink()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two runs in one results folder: ``first`` (complete, 4 cells), then ``second``
    (run later, then one of its 2 cells lost, as if interrupted); and a folder that is not
    a run."""
    root = tmp_path_factory.mktemp("conventions")
    first = invoke("run", *TINY, "--results-dir", root, "--run-id", "first", "--no-progress")
    second = invoke("run", *SMALL, "--results-dir", root, "--run-id", "second", "--no-progress")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    drop_cell(root / "second", "xy_minus_one__euler_h=0.05")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run")
    return root, first


@pytest.fixture
def copy_of_first(results, tmp_path):
    shutil.copytree(results[0] / "first", tmp_path / "first")
    return tmp_path / "first"


def lines_without_paths(text: str, path: Path) -> list[str]:
    return [line for line in text.splitlines() if str(path) not in line]


# -- run: the end-of-run summary ----------------------------------------------------------------

def test_run_prints_a_short_summary_at_most_100_columns_wide(results):
    root, first = results
    out = first.stdout
    assert "4 cells: 4 run, 0 missing; 4 finished now, 0 already done" in out
    assert "12 trajectories: " in out and "undetermined (" in out  # the share in %
    assert f"results: {root / 'first'}" in out and "report:  benchsuite report" in out
    assert "med_f_gap" not in out and "rtol=" not in out  # no per-cell table by default
    assert len(out.splitlines()) <= 8
    assert max(map(len, lines_without_paths(first.output, root))) <= WIDTH


def test_a_finished_campaign_run_again_says_so_and_verbose_adds_a_compact_table(copy_of_first):
    out = invoke("run", "--resume", copy_of_first, "--no-progress", "-v")
    assert out.exit_code == 0, out.output
    assert "all 4 cells were already done" in out.stderr
    assert "4 cells: 4 run, 0 missing; 0 finished now, 4 already done" in out.stdout
    table = out.stdout.splitlines()
    assert table[0].split() == ["problem", "integrator", "trajectories", "med_f_gap"]
    rows = [line.split()[:2] for line in table[1:5]]
    assert rows == [["mc2x2_example1", "euler"], ["mc2x2_example1", "rk45"],
                    ["xy_minus_one", "euler"], ["xy_minus_one", "rk45"]]  # short names
    assert max(map(len, lines_without_paths(out.output, copy_of_first))) <= WIDTH


def test_a_partial_resume_says_how_many_cells_were_done(copy_of_first):
    drop_cell(copy_of_first, "xy_minus_one__rk45")
    out = invoke("run", "--resume", copy_of_first, "--no-progress")
    assert out.exit_code == 0, out.output
    assert "3 of 4 cells already done; running 1" in out.stderr
    assert "; 1 finished now, 3 already done" in out.stdout


def test_quiet_prints_only_the_path_and_json_only_json(copy_of_first):
    quiet = invoke("run", "--resume", copy_of_first, "-q")
    assert quiet.exit_code == 0
    assert quiet.stdout == f"{copy_of_first}\n" and quiet.stderr == ""
    out = invoke("run", "--resume", copy_of_first, "--json")
    data = strict(out.stdout)  # stdout holds the JSON object and nothing else
    assert data["run_dir"] == str(copy_of_first) and data["run_id"] == "first"
    assert data["cells"]["total"] == 4 and data["cells"]["already_done"] == 4
    assert data["trajectories"] == 12 and sum(data["outcomes"].values()) == 12
    assert data["exit_status"] == 0 and data["exit_meaning"] == "success"
    assert 0 <= data["undetermined_share"] <= 1
    assert "benchsuite: " not in out.stderr  # no progress


def test_progress_lines_in_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_PROGRESS_INTERVAL", "0")
    out = invoke("run", *SMALL, "--results-dir", tmp_path)  # CliRunner's stderr: not a TTY
    assert out.exit_code == 0, out.output
    assert "benchsuite: 1/2 cells (50%), " in out.stderr and ", ETA " in out.stderr
    assert "benchsuite: 2/2 cells (100%), " in out.stderr and "outcomes: " in out.stderr
    again = invoke("run", *SMALL, "--results-dir", tmp_path / "other", "--no-progress")
    assert "cells (" not in again.stderr


def test_a_run_shorter_than_the_interval_still_logs_its_end():
    stream = io.StringIO()

    class Result:
        skipped = "the integrator does not apply"
        trajectories = pd.DataFrame()

    now = [0.0]
    log = ProgressLog(interval=30, stream=stream, clock=lambda: now[0])
    log.campaign_started(None, [1])
    log.shards_planned(1)
    now[0] = 2
    log.shard_finished(None, 0, Result())
    log.campaign_finished(None)
    assert stream.getvalue().splitlines() == [
        "benchsuite: 1/1 cells (100%), 2s elapsed; outcomes: none yet; 1 skipped cell"]
    stream.seek(0)
    stream.truncate()
    log.campaign_started(None, [])  # nothing to run: nothing to say
    log.shards_planned(0)
    log.campaign_finished(None)
    assert stream.getvalue() == ""


def test_progress_log_waits_for_its_interval():
    now = [0.0]
    stream = io.StringIO()

    class Result:
        skipped = None
        trajectories = pd.DataFrame({"outcome": ["undetermined"] * 2})

    log = ProgressLog(interval=30, stream=stream, clock=lambda: now[0])
    log.campaign_started(None, [1, 2, 3, 4])
    log.shards_planned(4)
    for t in (10, 40, 50):
        now[0] = t
        log.shard_finished(None, 0, Result())
    now[0] = 75
    log.campaign_finished(None)
    assert stream.getvalue().splitlines() == [
        "benchsuite: 2/4 cells (50%), 40s elapsed, ETA 40s; outcomes: 4 undetermined",
        "benchsuite: 3/4 cells (75%), 1m15s elapsed, ETA 25s; outcomes: 6 undetermined"]


# -- runs, verify, report -----------------------------------------------------------------------

def test_runs_lists_runs_least_recent_first_and_flags_the_incomplete_one(results):
    root, _ = results
    out = invoke("runs", "--results-dir", root)
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("first",
                                                                                  "second"))]
    assert [r[0] for r in rows] == ["first", "second"]
    assert "4/4" in rows[0] and "complete" in rows[0]
    assert "1/2" in rows[1] and "incomplete" in rows[1]
    assert "warning: second is incomplete: 1 of 2 cells missing" in out.stderr
    assert "notes" not in out.stdout  # not a run: skipped...
    verbose = invoke("runs", "--results-dir", root, "-v")
    assert "notes: not a run" in verbose.stdout  # ... unless asked
    assert max(map(len, lines_without_paths(out.output, root))) <= WIDTH
    data = strict(invoke("runs", "--results-dir", root, "--json").stdout)
    assert [r["id"] for r in data["runs"]] == ["first", "second"]
    assert [(r["cells"]["done"], r["cells"]["total"]) for r in data["runs"]] == [(4, 4), (1, 2)]
    assert [r["status"] for r in data["runs"]] == ["complete", "incomplete"]
    assert [o["id"] for o in data["not_runs"]] == ["notes"]
    quiet = invoke("runs", "--results-dir", root, "-q")
    assert quiet.stdout.split() == [str(root / "first"), str(root / "second")]


def test_verify_and_list_and_plugins_print_strict_json(results):
    root, _ = results
    verify = invoke("verify", root / "second", "--json")
    data = strict(verify.stdout)
    assert verify.exit_code == 0 and data["intact"] and not data["complete"]
    listing = invoke("list", "--json")
    assert '"inf"' in listing.stdout  # rk45's max_step=inf, as a string
    assert {"problems", "integrators"} <= set(strict(listing.stdout))
    plugins = strict(invoke("plugins", "--json").stdout)
    assert {"euler", "factorization"} <= {p["name"] for p in plugins["plugins"]}
    quiet = invoke("verify", root / "first", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""
    verbose = invoke("verify", root / "first", "-v")
    assert verbose.stdout.count("\nok ") + verbose.stdout.startswith("ok ") == 4


def test_report_without_run_picks_the_most_recent_one(results, monkeypatch, tmp_path):
    import webbrowser

    import benchsuite.report

    root, _ = results
    calls, opened = [], []

    def fake_write_report(run, out=None, *, formats=(), tables=None):
        calls.append((Path(run), tuple(formats)))
        page = tmp_path / "index.html"
        page.write_text("<html></html>")
        return page

    monkeypatch.setattr(benchsuite.report, "write_report", fake_write_report)
    monkeypatch.setattr(webbrowser, "open", lambda url, **kw: opened.append(url) or True)
    out = invoke("report", "--results-dir", root, "--figures", "png,svg", "--open")
    assert out.exit_code == 0, out.output
    page = tmp_path / "index.html"
    assert calls == [(root / "second", ("png", "svg"))] and opened == [page.as_uri()]
    assert f"most recent run in {root}: second" in out.stderr
    assert "warning: " in out.stderr and "is incomplete" in out.stderr  # 1 of 2 cells missing
    assert "could not open" not in out.stderr
    assert "global" in out.stdout and max(map(len, lines_without_paths(out.output, root))) <= WIDTH
    bad = invoke("report", "--results-dir", root, "--figures", "pgn")
    assert bad.exit_code == 2 and "did you mean 'png'?" in bad.stderr
    empty = invoke("report", "--results-dir", tmp_path)
    assert empty.exit_code == 2 and f"error: no run folder in {tmp_path}" in empty.stderr
    monkeypatch.setattr(webbrowser, "open", lambda url, **kw: False)  # no browser (headless)
    headless = invoke("report", root / "first", "--open")
    assert headless.exit_code == 0 and headless.stderr.splitlines() == [
        f"warning: could not open a browser; open {page} yourself"]


def test_report_of_a_folder_being_written_says_so_not_resume(results, monkeypatch, tmp_path):
    import benchsuite.report

    shutil.copytree(results[0] / "second", tmp_path / "second")
    page = tmp_path / "index.html"
    page.write_text("<html></html>")
    monkeypatch.setattr(benchsuite.report, "write_report", lambda *a, **kw: page)
    with RunStore(tmp_path / "second").lock():  # as a running campaign holds it
        out = invoke("report", tmp_path / "second")
    assert out.exit_code == 0, out.output
    assert "warning: a run is writing this folder now (process " in out.stderr
    assert "the report covers the cells finished so far (1 of 2 cells)" in out.stderr
    assert "--resume" not in out.stderr
    out = invoke("report", tmp_path / "second")  # lock released: the run was interrupted
    assert "is incomplete" in out.stderr and "--resume" in out.stderr


def test_list_and_verify_fit_100_columns_and_plugins_has_a_header(results, monkeypatch):
    for args in (["list"], ["list", "-v"]):
        out = invoke(*args)
        assert out.exit_code == 0 and max(map(len, out.output.splitlines())) <= WIDTH, args
    root, _ = results
    out = invoke("verify", root / "first", "-v")
    assert out.exit_code == 0 and "ok       mc2x2_example1 x euler" in out.stdout
    assert max(map(len, lines_without_paths(out.output, root))) <= WIDTH
    long = "deep_linear_net[dims=20-30-30-30-10]"
    proximal = "proximal(tau=0.1, tol=1e-09, max_inner=100, memory=8, min_tau=1e-08)"
    key = f"{long}__{proximal}-0123456789abcdef".replace(" ", "_")
    checks = [CellCheck(key, "ok", "", long, proximal),
              CellCheck(key, "missing", "", long, proximal),
              CellCheck(key, "damaged", "its record lists no files " * 5, long, proximal),
              CellCheck(key + "x" * 40, "damaged", "a cell record that is not part of this "
                        "run's campaign")]
    monkeypatch.setattr("benchsuite.cli.verify_run", lambda run: checks)
    out = invoke("verify", root / "first", "-v")
    assert out.exit_code == 1 and key not in out.output
    assert f"ok       {long} x proximal(" in out.stdout
    assert max(map(len, lines_without_paths(out.output, root))) <= WIDTH
    plugins = invoke("plugins").stdout.splitlines()
    assert plugins[0].split() == ["plugin", "distribution", "version", "status", "module"]
    at = plugins[0].index("status")
    table, executors = plugins[:plugins.index("")], plugins[plugins.index("") + 1:]
    assert all(line[at:].startswith("loaded") for line in table[1:] if line[:1] != " ")
    assert executors[0] == "executors (--executor NAME):"
    assert [line.split(":")[0].strip() for line in executors[1:] if line[:3] == "  d"
            or line[:3] == "  l"] == ["dask", "local"]
    assert max(map(len, plugins)) <= WIDTH
    for args in (["check", "deep_linear_net*", "proximal"], ["check", "-v", "deep_linear*"],
                 ["check", "--list-checks"]):
        out = invoke(*args)
        assert out.exit_code == 0 and max(map(len, out.output.splitlines())) <= WIDTH, args


def test_messages_agree_in_number():
    traj = pd.DataFrame({"stop": ["wall_time"] + ["target"] * 63,
                         "outcome": ["undetermined"] + ["converged_global"] * 63})
    said = " ".join(" ".join(verdict_notes(traj, Campaign())).split())
    assert "1 of 64 trajectories was stopped by the wall-time safety net" in said
    assert "and is undetermined" in said and "1 of 64 trajectories is undetermined" in said
    two = pd.DataFrame({"stop": ["target"] * 2, "outcome": ["undetermined"] * 2})
    assert "2 of 2 trajectories are undetermined" in verdict_notes(two, Campaign())[0]
    summary = RunSummary(path=Path("r"), campaign_sha256="", total=8, finished=8, missing=0,
                         damaged=0, skipped=1, with_errors=0, trajectories=1,
                         outcomes={"converged_global": 1}, wall_time_cut=0, skip_reasons={},
                         run_now=8, already_done=0)
    assert summary_lines(summary) == [
        "8 cells: 7 run, 1 skipped (the integrator does not apply), 0 missing; 8 finished now, "
        "0 already done", "1 trajectory: 1 converged_global"]


# -- refusals and the style of errors -----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["run", "--json", "-p", "mc2x2_exampel1"],
    ["run", "--json", "-n", "abc"],
    ["runs", "--json", "--results-dir", __file__],
    ["verify", "--json", "/no/such/folder"],
    ["verify", "--json", Path(__file__).parent],
    ["check", "--json", "mc2x2_exampel1"],
    ["check", "--json", "--plugin", "nosuch"],
])
def test_a_refusal_with_json_is_json_on_stdout_too(args):
    out = invoke(*args)
    assert out.exit_code == 2
    data = strict(out.stdout)
    assert data["exit_status"] == 2 and data["error"] and "hint" in data
    assert out.stderr.startswith(f"error: {data['error']}")


def test_a_folder_made_by_other_code_is_not_resumed_and_says_why(copy_of_first):
    path = copy_of_first / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fingerprint"]["versions"]["benchsuite"] = "0.0.1"  # as if written by an old one
    path.write_text(json.dumps({**manifest, "fingerprint_sha256": digest(manifest["fingerprint"])}))
    out = invoke("run", "--resume", copy_of_first, "--no-progress")
    assert out.exit_code == 2
    assert f"error: {copy_of_first} was made by other code (versions/source differ: " \
           "versions.benchsuite: folder has '0.0.1'" in out.stderr
    assert "a run folder holds one campaign and one version of the code" in out.stderr
    assert "no other options" not in out.stderr
    assert "hint: start a new run: the same command without --resume" in out.stderr

@pytest.mark.parametrize("how", ["option", "environment"])
def test_unknown_plugin_names_are_refused_with_a_suggestion(how):
    if how == "option":
        out = invoke("--no-plugin", "eulerr", "list")
    else:
        out = invoke("list", env={"BENCHSUITE_PLUGINS": "eulerr,factorization"})
    assert out.exit_code == 2 and out.stdout == ""
    assert "error: " in out.stderr and "no installed plugin is named 'eulerr'" in out.stderr
    assert "did you mean 'euler'?" in out.stderr and "(installed: " in out.stderr
    assert "hint: " in out.stderr
    assert invoke("--no-plugin", "euler", "list").exit_code == 0  # a real name still works


def test_a_campaign_with_nothing_to_run_is_refused_before_any_work(tmp_path):
    out = invoke("run", "-p", "l1_rank1*", "-i", "rk45", "--results-dir", tmp_path)
    assert out.exit_code == 2
    assert "error: nothing to run" in out.stderr and "rk45 needs a gradient" in out.stderr
    assert "hint: choose integrators that apply" in out.stderr and "-i subgradient" in out.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["run", "-n", "abc"], "error: invalid value for '-n' / '--n-points'"),
    (["run", "-i", "euler(h=[])"], "error: integrator spec 'euler(h=[])': the grid of h is "
                                   "empty; give at least one value"),
    (["run", "--t-maxx", "3"], "error: no such option"),
    (["runz"], "error: no such command 'runz'"),
    (["check", "mc2x2_exampel1"], "error: no problem or integrator matches 'mc2x2_exampel1'; "
                                  "did you mean 'mc2x2_example1'?"),
    (["new-plugin", "My-Plugin"], "error: "),
])
def test_usage_errors_read_error_then_hint(args, message):
    out = invoke(*args)
    assert out.exit_code == 2 and message in out.stderr
    assert "\nhint: " in out.stderr and "Error:" not in out.output and "Usage:" not in out.output


def test_warnings_read_warning():
    assert _format_warning(DamagedCellWarning("cell x is damaged"), DamagedCellWarning, "f.py",
                           1) == "warning: cell x is damaged\n"
    assert _format_warning("old", FutureWarning, "f.py", 1) == "warning: FutureWarning: old\n"
    with warnings.catch_warnings(record=True) as seen:  # the CLI leaves the hook as it was
        warnings.simplefilter("always")
        invoke("--no-plugin", "euler", "plugins")
    assert warnings.formatwarning is not _format_warning and not seen


def test_an_interrupted_run_is_flagged_and_resumes(tmp_path, monkeypatch):
    real, calls = benchsuite.tasks.run_task, []

    def interrupted_at_the_second_cell(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(benchsuite.tasks, "run_task", interrupted_at_the_second_cell)
    args = [*SMALL, "--results-dir", tmp_path, "--run-id", "cut", "--in-process",
            "--no-progress"]
    out = invoke("run", *args)
    assert out.exit_code == 130 and "interrupted by SIGINT" in out.stderr
    assert "warning: the run folder is incomplete: 1 of 2 cells finished, 1 missing" in out.stderr
    assert "hint: run the same command again to resume" in out.stderr
    listed = invoke("runs", "--results-dir", tmp_path)
    assert "incomplete (1 missing)" in listed.stdout
    monkeypatch.setattr(benchsuite.tasks, "run_task", real)
    again = invoke("run", *args)
    assert again.exit_code == 0 and "1 of 2 cells already done; running 1" in again.stderr


def test_jsonio_writes_no_bare_constants():
    data = {"a": float("inf"), "b": np.float64("nan"), "c": [np.float32(-np.inf), 1.5],
            "d": {2, 1}, "e": (np.int64(3),), float("inf"): Path("x")}
    text = jsonio.dumps(data)
    assert strict(text) == {"a": "inf", "b": "nan", "c": ["-inf", 1.5], "d": [1, 2], "e": [3],
                            "inf": "x"}
    with pytest.raises(ValueError, match="bare Infinity"):
        jsonio.loads('{"a": Infinity}')
