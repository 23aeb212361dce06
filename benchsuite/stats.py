"""The statistics the report, the evidence section and ``compare`` share: Wilson and Newcombe
intervals of proportions, and multiple-testing corrections.

Closed forms in numpy, vectorised over cells, and light to import (no scipy at import time).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: Any, trials: Any, confidence: float = CONFIDENCE
           ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals of binomial proportions ``successes / trials``.

    Equal to ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``,
    vectorised; the ends are exact (0 and 1) at ``k = 0`` and ``k = n``, and NaN where
    ``n = 0``.

    Returns
    -------
    low, high : ndarray
    """
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    z = _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        center = (k + z**2 / 2) / (n + z**2)
        half = z / (n + z**2) * np.sqrt(k * (n - k) / n + z**2 / 4)
    # exact ends at k = 0 and k = n (the formula leaves rounding dust there)
    low = np.where(n > 0, np.where(k == 0, 0.0, np.clip(center - half, 0.0, 1.0)), np.nan)
    high = np.where(n > 0, np.where(k == n, 1.0, np.clip(center + half, 0.0, 1.0)), np.nan)
    return low, high


def newcombe(k1: Any, n1: Any, k2: Any, n2: Any, confidence: float = CONFIDENCE
             ) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for ``p1 - p2`` (Newcombe 1998, method 10), built
    from the Wilson interval of each sample.

    Returns
    -------
    low, high : ndarray
        ``d - sqrt((p1 - l1)^2 + (u2 - p2)^2)`` and ``d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``
        with ``d = p1 - p2`` and ``(l, u)`` the Wilson interval of each sample.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p1 = np.asarray(k1, dtype=float) / np.asarray(n1, dtype=float)
        p2 = np.asarray(k2, dtype=float) / np.asarray(n2, dtype=float)
    (l1, u1), (l2, u2) = wilson(k1, n1, confidence), wilson(k2, n2, confidence)
    d = p1 - p2
    return (d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def holm(p: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values: ``max_{j<=i} min(1, (m - j + 1) p_(j))`` in the
    order of increasing p (controls the family-wise error rate under any dependence)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(steps)
    return adjusted


def adjust(p: Any, correction: str = "holm") -> np.ndarray:
    """Adjusted p-values over the finite entries of ``p`` (NaN stays NaN: no test);
    ``correction`` is ``"holm"`` or ``"bh"`` (Benjamini-Hochberg, scipy's
    ``false_discovery_control``)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        if correction == "holm":
            out[ok] = holm(p[ok])
        else:
            from scipy.stats import false_discovery_control

            out[ok] = false_discovery_control(p[ok])
    return out


def percent(value: float) -> str:
    """A proportion as a percentage for tables: ``45%``; below 1%, one more digit (``0.1%``),
    so that the upper bound after 0 of 4000 does not read as 0%."""
    return f"{value:.1%}" if 0 < value < 0.01 else f"{value:.0%}"
