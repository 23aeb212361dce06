"""Loading plugins from the ``benchsuite`` entry-point group, tolerantly.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to import, and a hook
call stops at the first implementation that raises (pluggy #154: one broken plugin crashes the
host). Here each entry point is imported, and each hook implementation called, on its own: a
failure becomes a :class:`PluginError` naming the plugin, its distribution and version, and the
rest keeps working. Strict mode (``strict=True``, or ``BENCHSUITE_STRICT=1``) raises instead.

Users choose what loads: ``blocked`` names (``--no-plugin NAME``) and an allowlist
(``BENCHSUITE_PLUGINS=a,b``); a name matches either the entry-point name or the distribution
name, and :func:`check_plugin_names` says when one matches no installed plugin (the command line
refuses it, with the closest names). Results of collecting hooks are sorted by name, never left
in registration order, and a duplicate name is refused with both sources named. The core's own
plugins are registered first, so a third-party plugin cannot replace a built-in problem by
reusing its name.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from benchsuite import hookspecs
from benchsuite.integrator import Integrator
from benchsuite.problem import NAME_PATTERN, Problem

GROUP = "benchsuite"
ENV_STRICT = "BENCHSUITE_STRICT"
ENV_ALLOW = "BENCHSUITE_PLUGINS"
CORE_DISTRIBUTION = "benchsuite"
IN_MEMORY = "<in-memory>"


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin comes from and whether it loaded."""

    name: str
    distribution: str
    version: str
    module: str
    status: str  # "loaded", "blocked", "not allowed", "failed"
    error: str = ""


@dataclass(frozen=True)
class PluginError:
    """A plugin that failed to import, or whose hook raised or returned the wrong thing."""

    plugin: PluginInfo
    stage: str
    error: str

    def __str__(self) -> str:
        p = self.plugin
        return (f"plugin {p.name!r} (distribution {p.distribution} {p.version}, {p.module}): "
                f"{self.stage}: {self.error}")


class PluginLoadError(RuntimeError):
    """Raised in strict mode at the first plugin error."""


class UnknownPluginName(ValueError):
    """``--no-plugin`` or ``BENCHSUITE_PLUGINS`` names no installed plugin (a typo would
    otherwise block or allow nothing, silently); ``source`` says which of the two."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


@dataclass
class Registry:
    """Everything the installed plugins contribute, sorted by name, with their sources."""

    problems: dict[str, Problem] = field(default_factory=dict)
    integrators: dict[str, Integrator] = field(default_factory=dict)
    observers: list[Any] = field(default_factory=list)
    report_sections: list[Any] = field(default_factory=list)
    executors: dict[str, Any] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    errors: list[PluginError] = field(default_factory=list)
    source: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)

    def origin(self, kind: str, name: str) -> PluginInfo:
        """The plugin that contributed ``name``; kind is 'problem' or 'integrator'."""
        return self.source[(kind, name)]


def env_flag(name: str) -> bool:
    """True when the environment variable is set to a true-looking value."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def env_allowlist() -> frozenset[str] | None:
    """The allowlist from ``BENCHSUITE_PLUGINS``, or None when unset (everything may load)."""
    raw = os.environ.get(ENV_ALLOW)
    if raw is None or not raw.strip():
        return None
    return frozenset(part.strip() for part in re.split(r"[,\s]+", raw) if part.strip())


def installed_plugin_names() -> list[str]:
    """Entry-point names and distribution names of the installed plugins, sorted."""
    names = set()
    for ep in _entry_points():
        names.add(ep.name)
        if ep.dist is not None:
            names.add(ep.dist.name)
    return sorted(names)


def check_plugin_names(blocked: Iterable[str] = (), allow: Iterable[str] | None = None) -> None:
    """Raise :class:`UnknownPluginName` if a name given to block (``--no-plugin``) or to
    allow (default: ``BENCHSUITE_PLUGINS``) matches no installed plugin, with the closest
    installed names."""
    installed = installed_plugin_names()
    allowed = env_allowlist() if allow is None else frozenset(allow)
    for where, names in (("--no-plugin", sorted(set(blocked))),
                         (ENV_ALLOW, sorted(allowed or ()))):
        for name in names:
            if name in installed:
                continue
            close = difflib.get_close_matches(name, installed, n=3, cutoff=0.6)
            also = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            origin = f"{ENV_ALLOW} names {name!r}, but " if where == ENV_ALLOW else ""
            raise UnknownPluginName(f"{origin}no installed plugin is named {name!r}{also} "
                                    f"(installed: {', '.join(installed) or 'none'})", where)


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager that knows benchsuite's hook specifications and nothing else."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=GROUP)

    def core_first(ep: importlib.metadata.EntryPoint) -> tuple[bool, str]:
        dist = ep.dist.name if ep.dist is not None else ""
        return (dist != CORE_DISTRIBUTION, ep.name)

    return sorted(eps, key=core_first)


