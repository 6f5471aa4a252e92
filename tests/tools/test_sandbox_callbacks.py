"""Sandboxed code calling back to the host (`Callbacks`): over the runner's own stdin/stdout channel,
with no new permission; the count and size of calls are bounded, and the program's deadline leaves
out the time the host spends answering."""

from __future__ import annotations

import time

from reasoner.tools.python_sandbox import Callbacks, run_python


def echo(seen: list[str]) -> Callbacks:
    def answer(text: str) -> tuple[bool, str]:
        seen.append(text)
        return (text != "refuse"), f"<{text}>"

    return Callbacks(answer, max_calls=5, max_call_bytes=100, max_answer_bytes=50)


def test_a_call_blocks_until_the_host_answers_and_returns_the_answer() -> None:
    seen: list[str] = []
    result = run_python("import reasoner_host\n[reasoner_host.call(str(i)) for i in range(3)]", callbacks=echo(seen))
    assert result.ok and result.value == "['<0>', '<1>', '<2>']"
    assert seen == ["0", "1", "2"]


def test_a_refused_call_raises_in_the_program() -> None:
    result = run_python("import reasoner_host\nreasoner_host.call('refuse')", callbacks=echo([]))
    assert not result.ok and "Error: <refuse>" in (result.error or "")


def test_answers_are_cut_at_their_limit() -> None:
    cb = Callbacks(lambda text: (True, "y" * 1000), max_answer_bytes=50)
    result = run_python("import reasoner_host\nlen(reasoner_host.call('x'))", callbacks=cb)
    assert result.value == 50


def test_more_calls_than_allowed_stop_the_program() -> None:
    seen: list[str] = []
    result = run_python("import reasoner_host\nwhile True:\n    reasoner_host.call('x')", callbacks=echo(seen))
    assert not result.ok and "more than 5 calls" in (result.error or "")
    assert len(seen) == 5


def test_an_oversized_call_never_reaches_the_host() -> None:
    seen: list[str] = []
    result = run_python("import reasoner_host\nreasoner_host.call('x' * 101)", callbacks=echo(seen))
    assert not result.ok and "over 100 characters" in (result.error or "") and seen == []


def test_calls_posted_without_waiting_stop_the_program() -> None:
    seen: list[str] = []
    code = "import js\nfor _ in range(100):\n    js.postMessage(js.JSON.parse('{\"kind\": \"call\", \"text\": \"x\"}'))\n1"
    result = run_python(code, callbacks=echo(seen))
    # Stopped by whichever bound fires first: a call while one is unanswered, the call count, or
    # (on a loaded machine, where the posts pile up before the runner reads them) the channel's size.
    stoppers = ("a call while another waits", "more than 5 calls", "flooded the sandbox's channel")
    assert not result.ok and any(s in (result.error or "") for s in stoppers), result.error
    assert len(seen) <= 5


def test_without_callbacks_there_is_no_way_to_call_the_host() -> None:
    result = run_python("import reasoner_host")
    assert not result.ok and "No module named 'reasoner_host'" in (result.error or "")
    posted = run_python("import js\njs.postMessage(js.JSON.parse('{\"kind\": \"call\", \"text\": \"x\"}'))\n1")
    assert not posted.ok  # taken as the (malformed) report: the run fails, nothing is asked


def test_the_deadline_leaves_out_the_hosts_answering_time() -> None:
    def slow(text: str) -> tuple[bool, str]:
        time.sleep(0.6)
        return True, "ok"

    cb = Callbacks(slow, max_calls=5)
    result = run_python("import reasoner_host\n[reasoner_host.call('x') for _ in range(3)]", timeout_s=1.0, callbacks=cb)
    assert result.ok, result.error  # 1.8 s of answers under a 1 s deadline for the program itself
