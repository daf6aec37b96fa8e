"""Benchmarks: the engine's targets (``engine``) and the literature's tasks."""
