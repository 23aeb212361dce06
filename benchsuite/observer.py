"""Run observers: told about a campaign while it runs (progress bars, trackers, notifications).

An observer implements any of the methods of :class:`RunObserver`; missing ones are skipped.
Plugins contribute observers through the ``benchsuite_observers`` hook. An observer that raises
is reported once and dropped: observing must never stop a campaign or lose results.

Two come with benchsuite: :class:`ProgressBar` (a tqdm bar, for terminals) and
:class:`ProgressLog` (a plain line every so often, for logs: CI, ``nohup``, a pipe).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm

from benchsuite.vocabulary import OUTCOMES


class RunObserver(Protocol):
    """What an observer may implement (all optional)."""

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        """Called once, with the cells still to run (finished ones of a resumed run excluded)."""

    def shards_planned(self, count: int) -> None:
        """Called once after ``campaign_started``, with the number of shards to run (a cell of
        more than ``shard_size`` trajectories runs as several)."""

    def shard_finished(self, cell: Any, shard: int, result: Any) -> None:
        """Called after each shard is written to disk, with its :class:`CellResult` (its rows
        only: numbered cell-wide in the ``traj`` column)."""

    def cell_finished(self, cell: Any, result: Any) -> None:
        """Called once a cell is written whole, with the result of its last shard (the whole
        cell's when it has one shard)."""

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


def outcome_counts(result: Any, into: Counter[str]) -> None:
    """Add a finished cell's trajectories, by outcome, to ``into`` (a skipped cell counts as
    ``skipped cells``)."""
    if result.skipped is not None:
        into["skipped cells"] += 1
    elif len(result.trajectories):
        into.update(result.trajectories["outcome"].astype(str))


def outcome_phrase(counts: dict[str, int] | Counter[str]) -> str:
    """``37 converged_global, 49 undetermined``: nonzero counts, outcomes in display order."""
    order = {name: i for i, name in enumerate(OUTCOMES)}
    keys = sorted((k for k, n in counts.items() if n), key=lambda k: (order.get(k, len(order)), k))
    return ", ".join(f"{counts[k]} {k}" for k in keys)


class ProgressBar:
    """A tqdm bar over shards (cells, when no cell is split): done, ETA, and live counts of
    how trajectories stopped."""

    def __init__(self, disable: bool | None = None) -> None:
        self._disable = disable
        self._bar: Any = None
        self._counts: Counter[str] = Counter()
        self._cells = 0

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        self._cells = len(cells)

    def shards_planned(self, count: int) -> None:
        if not count:  # every cell was already done: an empty bar would say nothing
            return
        self._bar = tqdm(total=count, unit="cell" if count == self._cells else "shard",
                         desc="benchsuite", disable=self._disable, dynamic_ncols=True)

    def shard_finished(self, cell: Any, shard: int, result: Any) -> None:
        outcome_counts(result, self._counts)
        self._bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self._counts.items())),
                                  refresh=False)
        self._bar.update(1)

    def campaign_finished(self, run_dir: Any) -> None:
        if self._bar is not None:
            self._bar.close()


#: Seconds between two progress lines when stderr is not a terminal (CI logs), unless the
#: environment variable :data:`ENV_INTERVAL` says otherwise.
DEFAULT_INTERVAL = 30.0
ENV_INTERVAL = "BENCHSUITE_PROGRESS_INTERVAL"


def progress_interval() -> float:
    """Seconds between progress lines: ``$BENCHSUITE_PROGRESS_INTERVAL`` when it is a number
    >= 0, else :data:`DEFAULT_INTERVAL`."""
    raw = os.environ.get(ENV_INTERVAL, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """``42s``, ``1m02s``, ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Progress as plain lines, for logs where a bar would be noise (stderr not a terminal).

    A line at most every ``interval`` seconds, written when a cell finishes (no thread: the
    workers are forked, and a thread writing at that moment could leave them a held lock), and
    always one when the campaign ends (a campaign shorter than ``interval`` prints just that
    one), unless the last line said it already or there was no cell to run::

        benchsuite: 12/228 cells (5%), 1m02s elapsed, ETA 3m10s; outcomes: 37 converged_global,
        49 undetermined

    Parameters
    ----------
    interval : float, optional
        Seconds between lines (default: :func:`progress_interval`).
    stream : text file, optional
        Where lines go (default: ``sys.stderr`` at the time of writing).
    clock : callable
        Monotonic seconds (tests).
    """

    def __init__(self, interval: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = progress_interval() if interval is None else interval
        self._stream, self._clock = stream, clock
        self._counts: Counter[str] = Counter()
        self._cells = self._total = self._done = 0
        self._start = self._last = 0.0
        self._said_done = -1

    def campaign_started(self, campaign: Any, cells: list[Any]) -> None:
        self._cells, self._total, self._done = len(cells), len(cells), 0
        self._start = self._last = self._clock()

    def shards_planned(self, count: int) -> None:
        self._total = count

    def shard_finished(self, cell: Any, shard: int, result: Any) -> None:
        self._done += 1
        outcome_counts(result, self._counts)
        now = self._clock()
        if now - self._last >= self.interval:
            self._write(now)

    def campaign_finished(self, run_dir: Any) -> None:
        # the closing line, even after a run shorter than the interval (the log then says
        # how long it took and how the trajectories ended)
        if self._total and self._said_done != self._done:
            self._write(self._clock())

    def line(self, now: float) -> str:
        """The progress line at monotonic time ``now``."""
        elapsed = now - self._start
        share = self._done / self._total if self._total else 1.0
        unit = "cells" if self._total == self._cells else "shards"
        text = (f"benchsuite: {self._done}/{self._total} {unit} ({share:.0%}), "
                f"{duration(elapsed)} elapsed")
        if 0 < self._done < self._total:
            text += f", ETA {duration(elapsed / self._done * (self._total - self._done))}"
        if self._counts:
            skipped = self._counts.get("skipped cells", 0)
            shown = outcome_phrase({k: n for k, n in self._counts.items()
                                    if k != "skipped cells"})
            text += "; outcomes: " + (shown or "none yet")
            if skipped:
                text += f"; {skipped} skipped cell{'s' if skipped != 1 else ''}"
        return text

    def _write(self, now: float) -> None:
        self._last, self._said_done = now, self._done
        stream = self._stream or sys.stderr
        print(self.line(now), file=stream, flush=True)
