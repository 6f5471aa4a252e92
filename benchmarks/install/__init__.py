"""Installers of what some tests and benchmarks need beside the project (vLLM's CPU build)."""
