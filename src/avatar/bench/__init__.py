"""``avatar bench``: measurements through the real server and engines (figures in BENCHMARKS.md)."""
