"""Every registered problem and integrator (built-in or installed plugin) passes the plugin kit.

The contract tests are the kit's own checks (:mod:`benchsuite.testing`), parametrized with the
same helper a third-party plugin uses, like diffrax's ``all_ode_solvers`` or scikit-learn's
``parametrize_with_checks``: one test per object and check.
"""

from __future__ import annotations

from conftest import INTEGRATORS, PROBLEMS

from benchsuite.testing import parametrize_checks


@parametrize_checks(objects=[*PROBLEMS, *INTEGRATORS], slow=True)
def test_conformance(subject, check):
    check(subject)
