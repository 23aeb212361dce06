"""Gradients by automatic differentiation (JAX): a problem may give only f.

The catalog's hand-written gradients equal JAX's derivatives of their f; a problem that gives
only f runs on the default numpy backend exactly like the same problem with its gradient
written by hand; the derived gradient stays a JAX array under ``jax.jit``; the kit's
``autodiff`` check catches a wrong hand-written gradient, down to errors that finite
differences cannot see; and ``Problem`` refuses the declarations that make no sense.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import INTEGRATORS, PROBLEMS

from benchsuite import Budget, Problem, Theory, Verdict, run_cell, uniform_box
from benchsuite.arrays import namespace
from benchsuite.autodiff import (
    AutodiffError,
    AutodiffUnavailable,
    autodiff_gradient,
    jax_installed,
)
from benchsuite.testing import Severity, check_problem

needs_jax = pytest.mark.skipif(not jax_installed(), reason="jax is not installed")

# -- a problem with a hand-written gradient, and the same problem with f only ----------------


def _f(X):
    return 0.5 * (X[:, 0] * X[:, 1] - 2.0) ** 2


def _grad(X):
    xp = namespace(X)
    r = X[:, 0] * X[:, 1] - 2.0
    return xp.stack([r * X[:, 1], r * X[:, 0]], axis=1)


def hyperbola(**fields) -> Problem:
    given = dict(
        name="autodiff_hyperbola", n=2, f=_f, grad=_grad, sample=uniform_box(-2.0, 2.0, 2),
        f_star=0.0, attained=True, smooth=True, coercive=False,
        critical_values=(0.0, 2.0), critical_values_complete=True,
        theory=Theory(Verdict.YES, Verdict.NO, Verdict.NO, source="test"),
        description="(x y - 2)^2 / 2")
    given.update(fields)
    return Problem(**given)


def f_only() -> Problem:
    """The README's example: the gradient comes from f."""
    return hyperbola(name="autodiff_hyperbola_f_only", grad=None, autodiff=True)


README = Path(__file__).resolve().parents[1] / "README.md"


@needs_jax
def test_the_readme_example_of_a_problem_with_only_f():
    """The guide's autodiff block (left out of its script, as JAX is optional) builds a
    problem whose gradient is the guide's hand-written one."""
    text = README.read_text()
    start = text.index("    hyperbola_autodiff = Problem(")
    block = []
    for line in text[start:].splitlines():
        if not line.startswith("    "):
            break
        block.append(line[4:])
    names = dict(Problem=Problem, Theory=Theory, Verdict=Verdict, uniform_box=uniform_box,
                 hyperbola_f=_f)
    exec("\n".join(block), names)
    problem = names["hyperbola_autodiff"]
    X = problem.sample(np.random.default_rng(0), 8)
    assert problem.autodiff and problem.details()["gradient"] == "autodiff (JAX)"
    np.testing.assert_allclose(problem.grad(X), _grad(X), rtol=1e-13)


# -- (a) the catalog: hand-written gradients equal autodiff's ---------------------------------

HAND_WRITTEN = [p for p in PROBLEMS if p.smooth and p.array_api and not p.autodiff]


@needs_jax
@pytest.mark.parametrize("problem", HAND_WRITTEN, ids=[p.name for p in HAND_WRITTEN])
def test_every_hand_written_catalog_gradient_is_the_autodiff_one(problem):
    """64 points: 32 sampled and 32 sampled times 10 (trajectories leave the sampling box);
    rows where f, or either gradient, overflows are left out, never more than half."""
    X = problem.sample(np.random.default_rng(0), 64)
    X[32:] *= 10.0
    hand = np.asarray(problem.grad(X), dtype=np.float64)
    auto = autodiff_gradient(problem.f)(X)
    assert isinstance(auto, np.ndarray) and auto.dtype == np.float64 and auto.shape == X.shape
    with np.errstate(all="ignore"):
        finite = (np.isfinite(np.asarray(problem.f(X))) & np.isfinite(hand).all(axis=1)
                  & np.isfinite(auto).all(axis=1))
    assert finite.sum() >= 32, f"only {finite.sum()} rows to compare"
    norm = np.linalg.norm(hand[finite], axis=1)
    scale = norm + np.median(norm)
    rel = np.linalg.norm(auto[finite] - hand[finite], axis=1) / scale
    assert rel.max() <= 1e-8, f"row {np.argmax(rel)}: relative difference {rel.max():.3g}"


# -- (b) a problem with only f runs on numpy like the hand-written one ------------------------


