"""Benchmarks: the GSM8K runner behind `reasoner bench gsm8k` (`benchmarks.gsm8k`), its reports
(`benchmarks.report`), and scripts that measure the framework itself."""
