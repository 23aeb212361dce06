"""Shared fixtures: a fresh plugin registry per test, and the registered plugins to parametrize.

Contract tests are parametrized over every problem and integrator registered through the
entry points, like diffrax's ``all_ode_solvers`` or sklearn's ``parametrize_with_checks``.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from benchsuite.plugins import load_registry

sys.path.insert(0, str(Path(__file__).parent))  # so fake entry points can name broken_plugins

_REGISTRY = load_registry(strict=True, allow=None)
PROBLEMS = list(_REGISTRY.problems.values())
INTEGRATORS = list(_REGISTRY.integrators.values())


@pytest.fixture
def registry():
    """A registry built by a fresh plugin manager (no state shared between tests)."""
    return load_registry(strict=True)


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    for var in ("BENCHSUITE_STRICT", "BENCHSUITE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)


def by_name(items):
    return [pytest.param(item, id=item.name) for item in items]


def start_campaign(campaign_text: str, results: Path, run_id: str, *extra: str) -> subprocess.Popen:
    """``benchsuite run`` on a campaign file, in its own process group (so a test can signal
    it and its workers at once)."""
    campaign = results / "campaign.toml"
    campaign.write_text(campaign_text)
    return subprocess.Popen([sys.executable, "-m", "benchsuite", "run", "-c", str(campaign),
                             "--results-dir", str(results), "--run-id", run_id, "--no-progress",
                             *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def sh(*args: object, **kw: object) -> str:
    """Run a command, assert it succeeded (showing its output if not), return its stdout."""
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def child_venv(env_dir: Path) -> Path:
    """A fresh virtual environment that sees this one's packages (benchsuite, pip, pytest and
    the .pth files of editable installs) without copying or downloading anything, so that a
    plugin wheel installed into it with --no-deps --no-index adds only the plugin. Returns
    its python."""
    import sysconfig

    sh(sys.executable, "-m", "venv", "--without-pip", env_dir)
    python = env_dir / "bin" / "python"
    site = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def assert_same_tables(a: Path, b: Path) -> None:
    """Two run folders hold the same cells with byte-identical trajectory and checkpoint files."""
    for kind in ("trajectories", "checkpoints"):
        names = sorted(p.name for p in (a / kind).glob("*.parquet"))
        assert names == sorted(p.name for p in (b / kind).glob("*.parquet"))
        _, mismatch, errors = filecmp.cmpfiles(a / kind, b / kind, names, shallow=False)
        assert not mismatch and not errors, mismatch
