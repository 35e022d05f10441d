"""Benchmarks for Workbridge (run `python -m benchmarks.bench_bridge`; see README.md here)."""
