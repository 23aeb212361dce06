"""The plugin door: tolerant loading, blocking, allowlists, strict mode, duplicates, ordering."""

from __future__ import annotations

import importlib.metadata

import pytest

from benchsuite import hookimpl, plugins
from benchsuite.plugins import PluginLoadError, load_registry
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_problems.factorization import mc2x2_example1, xy_minus_one


class HookRaises:
    @hookimpl
    def benchsuite_problems(self):
        raise RuntimeError("deliberately broken hook")


class ReturnsWrongType:
    @hookimpl
    def benchsuite_integrators(self):
        return [xy_minus_one()]  # a Problem where Integrators are expected


class DuplicateProblem:
    @hookimpl
    def benchsuite_problems(self):
        return [mc2x2_example1()]


class Unsorted:
    @hookimpl
    def benchsuite_integrators(self):
        zed = type("ZedEuler", (ExplicitEuler,), {"name": "zz_euler", "__module__": __name__})
        aaa = type("AaaEuler", (ExplicitEuler,), {"name": "aa_euler", "__module__": __name__})
        return [zed(), aaa()]


def broken_import_entry_point():
    return importlib.metadata.EntryPoint(name="broken_import",
                                         value="broken_plugins.raises_at_import",
                                         group=plugins.GROUP)


def test_builtins_load_cleanly_and_come_from_benchsuite(registry):
    assert not registry.errors
    assert "mc2x2_example1" in registry.problems and "euler" in registry.integrators
    for kind, items in (("problem", registry.problems), ("integrator", registry.integrators)):
        for name in items:
            if registry.origin(kind, name).name == "heavyball":
                continue  # the example plugin, when a developer has installed it
            assert registry.origin(kind, name).distribution == "benchsuite"


def test_plugin_that_fails_to_import_is_reported_and_the_rest_works(monkeypatch):
    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real(), broken_import_entry_point()])
    reg = load_registry(strict=False)
    assert "mc2x2_example1" in reg.problems and "euler" in reg.integrators
    (err,) = reg.errors
    assert err.plugin.name == "broken_import" and err.stage == "import"
    assert "not installed" in str(err) and "broken_plugins.raises_at_import" in str(err)
    status = {p.name: p.status for p in reg.plugins}
    assert status["broken_import"] == "failed" and status["euler"] == "loaded"


def test_strict_mode_makes_import_failure_fatal(monkeypatch):
    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real(), broken_import_entry_point()])
    with pytest.raises(PluginLoadError, match="broken_import"):
        load_registry(strict=True)
    monkeypatch.setenv("BENCHSUITE_STRICT", "1")
    with pytest.raises(PluginLoadError, match="strict mode"):
        load_registry()


def test_hook_that_raises_is_reported_with_its_plugin():
    reg = load_registry(strict=False, extra_plugins={"hook_raises": HookRaises()})
    (err,) = reg.errors
    assert err.plugin.name == "hook_raises" and "benchsuite_problems" in err.stage
    assert "deliberately broken hook" in err.error
    assert "mc2x2_example1" in reg.problems  # other plugins' problems survive


def test_hook_returning_wrong_types_is_refused_whole():
    reg = load_registry(strict=False, extra_plugins={"wrong": ReturnsWrongType()})
    (err,) = reg.errors
    assert "expected Integrator instances" in err.error
    assert "xy_minus_one" in reg.problems  # the built-in, untouched
    assert "euler" in reg.integrators and "wrong" not in {
        reg.origin("integrator", n).name for n in reg.integrators}


def test_duplicate_name_is_refused_naming_both_sources():
    reg = load_registry(strict=False, extra_plugins={"dup": DuplicateProblem()})
    (err,) = reg.errors
    assert "duplicate problem name 'mc2x2_example1'" in err.error
    assert "plugin 'factorization'" in err.error and err.plugin.name == "dup"
    assert reg.origin("problem", "mc2x2_example1").name == "factorization"
    with pytest.raises(PluginLoadError, match="duplicate"):
        load_registry(strict=True, extra_plugins={"dup": DuplicateProblem()})


def test_results_are_sorted_by_name_not_registration_order():
    reg = load_registry(extra_plugins={"unsorted": Unsorted()})
    names = list(reg.integrators)
    assert names == sorted(names) and {"aa_euler", "zz_euler"} <= set(names)
    assert list(reg.problems) == sorted(reg.problems)


def test_blocking_a_plugin_by_name_or_distribution():
    reg = load_registry(blocked=["euler"])
    assert "euler" not in reg.integrators and "mc2x2_example1" in reg.problems
    assert {p.name: p.status for p in reg.plugins}["euler"] == "blocked"
    everything = load_registry(blocked=["benchsuite"])
    assert not everything.problems and not everything.integrators


def test_allowlist_from_environment(monkeypatch):
    monkeypatch.setenv("BENCHSUITE_PLUGINS", "factorization")
    reg = load_registry()
    assert "mc2x2_example1" in reg.problems and not reg.integrators
    assert {p.name: p.status for p in reg.plugins}["euler"] == "not allowed"


def test_each_call_builds_a_fresh_plugin_manager():
    first = plugins.make_plugin_manager()
    first.register(DuplicateProblem(), name="dup")
    assert plugins.make_plugin_manager().get_plugin("dup") is None


def test_report_sections_are_collected_from_plugins():
    class Section:
        title = "Energy per trajectory"

        def render(self, tables, manifest):
            return "<p>ok</p>"

    class Plugin:
        @hookimpl
        def benchsuite_report_sections(self):
            return [Section()]

    reg = load_registry(entry_points=False, extra_plugins={"sections": Plugin()})
    assert [s.title for s in reg.report_sections] == ["Energy per trajectory"]


def test_entry_points_of_another_class_are_loaded(monkeypatch):
    """The importlib_metadata backport (a dependency of Dask) makes entry_points() return its
    own EntryPoint class: the loader once registered those objects themselves as plugins,
    and every problem and integrator vanished without an error."""
    import importlib.metadata

    import benchsuite.plugins as plugins

    class ForeignEntryPoint:  # duck-typed like importlib_metadata.EntryPoint, no subclass
        def __init__(self, ep):
            self.name, self.value, self.dist, self._ep = ep.name, ep.value, ep.dist, ep

        def load(self):
            return self._ep.load()

    real = plugins._entry_points()
    assert not isinstance(ForeignEntryPoint(real[0]), importlib.metadata.EntryPoint)
    monkeypatch.setattr(plugins, "_entry_points", lambda: [ForeignEntryPoint(e) for e in real])
    registry = plugins.load_registry(strict=True)
    assert "mc2x2_example1" in registry.problems and "euler" in registry.integrators
    assert set(registry.executors) >= {"local", "dask"}
