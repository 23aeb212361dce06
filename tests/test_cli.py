"""The command line: listing, running, reporting, and errors before any work starts."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.results import load_results


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_problems_and_integrators_with_their_plugin():
    out = invoke("list", "--json")
    assert out.exit_code == 0
    data = json.loads(out.output)
    problems = {p["name"]: p for p in data["problems"]}
    assert problems["mc2x2_example1"]["plugin"] == "factorization"
    assert {"euler"} <= {i["name"] for i in data["integrators"]}


def test_list_verbose_shows_theory_and_source():
    out = invoke("list", "--verbose")
    assert out.exit_code == 0
    assert "spurious_minima_at_infinity: yes" in out.output
    assert "[JL] Section 1, Example 1" in out.output


def test_plugins_lists_distribution_and_status():
    out = invoke("plugins")
    assert out.exit_code == 0 and "loaded" in out.output and "benchsuite" in out.output


def test_run_writes_tables_and_report_reads_them(tmp_path):
    out = invoke("run", "-p", "xy_minus_one", "-i", "euler(h=[0.1, 0.05])", "-n", "8",
                 "--t-max", "5", "--results-dir", str(tmp_path), "--run-id", "r1",
                 "--no-progress")
    assert out.exit_code == 0, out.output
    tables = load_results(tmp_path / "r1")
    traj = tables["trajectories"]
    assert len(traj) == 16 and set(traj["integrator"]) == {"euler(h=0.1)", "euler(h=0.05)"}
    # the same initial points for every integrator on a problem
    by = traj.groupby("integrator", observed=True)["f0"].apply(list)
    assert by["euler(h=0.1)"] == by["euler(h=0.05)"]
    report = invoke("report", str(tmp_path / "r1"))
    assert report.exit_code == 0 and "euler(h=0.05)" in report.output


def test_unknown_names_fail_before_work_with_suggestions(tmp_path):
    out = CliRunner().invoke(main, ["run", "-p", "mc2x2_exampel1", "--results-dir",
                                    str(tmp_path)])
    assert out.exit_code == 2
    assert "error: no problem matches 'mc2x2_exampel1'; did you mean mc2x2_example1" in out.stderr
    assert "hint: " in out.stderr
    assert not any(tmp_path.iterdir())
    out = CliRunner().invoke(main, ["run", "-i", "euler(h=-1)", "--results-dir", str(tmp_path)])
    assert out.exit_code == 2 and "h must be a finite number > 0" in out.output


def test_unwritable_results_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # unwritable for root too, unlike a chmod
    out = CliRunner().invoke(main, ["run", "-p", "xy_minus_one", "-n", "2", "--results-dir",
                                    str(blocker / "results")])
    assert out.exit_code == 4 and "--results-dir" in out.output


def test_python_dash_m_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "benchsuite", "--help"], capture_output=True,
                         text=True, check=True)
    for command in ("list", "plugins", "run", "runs", "verify", "report"):
        assert command in out.stdout


def test_resume_reads_the_campaign_from_the_manifest(tmp_path):
    out = invoke("run", "-p", "xy_minus_one", "-i", "euler(h=0.1)", "-n", "4", "--t-max", "2",
                 "--results-dir", str(tmp_path), "--run-id", "r", "--no-progress", "-j", "1")
    assert out.exit_code == 0
    trajectories = tmp_path / "r" / "trajectories"
    (cell,) = trajectories.glob("*.parquet")
    cell.unlink()  # as if the run had been killed before this cell was finished
    (tmp_path / "r" / "cells" / f"{cell.stem}.json").unlink()
    out = invoke("run", "--resume", str(tmp_path / "r"), "--no-progress", "-j", "1")
    assert out.exit_code == 0 and (trajectories / cell.name).exists()
    assert len(load_results(tmp_path / "r")["trajectories"]) == 4


def test_packaged_campaign_by_name_with_overrides(tmp_path):
    out = invoke("run", "-c", "smoke", "-p", "xy_minus_one", "-i", "rk45", "-n", "3",
                 "--results-dir", str(tmp_path), "--run-id", "s", "--no-progress", "-j", "1")
    assert out.exit_code == 0
    traj = load_results(tmp_path / "s")["trajectories"]
    assert set(traj["problem"]) == {"xy_minus_one"} and len(traj) == 3
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["campaign"]["budget"]["t_max"] == 20.0  # from the smoke file


def test_strict_mode_treats_a_blow_up_as_an_outcome_not_a_fault(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_STRICT", "1")
    out = CliRunner().invoke(main, ["run", "-p", "cubic_blowup_1d", "-i", "euler", "-n", "2",
                                    "--results-dir", str(tmp_path), "--no-progress", "-j", "1"])
    assert out.exit_code == 0  # blow-up is an outcome (diverged), not a fault


def test_safety_net_rows_are_counted_and_explained(tmp_path):
    out = invoke("run", "-p", "mc2x2_example1", "-i", "euler(h=0.0001)", "-n", "4",
                 "--t-max", "1000", "--wall-time", "0.05", "-j", "1", "--no-progress",
                 "--results-dir", str(tmp_path))
    assert out.exit_code == 0
    said = " ".join(out.output.split())  # notes are wrapped at 100 columns
    assert "4 of 4 trajectories were stopped by the wall-time safety net" in said
    assert "Raise --wall-time" in said


def test_no_certificates_and_extend_reach_the_campaign_and_the_labels(tmp_path):
    out = invoke("run", "-p", "remark3_rational_1d", "-i", "rk45", "-n", "8", "--t-max", "10",
                 "--no-certificates", "--extend", "2", "--no-progress", "-j", "1",
                 "--results-dir", str(tmp_path), "--run-id", "generic")
    assert out.exit_code == 0
    manifest = json.loads((tmp_path / "generic" / "manifest.json").read_text())
    assert manifest["campaign"]["certificates"] is False
    assert manifest["campaign"]["budget"]["extend"] == 2
    traj = load_results(tmp_path / "generic")["trajectories"]
    assert (traj["outcome"] == traj["generic_outcome"]).all()
    assert traj["extensions"].max() >= 1
