"""Command-line conventions: -q/-v, strict JSON, progress in logs, runs, report's default run,
refusals with suggestions, and one style for errors."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import benchsuite.campaign
from benchsuite import jsonio
from benchsuite.cli import WIDTH, _format_warning, main
from benchsuite.observer import ProgressLog
from benchsuite.results import DamagedCellWarning

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
    assert "cells: 4 of 4 finished (4 run now, 0 already done)" in out
    assert "12 trajectories: " in out and "undetermined (" in out  # the share in %
    assert f"results: {root / 'first'}" in out and "report:  benchsuite report" in out
    assert "med_f_gap" not in out and "rtol=" not in out  # no per-cell table by default
    assert len(out.splitlines()) <= 8
    assert max(map(len, lines_without_paths(first.output, root))) <= WIDTH


def test_a_finished_campaign_run_again_says_so_and_verbose_adds_a_compact_table(copy_of_first):
    out = invoke("run", "--resume", copy_of_first, "--no-progress", "-v")
    assert out.exit_code == 0, out.output
    assert "all 4 cells were already done" in out.stderr
    assert "cells: 4 of 4 finished (0 run now, 4 already done)" in out.stdout
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
    assert "(1 run now, 3 already done)" in out.stdout


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


def test_progress_log_waits_for_its_interval():
    now = [0.0]
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    class Result:
        skipped = None
        trajectories = pd.DataFrame({"outcome": ["undetermined"] * 2})

    log = ProgressLog(interval=30, stream=Stream(), clock=lambda: now[0])
    log.campaign_started(None, [1, 2, 3, 4])
    for t in (10, 40, 50):
        now[0] = t
        log.cell_finished(None, Result())
    now[0] = 75
    log.campaign_finished(None)
    assert "".join(lines).splitlines() == [
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
    import click

    import benchsuite.report

    root, _ = results
    calls, opened = [], []

    def fake_write_report(run, out=None, *, formats=(), tables=None):
        calls.append((Path(run), tuple(formats)))
        page = tmp_path / "index.html"
        page.write_text("<html></html>")
        return page

    monkeypatch.setattr(benchsuite.report, "write_report", fake_write_report)
    monkeypatch.setattr(click, "launch", lambda url, **kw: opened.append(url) or 0)
    out = invoke("report", "--results-dir", root, "--figures", "png,svg", "--open")
    assert out.exit_code == 0, out.output
    assert calls == [(root / "second", ("png", "svg"))] and opened == [str(tmp_path / "index.html")]
    assert f"most recent run in {root}: second" in out.stderr
    assert "warning: " in out.stderr and "is incomplete" in out.stderr  # 1 of 2 cells missing
    assert "global" in out.stdout and max(map(len, lines_without_paths(out.output, root))) <= WIDTH
    bad = invoke("report", "--results-dir", root, "--figures", "pgn")
    assert bad.exit_code == 2 and "did you mean 'png'?" in bad.stderr
    empty = invoke("report", "--results-dir", tmp_path)
    assert empty.exit_code == 2 and f"error: no run folder in {tmp_path}" in empty.stderr


# -- refusals and the style of errors -----------------------------------------------------------

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
    real, calls = benchsuite.campaign._run_one, []

    def interrupted_at_the_second_cell(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(benchsuite.campaign, "_run_one", interrupted_at_the_second_cell)
    args = [*SMALL, "--results-dir", tmp_path, "--run-id", "cut", "--in-process",
            "--no-progress"]
    out = invoke("run", *args)
    assert out.exit_code == 130 and "interrupted by SIGINT" in out.stderr
    assert "warning: the run folder is incomplete: 1 of 2 cells finished, 1 missing" in out.stderr
    assert "hint: run the same command again to resume" in out.stderr
    listed = invoke("runs", "--results-dir", tmp_path)
    assert "incomplete (1 missing)" in listed.stdout
    monkeypatch.setattr(benchsuite.campaign, "_run_one", real)
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
