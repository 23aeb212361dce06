"""Run observers: told about a campaign while it runs (progress bars, trackers, notifications).

An observer implements any of the methods of :class:`RunObserver`; missing ones are skipped.
Plugins contribute observers through the ``benchsuite_observers`` hook. An observer that raises
is reported once and dropped: observing must never stop a campaign or lose results.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Protocol

from tqdm.auto import tqdm


class RunObserver(Protocol):
    """What an observer may implement (all optional)."""

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        """Called once, with the cells still to run (finished ones of a resumed run excluded)."""

    def cell_finished(self, cell: Any, result: Any) -> None:
        """Called after each cell is written to disk, with its :class:`CellResult`."""

    def campaign_finished(self, run_dir: Any) -> None:
        """Called once, with the run directory."""


class Observers:
    """Fan a call out to several observers, dropping any that raise."""

    def __init__(self, observers: list[Any]) -> None:
        self._observers = list(observers)

    def notify(self, method: str, *args: Any) -> None:
        for obs in list(self._observers):
            fn = getattr(obs, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as exc:  # an observer must never stop the campaign
                warnings.warn(f"observer {obs!r} raised in {method} and was dropped: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
                self._observers.remove(obs)


class ProgressBar:
    """A tqdm bar over cells: cells done, ETA, and live counts of how trajectories stopped."""

    def __init__(self, disable: bool | None = None) -> None:
        self._disable = disable
        self._bar: Any = None
        self._counts: Counter[str] = Counter()

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        self._bar = tqdm(total=len(cells), unit="cell", desc="benchsuite", disable=self._disable,
                         dynamic_ncols=True)

    def cell_finished(self, cell: Any, result: Any) -> None:
        if result.skipped is not None:
            self._counts["skipped cells"] += 1
        elif len(result.trajectories):
            self._counts.update(result.trajectories["outcome"].astype(str))
        self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self._counts.items())),
                                  refresh=False)
        self._bar.update(1)

    def campaign_finished(self, run_dir: Any) -> None:
        if self._bar is not None:
            self._bar.close()