def load_registry(
    *,
    strict: bool | None = None,
    blocked: Iterable[str] = (),
    allow: Iterable[str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
    entry_points: bool = True,
    hooks: Collection[str] | None = None,
) -> Registry:
    """Import the installed plugins and collect their problems, integrators and observers.

    Parameters
    ----------
    strict : bool, optional
        Raise :class:`PluginLoadError` at the first error. Default: ``BENCHSUITE_STRICT``.
    blocked : iterable of str
        Plugin or distribution names not to load.
    allow : iterable of str, optional
        If given, load only plugins whose plugin or distribution name is listed.
        Default: ``BENCHSUITE_PLUGINS`` (comma-separated), else everything.
    extra_plugins : mapping of str to object, optional
        Plugin objects to register besides the entry points (tests, notebooks).
    entry_points : bool
        Whether to load the ``benchsuite`` entry points at all.
    hooks : collection of str, optional
        Call only these hooks (e.g. ``{"benchsuite_report_sections"}``: the report needs no
        problem or integrator built). Default: all.

    Returns
    -------
    Registry
    """
    strict = env_flag(ENV_STRICT) if strict is None else strict
    blocked = frozenset(blocked)
    allowed = env_allowlist() if allow is None else frozenset(allow)
    registry = Registry()
    pm = make_plugin_manager()

    def fail(info: PluginInfo, stage: str, error: str) -> None:
        err = PluginError(info, stage, error)
        if strict:
            raise PluginLoadError(f"{err} (strict mode: unset {ENV_STRICT} or drop --strict "
                                  "to skip broken plugins)")
        registry.errors.append(err)

    # (info, object, whether it is an entry point to load): not isinstance(EntryPoint), as
    # the importlib_metadata backport (a dependency of Dask, say) makes entry_points()
    # return its own EntryPoint class
    candidates: list[tuple[PluginInfo, Any, bool]] = []
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            candidates.append((PluginInfo(ep.name, dist, version, ep.value, "pending"), ep, True))
    for name, obj in (extra_plugins or {}).items():
        candidates.append((PluginInfo(name, IN_MEMORY, "", repr(obj), "pending"), obj, False))

    for info, target, is_entry_point in candidates:
        names = {info.name, info.distribution}
        if names & blocked:
            registry.plugins.append(_with_status(info, "blocked"))
            continue
        if allowed is not None and not names & allowed:
            registry.plugins.append(_with_status(info, "not allowed"))
            continue
        try:
            obj = target.load() if is_entry_point else target
            if pm.get_plugin(info.name) is not None:
                raise ValueError(f"another plugin is already registered as {info.name!r}")
            pm.register(obj, name=info.name)
        except Exception as exc:  # a broken plugin must not take the host down
            failed = _with_status(info, "failed", f"{type(exc).__name__}: {exc}")
            registry.plugins.append(failed)
            fail(failed, "import", failed.error)
            continue
        registry.plugins.append(_with_status(info, "loaded"))

    by_name = {p.name: p for p in registry.plugins}
    observers: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for hook, kind_type, kind, into in (
            ("benchsuite_problems", Problem, "problem", registry.problems),
            ("benchsuite_integrators", Integrator, "integrator", registry.integrators),
            ("benchsuite_observers", object, "observer", observers),
            ("benchsuite_report_sections", object, "report section", sections),
            ("benchsuite_executors", object, "executor", registry.executors)):
        if hooks is None or hook in hooks:
            _collect(pm, hook, kind_type, kind, into, registry, by_name, fail)
    registry.observers = list(observers.values())
    registry.report_sections = list(sections.values())
    return registry


def _with_status(info: PluginInfo, status: str, error: str = "") -> PluginInfo:
    return PluginInfo(info.name, info.distribution, info.version, info.module, status, error)


def _collect(pm, hook_name, kind_type, kind, into, registry, by_name, fail) -> None:
    """Call each implementation of a collecting hook on its own; validate, dedupe, sort."""
    found: list[tuple[str, Any, PluginInfo]] = []
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    order = {p.name: i for i, p in enumerate(registry.plugins)}
    for impl in sorted(impls, key=lambda i: order.get(i.plugin_name, len(order))):
        info = by_name[impl.plugin_name]
        try:
            items = impl.function()
            if not isinstance(items, list | tuple):
                raise TypeError(f"returned {type(items).__name__}, expected a list of {kind}s")
            mine = []  # all or nothing: a half-valid list is refused whole
            for item in items:
                if not isinstance(item, kind_type):
                    raise TypeError(f"returned a {type(item).__name__} in its list, expected "
                                    f"{kind_type.__name__} instances")
                name = (getattr(item, "name", None) or getattr(item, "title", None)
                        or type(item).__name__)
                named = kind in ("problem", "integrator", "executor")
                if named and not NAME_PATTERN.match(str(name)):
                    raise ValueError(f"{kind} name {name!r} is not allowed: use lowercase "
                                     "letters, digits and '_-.=,[]'")
                mine.append((name, item, info))
        except Exception as exc:
            fail(info, f"hook {hook_name}", f"{type(exc).__name__}: {exc}")
            continue
        found.extend(mine)
    for name, item, info in found:  # already in plugin order: the first source wins
        key = (kind, name)
        if key in registry.source:
            first = registry.source[key]
            fail(info, f"hook {hook_name}",
                 f"duplicate {kind} name {name!r}: already provided by plugin {first.name!r} "
                 f"(distribution {first.distribution}); this one is refused")
            continue
        registry.source[key] = info
        into[name] = item
    ordered = dict(sorted(into.items()))
    into.clear()
    into.update(ordered)
