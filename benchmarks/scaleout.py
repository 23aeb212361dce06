"""The scale-out benchmark: the ``figure1-1m`` campaign on 1 and 2 Dask workers.

Runs ``benchsuite run -c figure1-1m --executor dask -j W`` for each worker count in a fresh
run folder, samples the memory of the client and of each worker (with the shard process it
forks) every 0.2 s, and prints wall times, peak memory, the speed-up from 1 to 2 workers and
the stuck fraction with its 95% Wilson interval, next to the speed-up two independent numpy
processes get on this machine (the ceiling of any executor); ``--json FILE`` writes them. Both runs
must give byte-identical tables (results never depend on the worker count)::

    python benchmarks/scaleout.py                       # 10^6 trajectories (a quarter hour)
    python benchmarks/scaleout.py --n-points 100000     # a quicker look
"""

from __future__ import annotations

import argparse
import filecmp
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from benchsuite.results import load_results
from benchsuite.stats import wilson

#: An independent 10^6-trajectory simulation of the same setting (the issue's reference).
REFERENCE_STUCK = 0.0870


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class MemorySampler(threading.Thread):
    """Peak RSS of the client process alone, and of each Dask worker with its children."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.client = psutil.Process(pid)
        self.every, self.stop = every, threading.Event()
        self.client_peak = 0
        self.worker_peak = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.client_peak = max(self.client_peak, self.client.memory_info().rss)
                for child in self.client.children():
                    # a worker of the local cluster (spawned by multiprocessing; not its
                    # resource tracker): its own RSS plus the shard process it forked
                    line = " ".join(child.cmdline())
                    if "spawn_main" in line and "resource_tracker" not in line:
                        self.worker_peak = max(self.worker_peak, _tree_rss(child))
            except psutil.Error:
                pass
            self.stop.wait(self.every)


def measure(workers: int, n_points: int, shard_size: int, root: Path) -> dict:
    """One run of the campaign on ``workers`` Dask workers; its figures."""
    command = [sys.executable, "-m", "benchsuite", "run", "-c", "figure1-1m", "--executor",
               "dask", "-j", str(workers), "-n", str(n_points), "--shard-size", str(shard_size),
               "--yes", "--no-progress", "-q", "--results-dir", str(root),
               "--run-id", f"workers-{workers}"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchsuite run failed ({proc.returncode}): {err[-2000:]}")
    return {"workers": workers, "wall_s": wall, "client_peak_mb": sampler.client_peak / 2**20,
            "worker_peak_mb": sampler.worker_peak / 2**20, "run": out.strip()}


def _numpy_work(_: int = 0) -> float:
    """Seconds of a batched numpy loop like a shard's (50 000 points in R^4, 600 steps)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (50_000, 4))
    start = time.perf_counter()
    for _ in range(600):
        g = np.stack([x[:, 0] * x[:, 1] - 1, x[:, 2] * x[:, 3], x[:, 0] ** 2,
                      x[:, 1] * x[:, 3]], axis=1)
        x = x - 1e-4 * g
        np.linalg.norm(x, axis=1)
    return time.perf_counter() - start


def parallel_ceiling(repeats: int = 3) -> float:
    """The speed-up this machine gives two independent numpy processes over one: the
    ceiling of any executor here (two vCPUs share caches and memory bandwidth)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        alone = min(pool.apply(_numpy_work) for _ in range(repeats))
        together = min(max(pool.map(_numpy_work, [0, 1])) for _ in range(repeats))
    return 2 * alone / together


def stuck_fraction(run: str) -> dict:
    traj = load_results(run)["trajectories"]
    outcome = traj["outcome"].astype(str)
    stuck = int(outcome.isin(["escape_spurious", "converged_spurious"]).sum())
    lo, hi = wilson(stuck, len(traj))
    return {"n": len(traj), "stuck": stuck, "fraction": stuck / len(traj), "low": float(lo),
            "high": float(hi), "undetermined": int((outcome == "undetermined").sum()),
            "reference": REFERENCE_STUCK}


def same_tables(a: str, b: str) -> bool:
    for kind in ("trajectories", "checkpoints"):
        names = sorted(p.name for p in Path(a, kind).glob("*.parquet"))
        _, mismatch, errors = filecmp.cmpfiles(Path(a, kind), Path(b, kind), names,
                                               shallow=False)
        if mismatch or errors or not names:
            return False
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=50_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="benchsuite-scaleout-") as tmp:
        runs = [measure(w, args.n_points, args.shard_size, Path(tmp)) for w in (1, 2)]
        ceiling = parallel_ceiling()
        figures = {"runs": runs, "speedup": runs[0]["wall_s"] / runs[1]["wall_s"],
                   "ceiling": ceiling,
                   "identical": same_tables(runs[0]["run"], runs[1]["run"]),
                   "stuck": stuck_fraction(runs[1]["run"])}
    for r in runs:
        print(f"{r['workers']} worker(s): {r['wall_s']:.1f} s, client peak "
              f"{r['client_peak_mb']:.0f} MB, worker peak {r['worker_peak_mb']:.0f} MB")
    s = figures["stuck"]
    print(f"speed-up 1 -> 2 workers: {figures['speedup']:.2f}x (two independent numpy "
          f"processes on this machine: {figures['ceiling']:.2f}x); tables byte-identical: "
          f"{figures['identical']}")
    print(f"stuck: {s['stuck']}/{s['n']} = {s['fraction']:.4f} (95% CI {s['low']:.4f} to "
          f"{s['high']:.4f}; reference {REFERENCE_STUCK}); undetermined {s['undetermined']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
