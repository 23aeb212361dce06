"""The plugin author kit: conformance checks for problems and integrators.

Like scikit-learn's ``check_estimator``, every property that benchsuite relies on but cannot see
at run time (a gradient with a sign error, rows that depend on each other, a step that mutates
its state, an order or a stability limit that is not the method's, a certificate label that does
not exist, an ``f_star`` the sampler's own points beat) is a small named check. A wrong plugin
would otherwise run without a word and fill the tables with confident labels.

>>> from benchsuite.testing import check_problem, check_integrator
>>> findings = check_problem(my_problem)             # doctest: +SKIP
>>> check_integrator(MyMethod(), raises=True)        # doctest: +SKIP

In a plugin's own test suite (pytest)::

    from benchsuite.testing import parametrize_checks

    @parametrize_checks(plugin="benchsuite-myplugin")    # or objects=[my_problem(), MyMethod()]
    def test_conformance(subject, check):
        check(subject)

``benchsuite check`` runs the same checks on installed plugins from the command line. The
table of checks, with what each verifies, is :func:`describe_checks` (and the README's plugin
guide).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import re
from collections.abc import Iterable
from typing import Any

from benchsuite.integrator import Integrator
from benchsuite.problem import Problem
from benchsuite.testing import integrator_checks, problem_checks  # noqa: F401 (they register)
from benchsuite.testing.findings import (
    CHECKS,
    Check,
    ConformanceError,
    ConformanceWarning,
    Finding,
    Severity,
    run_checks,
)

__all__ = [
    "CHECKS",
    "Check",
    "ConformanceError",
    "ConformanceWarning",
    "Finding",
    "Severity",
    "check_installed",
    "check_integrator",
    "check_problem",
    "describe_checks",
    "parametrize_checks",
    "plugin_objects",
]


def check_problem(problem: Problem, *, slow: bool = False, checks: Iterable[str] | None = None,
                  raises: bool = False) -> list[Finding]:
    """Run the problem checks on ``problem``.

    Parameters
    ----------
    problem : Problem
    slow : bool
        Also run the slow checks (``critical_values``).
    checks : iterable of str, optional
        Run only these checks (names in ``CHECKS["problem"]``), slow or not.
    raises : bool
        Raise :class:`ConformanceError` with the failures, if any, instead of returning them.

    Returns
    -------
    list of Finding
        One per check, in table order: ``pass``, ``skip`` (with why), ``warn`` or ``fail``.
    """
    return run_checks("problem", problem, slow=slow, only=_names(checks), raises=raises)


def check_integrator(integrator: Integrator, *, slow: bool = False,
                     checks: Iterable[str] | None = None, raises: bool = False
                     ) -> list[Finding]:
    """Run the integrator checks on ``integrator`` (with its current hyperparameters).

    Parameters
    ----------
    integrator : Integrator
    slow : bool
        Also run the slow checks (none yet: accepted so both functions are called alike).
    checks : iterable of str, optional
        Run only these checks (names in ``CHECKS["integrator"]``).
    raises : bool
        Raise :class:`ConformanceError` with the failures, if any.

    Returns
    -------
    list of Finding
    """
    return run_checks("integrator", integrator, slow=slow, only=_names(checks), raises=raises)


def _names(checks: Iterable[str] | None) -> frozenset[str] | None:
    if checks is None:
        return None
    if isinstance(checks, str):
        return frozenset({checks})
    return frozenset(checks)


def describe_checks() -> list[dict[str, str]]:
    """Every check: kind, name, whether it is slow, and what it verifies (its docstring)."""
    return [{"kind": kind, "check": c.name, "slow": c.slow, "verifies": c.summary}
            for kind, table in CHECKS.items() for c in table.values()]


def _kind(subject: Any) -> str:
    if isinstance(subject, Problem):
        return "problem"
    if isinstance(subject, Integrator):
        return "integrator"
    raise TypeError(f"{subject!r} is neither a benchsuite Problem nor an Integrator")


def plugin_objects(plugin: str | None = None, registry: Any = None) -> list[Any]:
    """The problems and integrators an installed plugin registers (entry-point or distribution
    name), or every registered one when ``plugin`` is None.

    Raises
    ------
    LookupError
        When no loaded plugin has that name, or when it registers nothing.
    """
    if registry is None:
        from benchsuite.plugins import load_registry

        registry = load_registry()
    objects = []
    for kind, table in (("problem", registry.problems), ("integrator", registry.integrators)):
        for name, obj in table.items():
            if plugin is None or _is_plugin(registry.origin(kind, name), plugin):
                objects.append(obj)
    if plugin is not None and not objects:
        loaded = sorted({p.name for p in registry.plugins if p.status == "loaded"}
                        | {p.distribution for p in registry.plugins if p.status == "loaded"})
        close = difflib.get_close_matches(plugin, loaded, n=3, cutoff=0.6)
        also = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise LookupError(f"no loaded plugin named {plugin!r} registers a problem or an "
                          f"integrator{also} (loaded: {', '.join(loaded)})")
    return objects


def _normal(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case, '-', '_' and '.' do not
    matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_plugin(info: Any, plugin: str) -> bool:
    """Whether ``plugin`` names this plugin: its entry-point name, or its distribution."""
    return plugin == info.name or _normal(plugin) == _normal(info.distribution)


def parametrize_checks(*, plugin: str | None = None, objects: Iterable[Any] | None = None,
                       slow: bool = False) -> Any:
    """A ``pytest.mark.parametrize("subject, check", ...)`` over every check of every object.

    Parameters
    ----------
    plugin : str, optional
        Take the objects an installed plugin registers (entry-point or distribution name).
    objects : iterable, optional
        Problems and integrators given directly (a plugin under development, before install).
    slow : bool
        Include the slow checks.

    Examples
    --------
    >>> @parametrize_checks(plugin="benchsuite-heavyball")   # doctest: +SKIP
    ... def test_conformance(subject, check):
    ...     check(subject)
    """
    import pytest

    if (plugin is None) == (objects is None):
        raise TypeError("give exactly one of plugin= or objects=")
    subjects = plugin_objects(plugin) if objects is None else list(objects)
    params = []
    for subject in subjects:
        for c in CHECKS[_kind(subject)].values():
            if slow or not c.slow:
                params.append(pytest.param(subject, c, id=f"{subject.name}-{c.name}"))
    return pytest.mark.parametrize(("subject", "check"), params)


def check_installed(registry: Any, *, patterns: Iterable[str] = (), plugin: str | None = None,
                    slow: bool = False) -> list[Finding]:
    """Run the kit on the installed plugins of ``registry``: what ``benchsuite check`` does.

    Parameters
    ----------
    registry : Registry
        From :func:`benchsuite.plugins.load_registry`.
    patterns : iterable of str
        Problem or integrator names or shell globs (``"mc2x2*"``); default: all.
    plugin : str, optional
        Only the objects of this plugin (entry-point or distribution name).
    slow : bool
        Include the slow checks.

    Returns
    -------
    list of Finding
        A plugin that failed to load is a ``plugin``/``load`` failure, and a distribution
        that does not declare its dependency on benchsuite a ``plugin``/``distribution``
        warning; then the findings of every selected object.

    Raises
    ------
    LookupError
        When ``plugin`` or a pattern selects nothing.
    """
    patterns = list(patterns)
    findings = []
    for err in registry.errors:  # a plugin that did not load is a failure, when it is asked
        if (plugin is None and not patterns) or (plugin and _is_plugin(err.plugin, plugin)):
            findings.append(Finding(err.plugin.name, "plugin", "load", Severity.FAIL,
                                    f"{err.stage}: {err.error}"))
    if findings and plugin is not None:
        return findings
    subjects = plugin_objects(plugin, registry)
    if patterns:
        chosen = [s for s in subjects if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
        for p in patterns:
            if not any(fnmatch.fnmatchcase(s.name, p) for s in subjects):
                close = difflib.get_close_matches(p, [s.name for s in subjects], n=3)
                also = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise LookupError(f"no problem or integrator matches {p!r}{also}")
        subjects = chosen
    seen = set()
    for subject in subjects:
        info = registry.origin(_kind(subject), subject.name)
        if info.distribution not in seen:
            seen.add(info.distribution)
            findings.extend(_distribution_findings(info))
    for subject in subjects:
        if isinstance(subject, Problem):
            findings.extend(check_problem(subject, slow=slow))
        else:
            findings.extend(check_integrator(subject, slow=slow))
    return findings


def _distribution_findings(info: Any) -> list[Finding]:
    """A published plugin declares its dependency on benchsuite, so that ``pip install`` of
    the plugin brings a benchsuite whose API it was written against."""
    from benchsuite.plugins import CORE_DISTRIBUTION, IN_MEMORY

    if info.distribution in (CORE_DISTRIBUTION, IN_MEMORY, "unknown"):
        return []
    try:
        requires = importlib.metadata.requires(info.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = {_normal(re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0]) for r in requires}
    if CORE_DISTRIBUTION in names:
        return [Finding(info.distribution, "plugin", "distribution", Severity.PASS,
                        "declares its dependency on benchsuite")]
    return [Finding(info.distribution, "plugin", "distribution", Severity.WARN,
                    "does not list benchsuite in its dependencies: add "
                    "dependencies = [\"benchsuite>=X.Y\"] to its pyproject.toml, the version "
                    "it was written against")]
