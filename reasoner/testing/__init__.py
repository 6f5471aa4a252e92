"""Fixtures for tests and benchmarks, not part of the library a user imports.

`scripted.ScriptedBackend` answers from rules in memory; `fake_openai.FakeOpenAIServer` is a real
OpenAI-compatible socket server (latency, faults, dropped connections) for the paths where sockets
matter: retries, timeouts, the replica router, the overhead benchmark.
"""
