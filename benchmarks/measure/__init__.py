"""Measurement scripts: each prints the figures the README quotes (`python -m reasoner.bench.measure.NAME`)."""
