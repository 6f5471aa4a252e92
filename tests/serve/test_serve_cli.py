"""`reasoner serve` as a user starts it: a process that prints its address, needs the key it was
given (from the environment here), and never prints it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from serve_support import MODEL, responder  # noqa: E402

from reasoner.testing.fake_openai import FakeOpenAIServer  # noqa: E402

KEY = "gateway-cli-key-424242"


def test_the_serve_command_answers_with_the_key_from_the_environment() -> None:
    with FakeOpenAIServer(MODEL, responder=responder) as upstream:
        env = {**os.environ, "REASONER_SERVE_API_KEY": KEY}
        command = [sys.executable, "-m", "reasoner.cli.main", "serve", "--model", upstream.base_url, "--port", "0", "--max-runs", "2"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("reasoner serve: http://127.0.0.1:") and "API key required" in line
            url = line.split()[2]
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=url, api_key="not-the-key", max_retries=0).models.list()
            api = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
            reply = api.chat.completions.create(model=f"self-consistency:samples=4/{MODEL}", messages=[{"role": "user", "content": "6 * 7?"}])
            assert reply.model_extra["reasoner"]["answer"] == "42"  # type: ignore[index]
        finally:
            child.terminate()
            output, _ = child.communicate(timeout=20)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why.
        assert child.returncode in (0, -signal.SIGTERM) and "Traceback" not in output
        assert KEY not in line + output
