"""Shared fixtures: a fresh plugin registry per test, and the registered plugins to parametrize.

Contract tests are parametrized over every problem and integrator registered through the
entry points, like diffrax's ``all_ode_solvers`` or sklearn's ``parametrize_with_checks``.
"""

from __future__ import annotations

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
