"""Findings and the check table: what a conformance check reports, and how checks are run.

A check is a small named function of one subject (a problem or an integrator) and a
:class:`Context`. It returns a short message (or None) when the property holds, and calls
:func:`fail`, :func:`warn` or :func:`skip` when it does not or cannot be tested. An exception
raised by the plugin's own code during a check is a failure of that check, with the exception in
the message: a conforming plugin never raises on valid input.
"""

from __future__ import annotations

import enum
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np


class Severity(enum.StrEnum):
    """How a check ended: ``fail`` makes ``benchsuite check`` exit 1; ``warn`` is a likely
    mistake that can be legitimate; ``skip`` says why the property could not be tested."""

    PASS = "pass"
    SKIP = "skip"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """The result of one check on one subject.

    Attributes
    ----------
    subject : str
        Problem or integrator name (or the plugin's name for a plugin that did not load).
    kind : str
        ``"problem"``, ``"integrator"`` or ``"plugin"``.
    check : str
        The check's name (see :data:`benchsuite.testing.CHECKS`).
    severity : Severity
    message : str
        What was found, with the numbers; for a pass, what was verified.
    """

    subject: str
    kind: str
    check: str
    severity: Severity
    message: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.subject}: {self.check}: {self.severity}"
        return f"{text}: {self.message}" if self.message else text


class ConformanceError(AssertionError):
    """Raised when checks fail (on request, and by the pytest helper); ``findings`` holds the
    failures. An AssertionError, so that pytest reports it as a test failure."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


class _Outcome(Exception):
    severity: Severity


class _Failed(_Outcome):
    severity = Severity.FAIL


class _Warned(_Outcome):
    severity = Severity.WARN


class _Skipped(_Outcome):
    severity = Severity.SKIP


def fail(message: str) -> NoReturn:
    """End the running check with a failure."""
    raise _Failed(message)


def warn(message: str) -> NoReturn:
    """End the running check with a warning."""
    raise _Warned(message)


def skip(message: str) -> NoReturn:
    """End the running check as not applicable, saying why."""
    raise _Skipped(message)


@dataclass
class Context:
    """Per-subject state shared by its checks: a fixed seed, and lazily computed values that
    several checks need (descended points), computed once."""

    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A generator seeded by the context's seed: every check is deterministic."""
        return np.random.default_rng(self.seed + offset)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per subject."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


CheckFunction = Callable[[Any, Context], "str | None"]


@dataclass(frozen=True)
class Check:
    """A named conformance check of one kind of subject; call it on a subject in a test.

    Attributes
    ----------
    name : str
    kind : str
        ``"problem"`` or ``"integrator"``.
    function : callable
        ``function(subject, context) -> str | None``.
    slow : bool
        Opt-in (``slow=True`` in :func:`check_problem`, ``benchsuite check --slow``).
    needs : tuple of str
        Checks that must not have failed for this one to mean anything (every check needs
        the oracles' shapes); it is skipped, saying so, when one did.
    """

    name: str
    kind: str
    function: CheckFunction
    slow: bool = False
    needs: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """What the check verifies: the first paragraph of its docstring, on one line."""
        doc = (self.function.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())

    def run(self, subject: Any, context: Context | None = None) -> Finding:
        """The finding of this check on ``subject`` (never raises)."""
        context = Context() if context is None else context
        name = getattr(subject, "name", repr(subject))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # a plugin's numerical warnings are not findings: the checks test the values
            warnings.simplefilter("ignore")
            try:
                message = self.function(subject, context)
            except _Outcome as out:
                return Finding(name, self.kind, self.name, out.severity, str(out))
            except Exception as exc:
                return Finding(name, self.kind, self.name, Severity.FAIL,
                               f"raised {type(exc).__name__}: {exc}{_where(exc)}")
        return Finding(name, self.kind, self.name, Severity.PASS, message or "")

    def __call__(self, subject: Any) -> None:
        """Run the check in a test: raise :class:`ConformanceError` on failure, skip the test
        (pytest) when the check does not apply, and emit a :class:`ConformanceWarning` on a
        warning."""
        found = self.run(subject)
        if found.severity is Severity.FAIL:
            raise ConformanceError([found])
        if found.severity is Severity.WARN:
            warnings.warn(str(found), ConformanceWarning, stacklevel=2)
        if found.severity is Severity.SKIP:
            import pytest  # only the pytest helper needs it

            pytest.skip(found.message)


class ConformanceWarning(UserWarning):
    """A check's warning, in a test."""


#: Libraries whose frames are not where a plugin's mistake is (numpy raises for the plugin).
_LIBRARIES = ("numpy", "scipy", "array_api_strict", "array_api_compat")


def _where(exc: BaseException) -> str:
    """` (at file:line)` of the innermost frame outside the numerical libraries, so that a
    plugin author finds the line at once."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames
           if not any(f"/{lib}/" in f.filename.replace("\\", "/") for lib in _LIBRARIES)]
    if not (own or frames):
        return ""
    last = (own or frames)[-1]
    return f" (at {last.filename}:{last.lineno})"


#: Every check, by kind, in the order they run.
CHECKS: dict[str, dict[str, Check]] = {"problem": {}, "integrator": {}}


def check(kind: str, *, slow: bool = False, needs: tuple[str, ...] = ()
          ) -> Callable[[CheckFunction], CheckFunction]:
    """Decorator adding a function to :data:`CHECKS` under its name (``check_`` removed)."""
    def register(function: CheckFunction) -> CheckFunction:
        name = function.__name__.removeprefix("check_")
        CHECKS[kind][name] = Check(name, kind, function, slow, needs)
        return function
    return register


def run_checks(kind: str, subject: Any, *, slow: bool = False,
               only: Any = None, raises: bool = False) -> list[Finding]:
    """Run the checks of ``kind`` on ``subject``; see :func:`benchsuite.testing.check_problem`."""
    context = Context()
    chosen = [c for c in CHECKS[kind].values()
              if (only is None and (slow or not c.slow)) or (only is not None and c.name in only)]
    if only is not None:
        unknown = set(only) - set(CHECKS[kind])
        if unknown:
            raise ValueError(f"no {kind} check named {sorted(unknown)}; "
                             f"the checks are {sorted(CHECKS[kind])}")
    findings: list[Finding] = []
    failed: set[str] = set()
    for c in chosen:
        broken = [need for need in c.needs if need in failed]
        if broken:  # its premise is false: its own message would only confuse
            found = Finding(getattr(subject, "name", repr(subject)), kind, c.name,
                            Severity.SKIP, f"not run: {', '.join(broken)} failed")
        else:
            found = c.run(subject, context)
        if found.severity is Severity.FAIL:
            failed.add(c.name)
        findings.append(found)
    if raises:
        failed = [f for f in findings if f.severity is Severity.FAIL]
        if failed:
            raise ConformanceError(failed)
    return findings


