"""Benchmarks of flink-task; run them with ``python benchmarks/run.py``."""
