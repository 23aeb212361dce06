"""How the harness advances a batch of trajectories from one event to the next.

An *event* is a step after which the host has something to do: a row is flagged by its
integrator, is non-finite (checked every ``finite_every`` steps), reaches its next checkpoint
time (or the flow-time budget, the last one), reaches the oracle-call budget, or the step count
reaches a step checkpoint. Between two events nothing is recorded and nothing retires, so a
batch may run any number of steps without the host looking, and the harness's processing of an
event is the same whichever way the batch got there:

* :class:`EagerBatch` (numpy and other eager namespaces) takes one step per call, through
  the harness's fault isolation, and retired rows leave the batch;
* :class:`CompiledBatch` (JAX) runs the steps up to the next event in one ``jax.jit``-compiled
  ``lax.while_loop``; oracle counts are arrays in the loop's state, and retired rows stay in
  the batch, their events masked out (shapes never change, so the loop compiles once per run).

Both stop at the same step (the first with an event, or the step cap), which is why results do
not depend on the backend beyond rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from benchsuite.arrays import to_numpy
from benchsuite.integrator import Integrator, State
from benchsuite.oracle import KINDS, ArrayOracle, Oracle

#: The most steps a compiled chunk runs before the host looks (for the wall-time safety net
#: and interrupts); events end a chunk sooner.
MAX_CHUNK = 1024


@dataclasses.dataclass
class Limits:
    """What ends a chunk besides flags, non-finite rows and the oracle-call budget: ``due``
    is each live row's next checkpoint time, ``stop_step`` the next step checkpoint."""

    due: np.ndarray
    stop_step: int


