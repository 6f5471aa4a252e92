"""Cancelling calls on the embedded model leaves nothing on screen but the project's own message."""

from __future__ import annotations

import asyncio
import gc
from contextlib import suppress

from reasoner.types import GenerationRequest

LONG_PROMPT = "Add up the numbers: " + ", ".join(str(i) for i in range(400)) + ". The sum is"


def test_a_cancelled_local_call_leaves_no_traceback_and_no_llama_cpp_lines(local_backend, capfd) -> None:  # type: ignore[no-untyped-def]
    async def cancel_twice() -> list[str]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(str(ctx.get("message"))))
        # One cancelled inside the prompt's prefill (llama.cpp's compute graph is aborted), one
        # while it writes tokens.
        for delay, request in ((0.3, GenerationRequest(prompt=LONG_PROMPT, max_tokens=8)),
                               (2.5, GenerationRequest(prompt="Count: 1, 2, 3,", max_tokens=2000))):
            task = asyncio.create_task(local_backend.generate(request))
            await asyncio.sleep(delay)
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        # The worker thread finishes the aborted calls; their futures then complete and are dropped.
        await asyncio.sleep(0)
        await loop.run_in_executor(None, lambda: None)
        await local_backend.generate(GenerationRequest(prompt="Hi", max_tokens=1))
        gc.collect()
        await asyncio.sleep(0.1)
        return reported

    reported = asyncio.run(cancel_twice())
    err = capfd.readouterr().err
    assert not [m for m in reported if "never retrieved" in m], reported
    assert "graph_compute" not in err and "failed to decode" not in err, err
