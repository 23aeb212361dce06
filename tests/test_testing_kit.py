"""The plugin kit catches deliberately flawed plugins, one flaw each, and passes good ones.

Each flawed problem or integrator differs from a conforming one by exactly one mistake that
would otherwise run without a word and fill the tables with confident labels; the kit must fail
exactly the check that names it, and no other. The built-in catalog passes every check (fast and
slow) through the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from benchsuite import Integrator, Problem, State, Theory, Verdict, uniform_box
from benchsuite.arrays import namespace
from benchsuite.cli import main
from benchsuite.integrator import require_positive
from benchsuite.testing import (
    CHECKS,
    ConformanceError,
    Severity,
    check_integrator,
    check_problem,
    describe_checks,
    parametrize_checks,
)
from benchsuite.testing.reference import quadratic, weighted_l1

# -- a conforming problem and integrator, and their one-flaw variants ------------------------


def _f(X):
    return 0.5 * (X[:, 0] * X[:, 1] - 2.0) ** 2


def _grad(X):
    xp = namespace(X)
    r = X[:, 0] * X[:, 1] - 2.0
    return xp.stack([r * X[:, 1], r * X[:, 0]], axis=1)


def _invariant(X):
    xp = namespace(X)
    return xp.reshape(X[:, 0] ** 2 - X[:, 1] ** 2, (-1, 1))


def _certificate(X, f):
    return np.where(f < 1e-12, "converged_global", "")


def good_problem() -> Problem:
    return Problem(
        name="hyperbola", n=2, f=_f, grad=_grad, invariant=_invariant,
        certificate=_certificate, sample=uniform_box(-2.0, 2.0, 2), f_star=0.0, attained=True,
        smooth=True, coercive=False, critical_values=(0.0, 2.0), critical_values_complete=True,
        theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO, source="test"),
        description="(x y - 2)^2 / 2")


def _sign_error(X):
    g = _grad(X)
    return np.stack([-g[:, 0], g[:, 1]], axis=1)


def _batch_mean(X):  # centres the batch: a row's value depends on the others
    return _f(X - X.mean(axis=0) + X.mean(axis=0).round(0))


def _noisy(X):
    return _f(X) + 1e-9 * np.random.default_rng().random(X.shape[0])


def _mutating(X):
    X[:, 0] = X[:, 0] * 1.0000001  # an in-place write to the caller's array
    return _f(X)


def _ignores_rng(rng, batch):
    return np.random.default_rng(0).uniform(-2, 2, (batch, 2)) + 0 * rng.random()


def _float32_sampler(rng, batch):
    return rng.uniform(-2, 2, (batch, 2)).astype(np.float32)


def _column(X):
    return _f(X)[:, None]


def _integer_f(X):
    return np.round(_f(X)).astype(np.int64)


def _numpy_only(X):  # claims array API, but computes in numpy whatever it gets
    X = np.asarray(X)
    return 0.5 * (X[:, 0] * X[:, 1] - 2.0) ** 2


def _not_invariant(X):
    xp = namespace(X)
    return xp.reshape(X[:, 0] ** 2 + X[:, 1] ** 2, (-1, 1))


def _run_label_certificate(X, f):
    return np.where(f < 1.0, "failed", "")


FLAWED_PROBLEMS = {
    "gradient": dict(grad=_sign_error),
    "rows_independent": dict(f=_batch_mean),
    "deterministic": dict(f=_noisy),
    "sampler": dict(sample=_ignores_rng),
    "oracle_shapes": dict(f=_column),
    "metadata": dict(critical_values=(2.0,)),  # complete, yet without the attained f_star
    "f_star": dict(f_star=0.5, critical_values=(0.5, 2.0)),
    "invariant_conserved": dict(invariant=_not_invariant),
    "certificate": dict(certificate=_run_label_certificate),
    "array_api": dict(f=_numpy_only),
}


def flawed_problem(check: str) -> Problem:
    return dataclasses.replace(good_problem(), name=f"flawed_{check}", **FLAWED_PROBLEMS[check])


def failing(findings) -> set[str]:
    """The failed checks; asserts on the way that the kit itself never crashed (a flawed
    plugin's exception is a finding located in the plugin, never in benchsuite/testing)."""
    crashed = [f for f in findings if "raised" in f.message and "benchsuite/testing" in
               f.message.rsplit("(at ", 1)[-1]]
    assert not crashed, crashed
    return {f.check for f in findings if f.severity is Severity.FAIL}


def test_the_conforming_problem_passes_every_check():
    findings = check_problem(good_problem(), slow=True)
    assert not [f for f in findings if f.severity in (Severity.FAIL, Severity.WARN)], findings
    assert {f.check for f in findings} == set(CHECKS["problem"])


@pytest.mark.parametrize("check", sorted(FLAWED_PROBLEMS))
def test_each_problem_flaw_fails_its_check(check):
    """A flaw may break what depends on it too (a wrong f no longer matches its gradient),
    but the check that names it fails, and nothing crashes."""
    assert check in failing(check_problem(flawed_problem(check), slow=True))


@pytest.mark.parametrize(("flaw", "check"), [(_mutating, "deterministic"),
                                             (_float32_sampler, "sampler"),
                                             (_integer_f, "oracle_shapes")])
def test_more_problem_flaws(flaw, check):
    field = "sample" if flaw is _float32_sampler else "f"
    bad = dataclasses.replace(good_problem(), **{field: flaw})
    assert check in failing(check_problem(bad))


def test_a_nonsmooth_problem_with_a_wrong_selection_or_prox():
    good = weighted_l1()
    assert not failing(check_problem(good, slow=True))
    wrong_sign = dataclasses.replace(good, subgrad=lambda X: -good.subgrad(X))
    assert failing(check_problem(wrong_sign)) == {"subgradient"}
    # an explicit step is not the prox: phi at x - tau g is beaten by the true minimizer
    explicit = dataclasses.replace(good, prox=lambda X, tau: X - tau * good.subgrad(X))
    assert "prox_optimal" in failing(check_problem(explicit))
    # a prox for the wrong tau moves minimizers? no: it is stationary for tau/2 only
    smooth = quadratic()
    half = dataclasses.replace(smooth, prox=lambda X, tau: smooth.prox(X, tau / 2))
    assert failing(check_problem(half)) == {"prox_optimal"}
    shifted = dataclasses.replace(smooth, prox=lambda X, tau: smooth.prox(X, tau) + 1e-3)
    assert {"prox_optimal", "prox_fixed_points"} <= failing(check_problem(shifted))


def tilted_double_well(listed=None) -> Problem:
    """f = x^4/4 - x^2/2 + x/10: a global and a spurious local minimum, and a local maximum."""
    roots = np.sort(np.roots([1.0, 0.0, -1.0, 0.1]).real)
    values = tuple(float(r**4 / 4 - r**2 / 2 + r / 10) for r in roots)
    return Problem(
        name="tilted_double_well", n=1, f=lambda X: X[:, 0]**4 / 4 - X[:, 0]**2 / 2 + X[:, 0] / 10,
        grad=lambda X: X**3 - X + 0.1, sample=uniform_box(-2.0, 2.0, 1), f_star=min(values),
        attained=True, smooth=True, coercive=True,
        critical_values=values if listed is None else listed, critical_values_complete=True,
        theory=Theory(Verdict.YES, Verdict.YES, Verdict.NO, source="test"),
        description="tilted double well")


def test_critical_values_found_by_descent_must_be_listed():
    good = tilted_double_well()
    assert not failing(check_problem(good, slow=True))
    spurious = max(good.critical_values[0], good.critical_values[2])  # the higher minimum
    missing = tilted_double_well(tuple(v for v in good.critical_values if v != spurious))
    assert failing(check_problem(missing, slow=True)) == {"critical_values"}
    assert not failing(check_problem(missing))  # slow: opt-in


def test_raises_on_request_and_names_the_check():
    with pytest.raises(ConformanceError, match="gradient"):
        check_problem(flawed_problem("gradient"), raises=True)
    assert check_problem(good_problem(), raises=True)
    with pytest.raises(ValueError, match="no problem check named"):
        check_problem(good_problem(), checks=["gradiant"])
    only = check_problem(flawed_problem("gradient"), checks="gradient")
    assert [(f.check, f.severity) for f in only] == [("gradient", Severity.FAIL)]


def test_a_plugin_that_raises_fails_the_check_with_the_line():
    def broken(X):
        raise ZeroDivisionError("oops")

    found = check_problem(dataclasses.replace(good_problem(), grad=broken), checks=["gradient"])
    assert found[0].severity is Severity.FAIL
    assert "ZeroDivisionError: oops" in found[0].message and "test_testing_kit.py" in \
        found[0].message


@dataclass(frozen=True)
class Heun(Integrator):
    """Heun's method: x+ = x - h (g(x) + g(x - h g(x))) / 2."""

    h: float = 0.01

    name = "heun"
    requires = frozenset({"grad"})
    order = 2

    def __post_init__(self):
        require_positive(self.name, h=self.h)

    @property
    def explicit_step(self):
        return self.h

    def init(self, oracle, x0):
        return State.start(x0)

    def step(self, oracle, state):
        g = oracle.grad(state.x)
        g2 = oracle.grad(state.x - self.h * g)
        return state.replace(x=state.x - 0.5 * self.h * (g + g2), t=state.t + self.h)


@dataclass(frozen=True)
class ClaimsOrder3(Heun):
    """Heun's method, claiming an order it does not have."""

    name = "claims_order3"
    order = 3


@dataclass(frozen=True)
class Mutates(Heun):
    """Writes the new point into the old state's array."""

    name = "mutates"

    def step(self, oracle, state):
        new = super().step(oracle, state)
        state.x[...] = new.x
        return new


@dataclass(frozen=True)
class BatchStep(Heun):
    """Shrinks every row's step by the batch's largest gradient: rows depend on each other."""

    name = "batch_step"

    def step(self, oracle, state):
        g = oracle.grad(state.x)
        h = self.h / (1.0 + 0.01 * float(np.max(np.abs(g))))
        return state.replace(x=state.x - h * g, t=state.t + h)


@dataclass(frozen=True)
class BatchRetry(Heun):
    """Takes Heun's step, but evaluates the whole batch once more when some row's gradient is
    large: every point is right, yet a row's oracle count depends on its neighbours."""

    name = "batch_retry"

    def step(self, oracle, state):
        norms = np.linalg.norm(oracle.grad(state.x), axis=1)
        if norms.max() > norms.min() + 1e-3:  # the rows differ
            oracle.grad(state.x)
        return super().step(oracle, state)


@dataclass(frozen=True)
class Undeclared(Heun):
    """Heun's method without the fixed-step declaration."""

    name = "undeclared"

    @property
    def explicit_step(self):
        return None

    def with_step(self, h):
        return self.with_params(h=h)


@dataclass(frozen=True)
class WrongLimit(Heun):
    """Heun's method declaring the stability limit of heavy ball."""

    name = "wrong_limit"

    @property
    def stability_limit(self):
        return 3.0


@dataclass(frozen=True)
class Unvalidated(Heun):
    """Accepts any h."""

    name = "unvalidated"

    def __post_init__(self):
        pass


@dataclass(frozen=True)
class ClaimsDescent(Heun):
    """Claims descent, which an explicit method has only below its stability limit."""

    name = "claims_descent"
    h: float = 0.9
    order = None
    descent = True


@dataclass(frozen=True)
class NoSkip(Heun):
    """Needs a gradient, yet runs on nonsmooth problems."""

    name = "no_skip"

    def skip(self, problem):
        return None


@dataclass(frozen=True)
class UndeclaredProx(Undeclared):
    """Calls the prox without requiring it."""

    name = "undeclared_prox"
    requires = frozenset({"subgrad"})
    order = 1

    def step(self, oracle, state):
        return state.replace(x=oracle.prox(state.x, self.h), t=state.t + self.h)


@dataclass(frozen=True)
class Uncounted(Heun):
    """Evaluates the problem directly, so its calls are not counted."""

    name = "uncounted"

    def step(self, oracle, state):
        oracle.problem.f(state.x)
        return super().step(oracle, state)


@dataclass(frozen=True)
class Random(Heun):
    """Adds noise: the same state stepped twice differs."""

    name = "random"

    def step(self, oracle, state):
        new = super().step(oracle, state)
        return new.replace(x=new.x + 1e-12 * np.random.default_rng().random(new.x.shape))


@dataclass(frozen=True)
class HostOnly(Heun):
    """Claims array-API genericity, but steps in numpy."""

    name = "host_only"

    def step(self, oracle, state):
        new = super().step(oracle, state)
        return new.replace(x=np.asarray(new.x))


@dataclass(frozen=True)
class TypoRequires(Heun):
    """Requires an oracle that does not exist."""

    name = "typo_requires"
    requires = frozenset({"gradient"})


FLAWED_INTEGRATORS = {
    "order": ClaimsOrder3(),
    "pure_step": Mutates(),
    "rows_independent": BatchStep(),
    "fixed_step": Undeclared(),
    "hyperparameters": Unvalidated(),
    "descent": ClaimsDescent(),
    "requires": NoSkip(),
    "state": Uncounted(),
    "array_api": HostOnly(),
    "declaration": TypoRequires(),
}


def test_the_conforming_integrator_passes_every_check():
    findings = check_integrator(Heun())
    assert not [f for f in findings if f.severity in (Severity.FAIL, Severity.WARN)], findings


@pytest.mark.parametrize("check", sorted(FLAWED_INTEGRATORS))
def test_each_integrator_flaw_fails_its_check(check):
    assert check in failing(check_integrator(FLAWED_INTEGRATORS[check]))


def test_most_flaws_fail_only_their_own_check():
    """Flaws that break nothing else are reported alone (no noise around the real finding)."""
    for check in ("gradient", "sampler", "metadata", "certificate", "invariant_conserved"):
        found = failing(check_problem(flawed_problem(check)))
        assert found == {check} or (check, found) == ("gradient", {"gradient",
                                                                    "invariant_conserved",
                                                                    "array_api"}), (check, found)
    for check in ("order", "fixed_step", "hyperparameters", "descent", "requires", "state",
                  "array_api", "declaration"):
        assert failing(check_integrator(FLAWED_INTEGRATORS[check])) == {check}
    shapes = check_problem(flawed_problem("oracle_shapes"))
    assert failing(shapes) == {"oracle_shapes"}
    assert {f.message for f in shapes if f.check == "gradient"} == {
        "not run: oracle_shapes failed"}


@pytest.mark.parametrize(("integrator", "check"), [(WrongLimit(), "fixed_step"),
                                                   (UndeclaredProx(), "requires"),
                                                   (Random(), "pure_step"),
                                                   (BatchRetry(), "rows_independent")])
def test_more_integrator_flaws(integrator, check):
    assert check in failing(check_integrator(integrator))


def test_every_check_has_a_flawed_plugin_that_it_catches():
    caught = set(FLAWED_PROBLEMS) | set(FLAWED_INTEGRATORS) | {
        "subgradient", "prox_optimal", "prox_fixed_points", "critical_values",
        "autodiff",  # its flawed gradients are in tests/test_autodiff.py (they need JAX)
        "compiled"}  # its flawed integrator is in tests/test_backends.py (it needs JAX)
    untested = {c for kind in CHECKS.values() for c in kind} - caught
    assert not untested, untested


@parametrize_checks(objects=[good_problem(), Heun()], slow=True)
def test_the_pytest_helper(subject, check):
    check(subject)


# -- the command line ------------------------------------------------------------------------


def test_check_on_the_command_line_prints_json():
    """The whole catalog passes in tests/test_conformance.py; here the command's JSON."""
    result = CliRunner().invoke(main, ["check", "--slow", "--json", "remark*", "rk*"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["counts"]["fail"] == 0 and report["counts"]["warn"] == 0
    subjects = {(f["kind"], f["subject"]) for f in report["findings"]}
    assert subjects == {("problem", "remark1_oscillatory_1d"), ("problem", "remark3_rational_1d"),
                        ("problem", "remark2_infinite_critvals_1d"), ("integrator", "rk23"),
                        ("integrator", "rk45")}


def test_check_exits_1_on_a_flawed_plugin_and_2_on_bad_usage(monkeypatch):
    from benchsuite import hookimpl, plugins

    class Flawed:
        @hookimpl
        def benchsuite_problems(self):
            return [flawed_problem("gradient")]

        @hookimpl
        def benchsuite_integrators(self):
            return [ClaimsOrder3()]

    real = plugins.load_registry

    def with_flawed(**kw):
        return real(**kw, extra_plugins={"flawed": Flawed()})

    monkeypatch.setattr("benchsuite.cli.load_registry", with_flawed)
    result = CliRunner().invoke(main, ["check", "--plugin", "flawed"])
    assert result.exit_code == 1, result.output
    assert "fail  flawed_gradient: gradient:" in result.output
    assert "fail  claims_order3: order: declares order 3" in result.output
    assert "2 subjects" in result.output
    ok = CliRunner().invoke(main, ["check", "mc2x2*", "euler"])
    assert ok.exit_code == 0 and "2 subjects" in ok.output
    for args, message in ((["check", "nosuch*"], "no problem or integrator matches"),
                          (["check", "--plugin", "nosuch"], "no loaded plugin named 'nosuch'")):
        bad = CliRunner().invoke(main, args)
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_the_checks_table_lists_every_check():
    rows = describe_checks()
    assert {r["check"] for r in rows} == {c for kind in CHECKS.values() for c in kind}
    assert all(r["verifies"] for r in rows)
    listed = CliRunner().invoke(main, ["check", "--list-checks"])
    assert listed.exit_code == 0 and all(r["check"] in listed.output for r in rows)


# -- regressions from adversarial testing ----------------------------------------------------


def scaled(problem: Problem, c: float) -> Problem:
    """The same problem with f in other units (f times c)."""
    return dataclasses.replace(problem, f=lambda X: c * problem.f(X),
                               grad=lambda X: c * problem.grad(X),
                               critical_values=tuple(c * v for v in problem.critical_values),
                               f_star=c * problem.f_star, certificate=None)


@pytest.mark.parametrize("c", [1e-10, 1e10])
def test_findings_do_not_depend_on_the_units_of_f(c):
    assert not failing(check_problem(scaled(good_problem(), c), slow=True))
    # a prox in other units: prox of c f at tau is the prox of f at c tau (rounding of
    # P - X when the prox barely moves is no finding)
    q = quadratic()
    assert not failing(check_problem(dataclasses.replace(
        scaled(q, c), prox=lambda X, tau: q.prox(X, tau * c)), slow=True))
    for check in ("gradient", "invariant_conserved", "f_star"):
        assert check in failing(check_problem(scaled(flawed_problem(check), c))), check
    missing = scaled(tilted_double_well(), c)
    spurious = sorted(missing.critical_values)[1]
    missing = dataclasses.replace(missing, critical_values=tuple(
        v for v in missing.critical_values if v != spurious))
    assert "critical_values" in failing(check_problem(missing, slow=True))


def test_a_gradient_right_only_in_the_sampling_box_is_caught():
    clipped = dataclasses.replace(good_problem(), grad=lambda X: _grad(np.clip(X, -2, 2)))
    assert "gradient" in failing(check_problem(clipped))


def test_a_subgradient_that_is_nan_at_a_kink_is_caught():
    nan_at_kink = dataclasses.replace(weighted_l1(), subgrad=lambda X: X / np.abs(X))
    assert "oracle_shapes" in failing(check_problem(nan_at_kink))


def test_read_only_oracle_outputs_are_fine():
    def frozen(fn):
        def wrapper(X):
            out = np.asarray(fn(X))
            out.flags.writeable = False
            return out
        return wrapper

    p = good_problem()
    assert not failing(check_problem(dataclasses.replace(p, f=frozen(p.f), grad=frozen(p.grad),
                                                         array_api=False), slow=True))


def test_metadata_contradictions():
    for change in (dict(coercive=True, f_star=-math.inf, attained=False,
                        critical_values=(), critical_values_complete=False),
                   dict(coercive=True, theory=Theory(Verdict.NO, Verdict.NO, Verdict.NO, "x"))):
        assert "metadata" in failing(check_problem(dataclasses.replace(good_problem(),
                                                                       **change)))


@dataclass(frozen=True)
class LinearOnlyRK3(Heun):
    """A 3-stage Runge-Kutta with a tableau typo: order 3 on linear flows only."""

    name = "linear_only_rk3"
    order = 3

    def step(self, oracle, state):
        h = self.h
        k1 = -oracle.grad(state.x)
        k2 = -oracle.grad(state.x + h * k1)
        k3 = -oracle.grad(state.x + h * (k1 / 3 + 2 * k2 / 3))
        return state.replace(x=state.x + h * (k1 + k3) / 2, t=state.t + h)


@dataclass(frozen=True)
class TupleField(Heun):
    """Keeps the previous gradient in a field that is not a batch array."""

    name = "tuple_field"
    order = 1

    def init(self, oracle, x0):
        return HistoryState.start(x0, history=(oracle.grad(x0),))

    def step(self, oracle, state):
        g = oracle.grad(state.x)
        x = state.x - self.h * (1.5 * g - 0.5 * state.history[0])
        return state.replace(x=x, t=state.t + self.h, history=(g,))


@dataclass(frozen=True)
class HistoryState(State):
    history: tuple = ()


@dataclass(frozen=True)
class UnitsSlip(Heun):
    """with_step(h) takes h in milliseconds."""

    name = "units_slip"

    def with_step(self, h):
        return self.with_params(h=h * 1e-6)


@dataclass(frozen=True)
class ImplicitEuler(Heun):
    """Implicit Euler through the prox: A-stable, declares an infinite stability limit."""

    name = "implicit_euler"
    requires = frozenset({"prox"})
    order = 1

    @property
    def stability_limit(self):
        return math.inf

    def skip(self, problem):
        return None if problem.prox is not None else "needs a prox"

    def step(self, oracle, state):
        return state.replace(x=oracle.prox(state.x, self.h), t=state.t + self.h)


def test_integrator_regressions():
    assert "order" in failing(check_integrator(LinearOnlyRK3()))  # caught on (xy - 1)^2
    assert "rows_independent" in failing(check_integrator(TupleField()))
    assert "order" in failing(check_integrator(UnitsSlip()))  # refused, not 5e7 steps
    assert not failing(check_integrator(ImplicitEuler()))


def test_a_plugin_that_fails_to_import_is_a_failure_when_asked_for(monkeypatch):
    import importlib.metadata

    from benchsuite import plugins

    broken = importlib.metadata.EntryPoint(name="broken_import", group=plugins.GROUP,
                                           value="broken_plugins.raises_at_import")
    real = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [*real(), broken])
    named = CliRunner().invoke(main, ["check", "--plugin", "broken_import", "--json"])
    assert named.exit_code == 1, named.output
    (finding,) = json.loads(named.stdout)["findings"]
    assert (finding["kind"], finding["check"], finding["severity"]) == ("plugin", "load", "fail")
    other = CliRunner().invoke(main, ["check", "euler"])  # an unrelated broken plugin
    assert other.exit_code == 0, other.output
