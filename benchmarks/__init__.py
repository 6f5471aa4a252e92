"""Benchmarks: the GSM8K runner behind `reasoner bench gsm8k` (`reasoner.bench.gsm8k`), its reports
(`reasoner.bench.report`), and scripts that measure the framework itself."""
