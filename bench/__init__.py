"""Benchmarks (see bench/bench_ingest.py); not part of the installed package."""
