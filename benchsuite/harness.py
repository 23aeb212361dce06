"""The harness: the only loop. Runs one integrator on one problem over a batch of trajectories.

As scipy's ``solve_ivp`` and diffrax's ``diffeqsolve`` own the loop around a stepper, the
harness owns budgets, log-spaced recording, retiring finished rows, and turning exceptions and
non-finite values into a per-trajectory stop reason with a message. Integrators only step.

Results are a function of the campaign, the seed and the code, never of the machine: the
budgets that end a trajectory are deterministic (flow time, steps, oracle calls), and the
wall-time limit of a cell is only a safety net. A row it stops is ``undetermined`` and carries
no finding. Undetermined rows can be *extended* (``Budget.extend``): re-run from their initial
points with every deterministic budget doubled, until they are decided or the cap is reached,
so that each extended row is exactly what one run with its final budget gives.

Recording is on log-spaced checkpoints, in steps (``1, 2, 4, ...``, ``per_octave`` per doubling)
and in flow time (``t_min * 2**(j/per_octave)``), so memory and output grow as O(B log T).
Recording is observation, not algorithm cost: its evaluations of f and of the gradient norm go to
the problem directly and are not counted as oracle calls.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchsuite.arrays import namespace, to_numpy
from benchsuite.backends import Backend, resolve, skip_reason
from benchsuite.batches import CompiledBatch, EagerBatch, Limits
from benchsuite.classify import classify
from benchsuite.columns import point_column
from benchsuite.integrator import Flag, Integrator, RowErrors, State
from benchsuite.oracle import Oracle, checked
from benchsuite.problem import Problem
from benchsuite.vocabulary import DETERMINISTIC_BUDGETS, OUTCOMES, STOP_MESSAGES, Outcome, Stop

#: Flow time is a running sum of steps: 1000 steps of 0.01 add up to 9.99999999999998. A
#: trajectory within this relative distance of t_max (or of a checkpoint) has reached it.
T_MAX_RTOL = 1e-12
#: Checkpoints also carry the point itself for problems of at most this dimension, so the
#: report can draw trajectories on the landscape (Figures 2 and 3 of the paper).
POINTS_MAX_DIM = 3
#: 2-D problems: f is recorded on a LANDSCAPE_GRID x LANDSCAPE_GRID grid around the cell's
#: points, within +-LANDSCAPE_BOX (escaping trajectories would otherwise flatten the picture).
LANDSCAPE_GRID, LANDSCAPE_BOX = 100, 12.0
#: Check the whole state for non-finite entries every this many steps (cheap, but not free).
FINITE_CHECK_EVERY = 16

#: Stop reasons as small integer codes on the hot path; integrator flags keep their values.
STOP_NAMES = np.array(["", *(f.stop for f in Flag if f),
                       *(s for s in Stop if s not in {f.stop for f in Flag if f})], dtype=object)
STOP_CODES = {Stop(name): code for code, name in enumerate(STOP_NAMES) if name}
assert all(STOP_CODES[f.stop] == f for f in Flag if f)
BAD_START = ("f or its (sub)gradient is not finite at the initial point: the sampler drew a "
             "point outside the problem's domain, or an oracle overflows there")
#: The most doublings of the budget an extension may ask for (2^10 = 1024 times the budget).
MAX_EXTEND = 10


@dataclass(frozen=True)
class Budget:
    """When a trajectory stops: whichever limit comes first.

    Parameters
    ----------
    t_max : float
        Flow time (the sum of accepted steps): integrators are compared at equal t.
    max_steps : int
        Step attempts per trajectory (rejected adaptive steps count).
    max_evals : int, optional
        Oracle calls per trajectory, all oracles together.
    wall_time : float
        Seconds for the whole cell: a safety net against a hung or runaway cell, not a
        budget. Rows it stops are ``undetermined``; size the deterministic budgets so that it
        is never reached.
    extend : int
        Re-run the trajectories left ``undetermined`` by a deterministic budget with every
        deterministic budget doubled, at most this many times (0: never).
    """

    t_max: float = 100.0
    max_steps: int = 100_000
    max_evals: int | None = None
    wall_time: float = 600.0
    extend: int = 0

    def __post_init__(self) -> None:
        for key in ("t_max", "max_steps", "wall_time"):
            value = getattr(self, key)
            if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"budget {key} must be a finite number > 0, got {value!r}")
        if self.max_evals is not None and self.max_evals <= 0:
            raise ValueError(f"budget max_evals must be > 0, got {self.max_evals!r}")
        if (not isinstance(self.extend, int) or isinstance(self.extend, bool)
                or not 0 <= self.extend <= MAX_EXTEND):
            raise ValueError(f"budget extend must be an integer from 0 to {MAX_EXTEND} "
                             f"(doublings of the budget), got {self.extend!r}")

    def scaled(self, factor: int) -> Budget:
        """This budget with every deterministic limit multiplied by ``factor`` (an extension)."""
        return Budget(t_max=self.t_max * factor, max_steps=self.max_steps * factor,
                      max_evals=None if self.max_evals is None else self.max_evals * factor,
                      wall_time=self.wall_time, extend=0)


@dataclass(frozen=True)
class Recording:
    """Which checkpoints are stored: ``per_octave`` per doubling of steps and of flow time from
    ``t_min``, for the first ``trajectories`` trajectories of each cell (by index; None: all).

    Restricting ``trajectories`` shrinks a very large cell's checkpoint table, never its
    verdicts: every trajectory is still classified from its full history, and every
    trajectory keeps its row.
    """

    per_octave: int = 2
    t_min: float = 1e-2
    trajectories: int | None = None

    def time_grid(self, t_max: float) -> np.ndarray:
        if t_max <= self.t_min:
            return np.array([t_max])
        count = math.ceil(self.per_octave * math.log2(t_max / self.t_min))
        grid = self.t_min * 2.0 ** (np.arange(count + 1) / self.per_octave)
        return np.append(grid[grid < t_max], t_max)

    def step_grid(self, max_steps: int) -> set[int]:
        count = math.ceil(self.per_octave * math.log2(max(max_steps, 2)))
        steps = np.unique(np.round(2.0 ** (np.arange(count + 1) / self.per_octave)))
        return {int(s) for s in steps if s <= max_steps} | {max_steps}


@dataclass
class CellResult:
    """What one (problem, integrator) cell produced.

    Attributes
    ----------
    trajectories : DataFrame
        One row per trajectory: stop reason and message, steps, flow time, initial and final
        values, norms, oracle counts, initial and final points.
    checkpoints : DataFrame
        Long form, one row per trajectory and checkpoint: step, t, f, f - f_star, |x|,
        gradient norm, invariant drift, oracle counts so far.
    landscape : DataFrame
        2-D problems only (else empty): ``g0``, ``g1``, ``f`` on a grid covering the initial
        points and checkpoints, so that the report draws contours without calling a plugin.
    wall_time : float
    skipped : str or None
        Why the integrator does not apply (then both tables are empty).
    """

    trajectories: pd.DataFrame
    checkpoints: pd.DataFrame
    wall_time: float = 0.0
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    landscape: pd.DataFrame = field(default_factory=pd.DataFrame)


class _Recorder:
    """Collects checkpoint rows and final rows on the host."""

    def __init__(self, problem: Problem, x0: np.ndarray) -> None:
        self.problem = problem
        batch = x0.shape[0]
        self.rows: list[dict[str, np.ndarray]] = []
        self.final: dict[str, np.ndarray] = {
            "stop": np.full(batch, "", dtype=object),
            "message": np.full(batch, "", dtype=object),
            "steps": np.zeros(batch, dtype=np.int64),
            "t": np.zeros(batch),
            "f": np.full(batch, np.nan),
            "norm": np.full(batch, np.nan),
            "max_norm": np.zeros(batch),
            "nfev": np.zeros(batch, dtype=np.int64),
            "ngev": np.zeros(batch, dtype=np.int64),
            "nprox": np.zeros(batch, dtype=np.int64),
            "x": np.full(x0.shape, np.nan),
            "f0": np.full(batch, np.nan),  # from the step-0 checkpoint, not evaluated again
        }
        self.errors: dict[int, str] = {}  # trajectory -> message of the exception it raised
        self.inv0: np.ndarray | None = None  # set by the step-0 record; no oracle call here

    def record(self, step: int, xh: np.ndarray, t: np.ndarray, ids: np.ndarray,
               counts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Record the trajectories ``ids`` at points ``xh`` (host float64, whatever the
        backend: recording is observation, and evaluating it in numpy makes it the same on
        every backend); return which rows are non-finite, and which raised in f or the
        gradient (their messages go to ``self.errors``)."""
        problem = self.problem
        f, f_errors = _isolating_eval(problem.f, xh, (), f"{problem.name}.f")
        g, g_errors = _isolating_eval(problem.first_order, xh, (problem.n,),
                                      f"{problem.name}.grad")
        raised = np.zeros(ids.size, dtype=bool)
        for row, msg in {**g_errors, **f_errors}.items():
            raised[row] = True
            self.errors.setdefault(int(ids[row]), msg)
        norm = np.linalg.norm(xh, axis=1)
        row = {
            "traj": ids,
            "step": np.full(ids.shape, step, dtype=np.int64),
            "t": t,
            "f": f,
            "f_gap": f - problem.f_star,
            "norm": norm,
            "grad_norm": np.linalg.norm(g, axis=1),
        }
        if step == 0 and problem.invariant is not None:
            try:  # stored by trajectory id: rows may have left the batch before step 0
                first = np.asarray(to_numpy(problem.invariant(xh)), dtype=np.float64)
                self.inv0 = np.full((self.final["f"].shape[0], *first.shape[1:]), np.nan)
                self.inv0[ids] = first
            except Exception:  # a broken invariant costs the drift column, not the cell
                self.inv0 = None
        if self.inv0 is not None:
            inv, _ = _isolating_eval(problem.invariant, xh, self.inv0.shape[1:],
                                     f"{problem.name}.invariant")
            row["drift"] = np.linalg.norm(inv - self.inv0[ids], axis=1)
        if problem.n <= POINTS_MAX_DIM:
            for j in range(problem.n):
                row[f"x{j}"] = xh[:, j]
        row.update(nfev=counts["f"], ngev=counts["grad"], nprox=counts["prox"])
        self.rows.append(row)
        final = self.final
        batch = final["f"].shape[0]
        if ids.size == batch and np.array_equal(ids, np.arange(batch)):
            ids = slice(None)  # every trajectory, in order: no scatter
        if step == 0:
            final["f0"][ids] = f
        final["max_norm"][ids] = np.fmax(final["max_norm"][ids], norm)
        final["f"][ids], final["norm"][ids], final["t"][ids] = f, norm, row["t"]
        final["steps"][ids] = step
        final["x"][ids] = xh
        for key in ("nfev", "ngev", "nprox"):
            final[key][ids] = row[key]
        finite = np.isfinite(f) & np.isfinite(norm) & np.isfinite(row["grad_norm"])
        return ~finite & ~raised, raised

    def retire(self, ids: np.ndarray, stop: np.ndarray | str, message: np.ndarray | str) -> None:
        self.final["stop"][ids] = stop
        self.final["message"][ids] = message

    def tables(self, x0: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        final = self.final
        traj = pd.DataFrame({
            "traj": np.arange(x0.shape[0]),
            "stop": final["stop"].astype(str),
            "message": final["message"].astype(str),
            "steps": final["steps"],
            "t": final["t"],
            "f0": final["f0"],
            "f": final["f"],
            "f_gap": final["f"] - self.problem.f_star,
            "norm0": np.linalg.norm(x0, axis=1),
            "norm": final["norm"],
            "max_norm": final["max_norm"],
            "nfev": final["nfev"],
            "ngev": final["ngev"],
            "nprox": final["nprox"],
            "x0": point_column(x0),
            "x": point_column(final["x"]),
        })
        if not self.rows:
            return traj, pd.DataFrame()
        return traj, pd.DataFrame(_long_form(self.rows, x0.shape[0]), copy=False)


def _long_form(records: list[dict[str, np.ndarray]], batch: int) -> dict[str, np.ndarray]:
    """The checkpoint columns ordered by (traj, step); of two records of one (traj, step), the
    later wins.

    ``records`` come in step order, one step each. Usually few distinct steps are recorded
    for most trajectories (fixed-step methods record every row at the same steps): then each
    column is scattered into a (trajectory, step) grid and read back row by row, one pass,
    where sorting the concatenated records and gathering each column cost 6x more at 20 000
    trajectories x 29 checkpoints. Sparse histories (adaptive steps record a few rows at a
    time, at thousands of distinct steps) take the general way: numpy's stable sort.
    """
    names = list(records[0])
    total = sum(r["traj"].size for r in records)
    steps = np.array([r["step"][0] if r["step"].size else -1 for r in records])
    slot = np.cumsum(np.append(True, steps[1:] != steps[:-1])) - 1
    width = int(slot[-1]) + 1
    if batch * width <= 2 * total:
        everyone = np.arange(batch)
        # a record of every trajectory writes a column of the grid without an index
        where = [slice(None) if np.array_equal(r["traj"], everyone) else r["traj"]
                 for r in records]
        present = np.zeros((batch, width), dtype=bool)
        for rows, k in zip(where, slot, strict=True):
            present[rows, k] = True
        full = bool(present.all())  # then no row of the grid is read back masked
        if full and width == len(records):  # every record holds every trajectory, once
            return {name: np.stack([r[name] for r in records], axis=1).ravel()
                    for name in names}
        columns = {}
        for name in names:
            dtype = np.result_type(*(r[name] for r in records))
            grid = np.empty((batch, width), dtype) if full else np.zeros((batch, width), dtype)
            for record, rows, k in zip(records, where, slot, strict=True):
                grid[rows, k] = record[name]
            columns[name] = grid.ravel() if full else grid[present]
        return columns
    columns = {k: np.concatenate([r[k] for r in records]) for k in names}
    # a stable sort by trajectory keeps the step order; one gather per column
    order = np.argsort(columns["traj"], kind="stable")
    ids, steps = columns["traj"][order], columns["step"][order]
    later = np.append((ids[1:] != ids[:-1]) | (steps[1:] != steps[:-1]), True)
    order = order[later]
    return {k: v[order] for k, v in columns.items()}


def failed_result(problem: Problem, x0: np.ndarray, message: str, first: int = 0) -> CellResult:
    """A cell (or a shard of one, rows numbered from ``first``) whose worker raised, died or
    was killed: every trajectory failed, with why.

    Calls no oracle (the cell may have failed on one that never returns).
    """
    recorder = _Recorder(problem, x0)
    recorder.retire(np.arange(x0.shape[0]), Stop.ERROR, message)
    traj, checkpoints = _numbered(*recorder.tables(x0), first, None)
    traj["outcome"] = pd.Categorical([Outcome.FAILED] * len(traj), categories=OUTCOMES)
    traj["reason"] = "cell failed"
    return CellResult(traj, checkpoints, info={"failure": message})


def run_cell(
    problem: Problem,
    integrator: Integrator,
    x0: np.ndarray,
    budget: Budget | None = None,
    *,
    recording: Recording | None = None,
    backend: str | Backend = "numpy",
    certificates: bool = True,
    first: int = 0,
    draw_landscape: bool = True,
) -> CellResult:
    """Run ``integrator`` on ``problem`` from every row of ``x0`` at once, and classify.

    Parameters
    ----------
    problem : Problem
    integrator : Integrator
    x0 : ndarray, shape (B, n)
        Initial points (float64).
    budget : Budget, optional
        With ``budget.extend = k``, rows left undetermined by a deterministic budget are run
        again from their initial points with the budget doubled, up to k times; the column
        ``extensions`` says how many doublings each row got.
    recording : Recording, optional
    backend : str or Backend
        The array library (and device) that runs the trajectories: ``"numpy"``, ``"jax"``,
        or a :class:`~benchsuite.backends.Backend` from :func:`~benchsuite.backends.resolve`
        (which picks the device). Numpy-only plugins are skipped on other backends.
    certificates : bool
        Let the problem's certificate decide where it speaks (False: generic rules only).
    first : int
        The cell-wide index of ``x0``'s first row, when ``x0`` is one shard of a cell: rows
        are numbered (``traj``) from it, and ``recording.trajectories`` counts from 0.
    draw_landscape : bool
        Evaluate f on the landscape grid (2-D problems), framing ``x0`` and the recorded
        checkpoints; a cell of several shards draws it once they are all written
        (:func:`landscape_frame`, :func:`landscape_grid`).

    Returns
    -------
    CellResult
    """
    budget = budget or Budget()
    recording = recording or Recording()
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[1] != problem.n:
        raise ValueError(f"initial points for {problem.name} must have shape (B, {problem.n}), "
                         f"got {x0.shape}")
    backend = resolve(backend)
    reason = (skip_reason(backend, problem) or skip_reason(backend, integrator)
              or integrator.skip(problem))
    if reason is not None:
        return CellResult(pd.DataFrame(), pd.DataFrame(), skipped=reason)
    start = time.perf_counter()
    found: list[str] = []

    def attempt(rows: np.ndarray, factor: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        return _run_rows(problem, integrator, x0[rows], budget.scaled(factor), recording, backend,
                         start, certificates, found)

    traj, checkpoints = attempt(np.arange(x0.shape[0]), 1)
    traj["extensions"] = np.zeros(len(traj), dtype=np.int64)
    for doubling in range(1, budget.extend + 1):
        redo = np.flatnonzero((traj["outcome"].astype(str) == Outcome.UNDETERMINED).to_numpy()
                              & traj["stop"].isin([str(s) for s in DETERMINISTIC_BUDGETS]))
        if redo.size == 0:  # never the clock: a row the safety net cuts says so itself
            break
        more, more_cp = attempt(redo, 2**doubling)
        more["traj"] = redo
        more["extensions"] = doubling
        if not more_cp.empty:
            more_cp["traj"] = redo[more_cp["traj"].to_numpy()]
        traj = _replace_rows(traj, more, ["traj"])
        checkpoints = _replace_rows(checkpoints, more_cp, ["traj", "step"], redo)
    info: dict[str, Any] = {"warnings": found} if found else {}
    traj, checkpoints = _numbered(traj, checkpoints, first, recording.trajectories)
    grid = pd.DataFrame()
    if draw_landscape:
        # the picture must never cost the trajectories: it gets what is left of the safety net
        grid, why = landscape(problem, x0, checkpoints,
                              seconds=budget.wall_time - (time.perf_counter() - start))
        if why:
            info["landscape"] = why
    return CellResult(traj, checkpoints, wall_time=time.perf_counter() - start, info=info,
                      landscape=grid)


def _numbered(traj: pd.DataFrame, checkpoints: pd.DataFrame, first: int,
              recorded: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows numbered cell-wide from ``first``; checkpoints kept for ``traj < recorded`` only
    (after classification, which saw them all)."""
    if first:
        traj["traj"] += first
        if len(checkpoints):
            checkpoints["traj"] += first
    if recorded is not None and len(checkpoints):
        checkpoints = checkpoints[checkpoints["traj"].to_numpy() < recorded].reset_index(drop=True)
    return traj, checkpoints


class _OutOfTime(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM, main thread only; elsewhere, or when
    the process already uses SIGALRM, no limit: the cell's hard limit still applies)."""
    usable = (math.isfinite(seconds) and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGALRM) == signal.SIG_DFL)
    if not usable:
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise _OutOfTime

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def landscape(problem: Problem, x0: np.ndarray, checkpoints: pd.DataFrame,
              seconds: float = math.inf) -> tuple[pd.DataFrame, str]:
    """f on a grid around the points of a 2-D cell (its initial points and recorded
    checkpoints), and why it is empty where it is.

    Empty for other dimensions, and when f fails on the grid in any way (raises, exits,
    returns the wrong thing, or takes longer than ``seconds``, what the cell has left of its
    wall-time safety net): the picture is lost, never the cell's trajectories.
    """
    if problem.n != 2:
        return pd.DataFrame(), ""
    seen = [x0]
    if {"x0", "x1"} <= set(checkpoints):
        seen.append(checkpoints[["x0", "x1"]].to_numpy(dtype=np.float64))
    frame = landscape_frame(np.concatenate(seen))
    if frame is None:
        return pd.DataFrame(), "no finite point to frame the landscape"
    return landscape_grid(problem, frame, seconds)


def landscape_frame(points: np.ndarray) -> list[float] | None:
    """``[lo0, lo1, hi0, hi1]``: the box around the finite ``points`` (shape (N, 2)), with a
    margin, within +-LANDSCAPE_BOX; None when no point is finite. A function of the points
    only, so a cell's landscape is the same however its trajectories were split."""
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        return None
    lo = np.clip(points.min(axis=0) - 0.5, -LANDSCAPE_BOX, LANDSCAPE_BOX)
    hi = np.clip(points.max(axis=0) + 0.5, -LANDSCAPE_BOX, LANDSCAPE_BOX)
    return [float(v) for v in (*lo, *hi)]


def landscape_grid(problem: Problem, frame: list[float], seconds: float = math.inf
                   ) -> tuple[pd.DataFrame, str]:
    """f on a LANDSCAPE_GRID x LANDSCAPE_GRID grid over ``frame`` (see :func:`landscape`)."""
    if seconds <= 0:
        return pd.DataFrame(), "not recorded: the cell used up its wall-time safety net"
    lo0, lo1, hi0, hi1 = frame
    g0, g1 = np.meshgrid(np.linspace(lo0, hi0, LANDSCAPE_GRID),
                         np.linspace(lo1, hi1, LANDSCAPE_GRID))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
    try:
        with np.errstate(all="ignore"), _time_limit(seconds):
            values = np.asarray(to_numpy(checked(problem.f(grid), (grid.shape[0],),
                                                 problem.name, "f")), dtype=np.float64)
    except KeyboardInterrupt:  # the user's interrupt, not the plugin's failure
        raise
    except _OutOfTime:
        return pd.DataFrame(), ("not recorded: f on the grid outlasted what was left of the "
                                "wall-time safety net")
    except BaseException as exc:  # a plugin's f may fail (even exit) off its domain
        return pd.DataFrame(), f"not recorded: f failed on the grid ({type(exc).__name__})"
    return pd.DataFrame({"g0": grid[:, 0], "g1": grid[:, 1], "f": values}), ""


def _replace_rows(table: pd.DataFrame, new: pd.DataFrame, order: list[str],
                  traj: np.ndarray | None = None) -> pd.DataFrame:
    """``table`` with the trajectories of ``new`` (or ``traj``) replaced by ``new``'s rows."""
    ids = new["traj"].to_numpy() if traj is None else traj
    kept = table[~table["traj"].isin(ids)] if len(table) else table
    merged = pd.concat([kept, new], ignore_index=True) if len(new) else kept
    return merged.sort_values(order, kind="stable", ignore_index=True)


def _run_rows(problem, integrator, x0, budget, recording, backend, start, certificates, found
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run of the batch ``x0`` under ``budget``, classified (the wall-time safety net
    counts from ``start``, shared by the extensions of a cell)."""
    if backend.name == "numpy" or backend.compiled:
        # column-contiguous batches: the catalog's small-n oracles read columns X[:, i]
        x0 = np.asfortranarray(x0)
    with np.errstate(all="ignore"):  # overflow is detected and reported per trajectory
        recorder = _Recorder(problem, x0)
        # a compiled backend starts on the host (init, with its fault isolation, is one call:
        # eager device dispatch would cost more than it) and moves the state to the device
        _loop(problem, integrator, x0 if backend.compiled else backend.asarray(x0), budget,
              recording, recorder, start, backend)
        traj, checkpoints = recorder.tables(x0)
        traj = classify(problem, integrator, traj, checkpoints, certificates=certificates,
                        problems_found=found)  # never raises: a bug there loses no results
    return traj, checkpoints


def _isolating_eval(fn: Any, x: Any, tail: tuple[int, ...], what: str
                    ) -> tuple[np.ndarray, dict[int, str]]:
    """``fn(x)`` on the host, of shape ``(B, *tail)``; rows for which it raises or returns
    something other than real floats (found by bisection) become NaN and are returned as
    ``{row: message}`` (``what`` names the oracle in messages)."""
    try:
        name, kind = what.rsplit(".", 1)
        return np.asarray(to_numpy(checked(fn(x), (x.shape[0], *tail), name, kind)),
                          dtype=np.float64), {}
    except Exception as exc:
        if x.shape[0] == 1:
            return np.full((1, *tail), np.nan), {0: f"{type(exc).__name__}: {exc}"}
    half = x.shape[0] // 2
    lo_vals, lo_err = _isolating_eval(fn, x[:half], tail, what)
    hi_vals, hi_err = _isolating_eval(fn, x[half:], tail, what)
    return (np.concatenate([lo_vals, hi_vals]),
            {**lo_err, **{half + r: m for r, m in hi_err.items()}})


def _isolating_step(integrator: Integrator, oracle: Oracle, state: State, xp: Any
                    ) -> tuple[State, dict[int, str]]:
    """One step of the batch; if it raises, find the rows that raise by bisection.

    Returns the new state and ``{row: message}`` for the rows whose step raised on its own:
    those keep their old point and get the ERROR flag, while every other row takes its step.
    A fault thus stays inside its trajectories instead of failing the whole cell.
    """
    try:
        return integrator.step(oracle, state), {}
    except RowErrors as row_errors:  # the integrator isolated its faulty rows itself
        flag = to_numpy(row_errors.state.flag).copy()
        flag[list(row_errors.errors)] = int(Flag.ERROR)
        return row_errors.state.replace(flag=xp.asarray(flag)), dict(row_errors.errors)
    except Exception as exc:
        batch = state.x.shape[0]
        if batch == 1 or not integrator.pure:  # an impure step cannot be re-stepped
            flag = xp.full_like(state.flag, int(Flag.ERROR))
            message = f"{type(exc).__name__}: {exc}"
            return state.replace(flag=flag), dict.fromkeys(range(batch), message)
    half = batch // 2
    parts, errors = [], {}
    for lo, hi in ((0, half), (half, batch)):
        local = np.arange(lo, hi)
        sub, sub_errors = _isolating_step(integrator, oracle.view(local),
                                          state.take(xp, xp.asarray(local)), xp)
        parts.append(sub)
        errors.update({lo + row: msg for row, msg in sub_errors.items()})
    return type(state).concat(xp, parts), errors


def _isolating_init(integrator: Integrator, oracle: Oracle, X0: Any, t_max: float, xp: Any
                    ) -> tuple[State | None, dict[int, str]]:
    """``init`` (and ``with_horizon``) of the batch; rows whose init raises are found by
    bisection. Returns the state of the other rows, in order (None if none is left), and
    ``{row: message}`` for the rows that raised."""
    try:
        return integrator.with_horizon(integrator.init(oracle, X0), t_max), {}
    except Exception as exc:
        batch = X0.shape[0]
        if batch == 1:
            return None, {0: f"{type(exc).__name__} in init: {exc}"}
    half = batch // 2
    parts, errors = [], {}
    for lo, hi in ((0, half), (half, batch)):
        local = np.arange(lo, hi)
        sub, sub_errors = _isolating_init(integrator, oracle.view(local),
                                          xp.take(X0, xp.asarray(local), axis=0), t_max, xp)
        if sub is not None:
            parts.append(sub)
        errors.update({lo + row: msg for row, msg in sub_errors.items()})
    if not parts:
        return None, errors
    return (parts[0] if len(parts) == 1 else type(parts[0]).concat(xp, parts)), errors


def _loop(problem, integrator, X0, budget, recording, recorder, start, backend) -> None:
    xp = namespace(X0)
    batch = X0.shape[0]
    oracle = Oracle(problem, batch)
    t_grid = recording.time_grid(budget.t_max)
    step_grid = recording.step_grid(budget.max_steps)
    step_marks = np.array(sorted(step_grid), dtype=np.int64)
    next_t = np.zeros(batch, dtype=np.int64)  # index into t_grid of each row's next checkpoint

    # A fault in init, or a start where f or the gradient is not finite, fails its own rows
    # with the message; the other rows run.
    state, init_errors = _isolating_init(integrator, oracle, X0, budget.t_max, xp)
    if init_errors:
        bad = np.array(sorted(init_errors))
        recorder.retire(oracle.rows[bad], Stop.ERROR, [init_errors[r] for r in bad])
        if state is None:
            return
        good = np.setdiff1d(np.arange(batch), bad)
        oracle.keep(good)
        next_t = next_t[good]
    try:
        rows = oracle.rows
        live = EagerBatch(integrator, oracle, state, xp, _isolating_step)
        nonfinite, raised = recorder.record(0, live.x(np.arange(rows.size)), live.t(), rows,
                                            oracle.counts())
        if backend.compiled:
            live = CompiledBatch(integrator, oracle, state, backend.native, budget.max_evals,
                                 FINITE_CHECK_EVERY)
    except Exception as exc:
        recorder.retire(oracle.rows, Stop.ERROR, f"{type(exc).__name__}: {exc}")
        return
    unusable = nonfinite | raised
    if unusable.any():
        next_t = _retire(recorder, live, next_t, unusable,
                         np.full(int(unusable.sum()), Stop.ERROR, dtype=object), BAD_START)
        if next_t is None:
            return

    step = 0
    # compare with the budget and the grid a hair early: flow time is a sum of rounded steps
    t_end = budget.t_max * (1.0 - T_MAX_RTOL)
    t_grid_early = t_grid * (1.0 - T_MAX_RTOL)
    last = len(t_grid) - 1
    next_due = t_grid_early[0]
    while True:
        limits = None  # an eager batch takes one step: it needs no lookahead
        if backend.compiled:
            limits = Limits(due=t_grid_early[np.minimum(next_t, last)],
                            stop_step=int(step_marks[np.searchsorted(step_marks, step, "right")]))
        try:
            step, errors = live.advance(step, limits)
        except Exception as exc:
            if not backend.compiled:  # eager steps isolate their faults: this is ours
                raise
            # a step traced once for the whole batch fails every row alike
            recorder.retire(live.rows, Stop.ERROR, _compile_failure(exc, integrator, problem))
            return
        if errors:
            recorder.errors.update({int(live.rows[row]): msg for row, msg in errors.items()})
        t = live.t()
        flag = live.flag()
        size = t.shape[0]
        # The hot path: two reductions and a set lookup per step; per-row arrays (stop codes,
        # due masks) are built only on the steps where something ends or is recorded.
        code = flag.astype(np.int8) if flag.any() else None
        if step % FINITE_CHECK_EVERY == 0:
            bad = live.nonfinite()
            if bad.any():
                code = _mark(code, bad, STOP_CODES[Stop.NONFINITE])
        t_hi = t.max()
        if t_hi >= t_end:
            code = _mark(code, t >= t_end, STOP_CODES[Stop.T_MAX])
        if step >= budget.max_steps:
            code = _mark(code, np.ones(size, dtype=bool), STOP_CODES[Stop.MAX_STEPS])
        if budget.max_evals is not None:
            evals = sum(live.counts().values())
            if (evals >= budget.max_evals).any():
                code = _mark(code, evals >= budget.max_evals, STOP_CODES[Stop.MAX_EVALS])
        if time.perf_counter() - start > budget.wall_time:
            code = _mark(code, np.ones(size, dtype=bool), STOP_CODES[Stop.WALL_TIME])
        ended = None if code is None else code != 0
        due = None
        if step in step_grid:
            due = np.ones(size, dtype=bool)
        elif t_hi >= next_due:
            due = t >= t_grid_early[np.minimum(next_t, last)]
        if ended is not None:
            due = ended if due is None else due | ended
        if due is not None and due.any():
            local = np.flatnonzero(due)
            try:
                nonfinite, raised = recorder.record(step, live.x(local), t[local],
                                                    live.rows[local], live.counts(local))
            except Exception as exc:
                recorder.retire(live.rows, Stop.ERROR, f"{type(exc).__name__}: {exc}")
                return
            if raised.any():
                code = _mark(code, np.isin(np.arange(size), local[raised]), STOP_CODES[Stop.ERROR])
                ended = code != 0
            if nonfinite.any():
                code = _mark(code, np.isin(np.arange(size), local[nonfinite]),
                             STOP_CODES[Stop.NONFINITE])
                ended = code != 0
            next_t[local] = np.searchsorted(t_grid_early, t[local], side="right")
            next_due = t_grid_early[min(next_t.min(), last)]
        if ended is not None and ended.any():
            next_t = _retire(recorder, live, next_t, ended, STOP_NAMES[code[ended]])
            if next_t is None:
                return
            next_due = t_grid_early[min(next_t.min(), last)]


def _compile_failure(exc: Exception, integrator: Integrator, problem: Problem) -> str:
    """The message of rows failed by a compiled chunk that raised (a step that reads traced
    values on the host, or a plugin bug that every row shares)."""
    return (f"{type(exc).__name__}: {exc} (on a compiled backend, {integrator.name}.step and "
            f"{problem.name}'s oracles are traced once for the whole batch: they must not "
            "read array values on the host (bool(), float(), .item(), numpy calls), index by "
            "host arrays or use rows=; use masks and benchsuite.arrays.while_loop)")


def _retire(recorder: _Recorder, live: EagerBatch | CompiledBatch, next_t: np.ndarray,
            ended: np.ndarray, reasons: np.ndarray, message: str | None = None
            ) -> np.ndarray | None:
    """Retire the rows ``ended`` of the batch with their stop reasons and messages (an
    exception's, where one was recorded, else ``message`` or the reason's); return the
    checkpoint indices of the rows left, or None when none is left."""
    ids = live.rows[np.flatnonzero(ended)]
    if message is None:  # per reason, then per row only for the few that raised
        which, kinds = pd.factorize(np.asarray(reasons, dtype=object))
        messages = np.array([STOP_MESSAGES[r] for r in kinds], dtype=object)[which]
    else:
        messages = np.full(ids.size, message, dtype=object)
    if recorder.errors:
        raised = np.flatnonzero(np.isin(ids, np.fromiter(recorder.errors, np.int64)))
        for row in raised:
            messages[row] = recorder.errors[int(ids[row])]
    recorder.retire(ids, reasons, messages)
    keep = np.flatnonzero(~ended)
    if keep.size == 0:
        return None
    live.keep(keep)
    return next_t[keep]


def _mark(code: np.ndarray | None, mask: np.ndarray, value: int) -> np.ndarray:
    """Set the stop code of rows in ``mask`` that have none yet (the first reason wins)."""
    if code is None:
        code = np.zeros(mask.shape[0], dtype=np.int8)
    return np.where((code == 0) & mask, np.int8(value), code)