@needs_jax
def test_a_problem_with_only_f_runs_like_the_hand_written_one():
    euler = next(i for i in INTEGRATORS if i.name == "euler")
    hand, auto = hyperbola(), f_only()
    x0 = hand.sample(np.random.default_rng(3), 16)
    budget = Budget(t_max=20.0)
    ran = [run_cell(p, euler, x0, budget, draw_landscape=False).trajectories
           for p in (hand, auto)]
    assert list(ran[0]["outcome"]) == list(ran[1]["outcome"])
    assert (ran[0]["outcome"] == "converged_global").all()
    assert list(ran[0]["steps"]) == list(ran[1]["steps"])
    want, got = np.stack(ran[0]["x"]), np.stack(ran[1]["x"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0)


@needs_jax
def test_the_derived_gradient_is_an_oracle_like_a_hand_written_one():
    """numpy in, writable float64 numpy out, for every batch size (a shrinking batch is padded
    to a power of two: the padding never shows); array_api_strict in, array_api_strict out."""
    grad = f_only().grad
    X = uniform_box(-2.0, 2.0, 2)(np.random.default_rng(0), 13)
    for rows in (1, 2, 3, 5, 13):
        got = grad(X[:rows])
        assert type(got) is np.ndarray and got.dtype == np.float64 and got.flags.writeable
        np.testing.assert_allclose(got, _grad(X[:rows]), rtol=1e-13)
    assert grad(X[:0]).shape == (0, 2)
    xps = pytest.importorskip("array_api_strict")
    strict = grad(xps.asarray(X))
    assert type(strict).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(strict), _grad(X), rtol=1e-13)


@needs_jax
def test_an_unhashable_f_is_differentiated_too():
    """A callable dataclass is no cache key: its gradient is compiled once per grad."""

    @dataclasses.dataclass
    class Scaled:
        c: float

        def __call__(self, X):
            return self.c * _f(X)

    grad = autodiff_gradient(Scaled(3.0))
    X = uniform_box(-2.0, 2.0, 2)(np.random.default_rng(4), 5)
    np.testing.assert_allclose(grad(X), 3.0 * _grad(X), rtol=1e-13)
    np.testing.assert_allclose(grad(X[:2]), 3.0 * _grad(X[:2]), rtol=1e-13)


# -- (c) JAX arrays stay JAX arrays, also under jax.jit --------------------------------------


@needs_jax
def test_jax_arrays_in_jax_arrays_out_inside_jit():
    import jax

    jax.config.update("jax_enable_x64", True)
    grad = f_only().grad
    X = uniform_box(-2.0, 2.0, 2)(np.random.default_rng(1), 8)
    x = jax.numpy.asarray(X)
    eager = grad(x)
    assert isinstance(eager, jax.Array) and eager.dtype == jax.numpy.float64
    # inside a trace there is no host value: a conversion to numpy would raise here
    step = jax.jit(lambda x: x - 0.1 * grad(x))
    stepped = step(x)
    assert isinstance(stepped, jax.Array)
    np.testing.assert_allclose(np.asarray(eager), _grad(X), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(stepped), X - 0.1 * _grad(X), rtol=1e-13)


@needs_jax
def test_an_f_that_jax_cannot_trace_is_named_with_what_to_change():
    def numpy_only(X):
        X = np.asarray(X)
        return 0.5 * (X[:, 0] * X[:, 1] - 2.0) ** 2

    def branches(X):
        return X[:, 0] ** 2 if float(X[0, 0]) > 0 else X[:, 1] ** 2

    def writes(X):
        Y = X * 1.0
        Y[:, 0] = 0.0
        return Y[:, 1] ** 2

    X = np.ones((4, 2))
    for f, said in ((numpy_only, "numpy-only"), (branches, "branches in Python"),
                    (writes, "in place")):
        with pytest.raises(AutodiffError, match=said):
            autodiff_gradient(f)(X)
    claims = hyperbola(name="numpy_only_claims_array_api", f=numpy_only)
    (found,) = check_problem(claims, checks=["autodiff"])
    assert found.severity is Severity.FAIL and "numpy-only" in found.message


# -- (d) the kit's autodiff check ------------------------------------------------------------


def _sign_error(X):  # array-API generic, so that only the gradient is wrong
    xp = namespace(X)
    g = _grad(X)
    return xp.stack([-g[:, 0], g[:, 1]], axis=1)


def _factor_off_by_1e7(X):  # say a constant written with too few digits
    return _grad(X) * (1.0 + 1e-7)


