"""Scale-out across versions: the figure1-1m campaign on 1 and 2 Dask workers
(:mod:`benchmarks.scaleout`; 10^6 trajectories, a quarter hour, or a few thousand in CI's
smoke pass). Tracked as the parallel shortfall (lower is better, like everything asv compares):
2 divided by the speed-up from 1 to 2 workers (1 is perfect; the script also measures this
machine's own ceiling, two independent numpy processes, which a spawned pool inside asv's
runner cannot); peak memory; and the stuck fraction, against the 0.0870 of an independent
simulation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import SMOKE
from .scaleout import measure, same_tables, stuck_fraction

N_POINTS, SHARD_SIZE = (2_000, 500) if SMOKE else (1_000_000, 50_000)


class ScaleOut:
    timeout = 3600

    def setup_cache(self):
        with tempfile.TemporaryDirectory(prefix="benchsuite-asv-scaleout-") as tmp:
            runs = [measure(w, N_POINTS, SHARD_SIZE, Path(tmp)) for w in (1, 2)]
            if not same_tables(runs[0]["run"], runs[1]["run"]):
                raise AssertionError("1 and 2 workers gave different tables")
            return {"speedup": runs[0]["wall_s"] / runs[1]["wall_s"],
                    "client_mb": runs[1]["client_peak_mb"],
                    "worker_mb": runs[1]["worker_peak_mb"],
                    "stuck": stuck_fraction(runs[1]["run"])["fraction"]}

    def track_parallel_shortfall(self, figures):
        return 2.0 / figures["speedup"]

    track_parallel_shortfall.unit = "x"

    def track_client_peak_memory(self, figures):
        return figures["client_mb"]

    track_client_peak_memory.unit = "MB"

    def track_worker_peak_memory(self, figures):
        return figures["worker_mb"]

    track_worker_peak_memory.unit = "MB"

    def track_stuck_fraction(self, figures):
        return figures["stuck"]

    track_stuck_fraction.unit = "fraction"
