"""benchsuite's own benchmarks: asv suites (``bench_*.py``) and the throughput ratios script."""