class EagerBatch:
    """The batch as the integrator's state itself; finished rows are removed (``keep``)."""

    def __init__(self, integrator: Integrator, oracle: Oracle, state: State, xp: Any,
                 step_fn: Callable[..., tuple[State, dict[int, str]]]) -> None:
        self.integrator, self.oracle, self.state, self.xp = integrator, oracle, state, xp
        self._step_fn = step_fn  # the harness's fault-isolating step

    @property
    def rows(self) -> np.ndarray:
        """Trajectory id of each live row."""
        return self.oracle.rows

    def advance(self, step: int, limits: Limits | None) -> tuple[int, dict[int, str]]:
        """One step; returns the step count and ``{row: message}`` of rows that raised."""
        self.state, errors = self._step_fn(self.integrator, self.oracle, self.state, self.xp)
        return step + 1, errors

    def t(self) -> np.ndarray:
        return to_numpy(self.state.t)

    def flag(self) -> np.ndarray:
        return to_numpy(self.state.flag)

    def nonfinite(self) -> np.ndarray:
        xp = self.xp
        return ~to_numpy(xp.all(xp.isfinite(self.state.x), axis=1))

    def x(self, local: np.ndarray) -> np.ndarray:
        x = self.state.x
        if local.size != x.shape[0]:
            x = self.xp.take(x, self.xp.asarray(local), axis=0)
        return to_numpy(x)

    def counts(self, local: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return self.oracle.counts(local)

    def keep(self, local: np.ndarray) -> None:
        self.oracle.keep(local)
        self.state = self.state.take(self.xp, self.xp.asarray(local))


class CompiledBatch:
    """The batch on a JAX device, advanced in compiled chunks; finished rows are masked.

    Retired rows stay in the arrays (shapes never change, so the chunk compiles once per run)
    and go on computing, but nothing of theirs is read again: their results were recorded when
    they retired, and their events are masked out.

    Oracle counts: the calls a step makes over the whole batch are a constant of the trace
    (``calls``), so a live row's count is its count after ``init`` plus that constant times
    the steps taken, plus what masked calls (``where=``) added, kept in the loop's state.
    """

    def __init__(self, integrator: Integrator, oracle: Oracle, state: State, device: Any,
                 max_evals: int | None, finite_every: int) -> None:
        import jax
        import jax.numpy as jnp

        self.jnp, self.jax = jnp, jax
        self.ids = oracle.rows.copy()  # trajectory id of each (fixed) row
        self.live = np.arange(self.ids.size)  # positions of the rows still running
        self.device = device
        counts = oracle.counts()
        self.init_counts = np.stack([np.asarray(counts[k], dtype=np.int64) for k in KINDS])
        self.masked = self._put(np.zeros_like(self.init_counts))
        self.active = self._put(np.ones(self.ids.size, dtype=bool))
        self.names, leaves, static = _split(state)
        self.leaves = [self._put(to_numpy(v)) for v in leaves]  # dtypes kept
        self._rebuild = _rebuilder(state, self.names, static)
        self._chunk, self._calls = _compiled_chunk(integrator, oracle.problem, state,
                                                   self.names, static, max_evals, finite_every)
        self._init_total = self._put(self.init_counts.sum(axis=0))
        self.steps = 0
        self._host: dict[str, np.ndarray] = {}

    def _put(self, value: np.ndarray) -> Any:
        return self.jax.device_put(value, self.device)

    # -- the host side -------------------------------------------------------------------------
    @property
    def rows(self) -> np.ndarray:
        return self.ids[self.live]

    def advance(self, step: int, limits: Limits) -> tuple[int, dict[int, str]]:
        jnp = self.jnp
        due = np.full(self.ids.size, np.inf)
        due[self.live] = limits.due
        # the compiled phase starts at step 0, so its step count is the harness's
        leaves, self.masked, new_step, nonfinite = self._chunk(
            self.leaves, self.masked, self.active, jnp.asarray(step, dtype=jnp.int64),
            jnp.asarray(min(limits.stop_step, step + MAX_CHUNK), dtype=jnp.int64),
            self._put(due), self._init_total)
        self.leaves = list(leaves)
        self.steps = int(new_step)  # the one host synchronisation per chunk
        state = self._rebuild(self.leaves)
        self._host = {"t": np.asarray(state.t), "flag": np.asarray(state.flag),
                      "nonfinite": np.asarray(nonfinite)}
        return self.steps, {}

    def t(self) -> np.ndarray:
        return self._host["t"][self.live]

    def flag(self) -> np.ndarray:
        return self._host["flag"][self.live]

    def nonfinite(self) -> np.ndarray:
        return self._host["nonfinite"][self.live]

    def x(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(self.leaves[self.names.index("x")])[self.live[local]]

    def counts(self, local: np.ndarray | None = None) -> dict[str, np.ndarray]:
        rows = self.live if local is None else self.live[local]
        masked = np.asarray(self.masked)
        return {k: self.init_counts[i, rows] + self._calls.get(k, 0) * self.steps
                + masked[i, rows] for i, k in enumerate(KINDS)}

    def keep(self, local: np.ndarray) -> None:
        self.live = self.live[local]
        active = np.zeros(self.ids.size, dtype=bool)
        active[self.live] = True
        self.active = self._put(active)


def _split(state: State) -> tuple[list[str], list[Any], dict[str, Any]]:
    """The numeric fields of a state (names and values: they travel through the compiled
    loop) and the others (closed over: strings, None, solver objects)."""
    names, leaves, static = [], [], {}
    for fld in dataclasses.fields(state):
        value = getattr(state, fld.name)
        if hasattr(value, "shape") or (isinstance(value, int | float)
                                       and not isinstance(value, bool)):
            names.append(fld.name)
            leaves.append(value)
        else:
            static[fld.name] = value
    return names, leaves, static


def _rebuilder(template: State, names: list[str], static: dict[str, Any]
               ) -> Callable[[list[Any]], State]:
    """The state of ``template``'s type with numeric fields ``leaves`` (in the order of
    ``names``) and the other fields ``static``."""
    kind = type(template)

    def rebuild(leaves: list[Any]) -> State:
        return kind(**dict(zip(names, leaves, strict=True)), **static)

    return rebuild


#: Compiled chunks by what they are traced from, so that a campaign's shards and repeated runs
#: compile once (an entry holds the problem and static fields, so their ids cannot be reused).
_CHUNKS: dict[tuple[Any, ...], tuple[Callable[..., Any], dict[str, int], Any]] = {}


def _compiled_chunk(integrator: Integrator, problem: Any, template: State, names: list[str],
                    static: dict[str, Any], max_evals: int | None, finite_every: int
                    ) -> tuple[Callable[..., Any], dict[str, int]]:
    """The jitted chunk (see :class:`CompiledBatch`), and the dict that receives the oracle
    calls per step when the step is traced."""
    key = (integrator, id(problem), type(template), tuple(names),
           tuple((k, id(v)) for k, v in static.items()), max_evals, finite_every)
    if key in _CHUNKS:
        return _CHUNKS[key][:2]
    import jax
    import jax.numpy as jnp

    rebuild = _rebuilder(template, names, static)
    calls: dict[str, int] = {}

    def chunk(leaves, masked, active, step, stop_step, due, init_total):
        batch = active.shape[0]

        def body(carry):
            leaves, masked, step, _ = carry
            oracle = ArrayOracle(problem)
            new = integrator.step(oracle, rebuild(leaves))
            calls.update(oracle.calls)  # a constant of the trace
            out = []
            for name, before in zip(names, leaves, strict=True):
                after = jnp.asarray(getattr(new, name))
                if after.shape != before.shape:
                    raise ValueError(f"{integrator.name}.step changed the shape of state."
                                     f"{name} from {before.shape} to {after.shape}")
                out.append(after.astype(before.dtype))
            masked = jnp.stack([masked[i] if oracle.masked[k] is None
                                else masked[i] + oracle.masked[k] for i, k in enumerate(KINDS)])
            step = step + 1
            state = rebuild(out)
            ended = (state.flag != 0) | (state.t >= due)
            ended = ended | jax.lax.cond(step % finite_every == 0,
                                         lambda x: ~jnp.all(jnp.isfinite(x), axis=1),
                                         lambda x: jnp.zeros(batch, dtype=bool), state.x)
            if max_evals is not None:
                evals = init_total + sum(oracle.calls.values()) * step + masked.sum(axis=0)
                ended = ended | (evals >= max_evals)
            return out, masked, step, jnp.any(active & ended)

        def cond(carry):
            return ~carry[3] & (carry[2] < stop_step)

        leaves, masked, step, _ = jax.lax.while_loop(
            cond, body, (leaves, masked, step, jnp.asarray(False)))
        nonfinite = ~jnp.all(jnp.isfinite(rebuild(leaves).x), axis=1)
        return leaves, masked, step, nonfinite

    if len(_CHUNKS) >= 64:  # a long-lived process runs many cells: keep the recent ones
        _CHUNKS.pop(next(iter(_CHUNKS)))
    _CHUNKS[key] = (jax.jit(chunk), calls, (problem, static))
    return _CHUNKS[key][:2]