@needs_jax
def test_the_kit_checks_a_hand_written_gradient_against_autodiff():
    (good,) = check_problem(hyperbola(), checks=["autodiff"])
    assert good.severity is Severity.PASS, good
    (bad,) = check_problem(hyperbola(grad=_sign_error), checks=["autodiff"])
    assert bad.severity is Severity.FAIL
    for part in ("worst row", "x = [", "grad = [", "autodiff = [", "coordinate 0"):
        assert part in bad.message, bad.message
    # in a full run finite differences name the sign error first; autodiff does not repeat it
    full = {f.check: f for f in check_problem(hyperbola(grad=_sign_error), slow=True)}
    assert full["gradient"].severity is Severity.FAIL
    assert full["autodiff"].message == "not run: gradient failed"
    # an error of 1e-7 passes finite differences (1e-6) and is caught by autodiff alone
    subtle = check_problem(hyperbola(grad=_factor_off_by_1e7), slow=True)
    assert {f.check for f in subtle if f.severity is Severity.FAIL} == {"autodiff"}


@needs_jax
@pytest.mark.parametrize("c", [1e-10, 1e10])
def test_the_autodiff_check_does_not_depend_on_the_units_of_f(c):
    def scaled(grad):
        return hyperbola(f=lambda X: c * _f(X), grad=lambda X: c * grad(X),
                         critical_values=(0.0, 2.0 * c))

    (good,) = check_problem(scaled(_grad), checks=["autodiff"])
    (bad,) = check_problem(scaled(_factor_off_by_1e7), checks=["autodiff"])
    assert (good.severity, bad.severity) == (Severity.PASS, Severity.FAIL)


def test_the_autodiff_check_skips_what_it_cannot_compare(monkeypatch):
    nonsmooth = hyperbola(smooth=False, grad=None, subgrad=_grad)
    numpy_only = hyperbola(array_api=False)
    expected = [(nonsmooth, "nonsmooth"), (numpy_only, "numpy-only")]
    if jax_installed():
        expected.append((f_only(), "the gradient is the autodiff one"))
    for problem, why in expected:
        (found,) = check_problem(problem, checks=["autodiff"])
        assert found.severity is Severity.SKIP and why in found.message, found
    monkeypatch.setitem(sys.modules, "jax", None)  # as if JAX were not installed
    (found,) = check_problem(hyperbola(), checks=["autodiff"])
    assert found.severity is Severity.SKIP and "pip install jax" in found.message


@needs_jax
def test_a_problem_with_only_f_passes_the_kit():
    findings = check_problem(f_only(), slow=True)
    assert not [f for f in findings if f.severity in (Severity.FAIL, Severity.WARN)], findings


# -- (e) what Problem refuses, and dataclasses.replace ---------------------------------------


def test_problem_refuses_autodiff_declarations_that_make_no_sense():
    with pytest.raises(ValueError, match="autodiff=True needs smooth=True"):
        hyperbola(smooth=False, grad=None, subgrad=_grad, autodiff=True)
    with pytest.raises(ValueError, match="drop grad to derive the gradient from f, or drop "
                                         "autodiff=True"):
        hyperbola(autodiff=True)
    with pytest.raises(ValueError, match="autodiff=True needs array_api=True"):
        hyperbola(grad=None, autodiff=True, array_api=False)
    with pytest.raises(ValueError, match="must provide grad, or set autodiff=True to derive "
                                         "it from f with JAX"):
        hyperbola(grad=None)


def test_without_jax_autodiff_says_pip_install_jax(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ImportError, match="pip install jax") as caught:
        f_only()
    assert isinstance(caught.value, AutodiffUnavailable)


@needs_jax
def test_dataclasses_replace_keeps_a_derived_gradient_derived():
    problem = f_only()
    assert problem.autodiff and getattr(problem.grad, "__benchsuite_autodiff__", False)
    assert problem.details()["gradient"] == "autodiff (JAX)"
    assert hyperbola().details()["gradient"] == "hand-written"
    renamed = dataclasses.replace(problem, name="renamed")
    X = problem.sample(np.random.default_rng(2), 4)
    np.testing.assert_allclose(renamed.grad(X), _grad(X), rtol=1e-13)
    # a new f gets its own derivative, not the old f's
    doubled = dataclasses.replace(problem, f=lambda X: 2.0 * _f(X))
    np.testing.assert_allclose(doubled.grad(X), 2.0 * _grad(X), rtol=1e-13)
    # a hand-written gradient in its place, or autodiff switched off with the derived one kept
    hand = dataclasses.replace(problem, grad=_grad, autodiff=False)
    assert hand.grad is _grad and hand.details()["gradient"] == "hand-written"
    with pytest.raises(ValueError, match="derived from f by autodiff, yet autodiff=False"):
        dataclasses.replace(problem, autodiff=False)
    with pytest.raises(ValueError, match="drop grad"):
        dataclasses.replace(problem, grad=_grad)
