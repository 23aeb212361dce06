"""asv: the configuration is valid and every benchmark runs (one quick pass, current env)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def asv(*args, env):
    return subprocess.run(["asv", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.skipif(shutil.which("asv") is None, reason="asv is not installed")
def test_asv_check_and_one_quick_pass(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "BENCHSUITE_BENCH_SCALE": "smoke"}
    assert asv("machine", "--yes", "--machine", "ci", env=env).returncode == 0
    check = asv("check", "--python=same", env=env)
    assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout
    quick = asv("run", "--python=same", "--quick", "--dry-run", "--show-stderr",
                "--machine", "ci", env=env)
    assert quick.returncode == 0, quick.stdout[-4000:] + quick.stderr[-2000:]
    for name in ("time_cell", "peakmem_cell", "track_missed_global_rate",
                 "track_euler_slowdown_vs_fused_loop", "time_small_campaign", "time_report",
                 "track_undetermined_share", "track_confident_disagreements",
                 "track_parallel_shortfall", "track_jax_euler_slowdown_vs_fused_loop",
                 "track_proximal_call_cost_vs_euler"):
        assert name in quick.stdout
    assert "failed" not in quick.stdout.lower()
