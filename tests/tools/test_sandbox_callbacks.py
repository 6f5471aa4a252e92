"""Sandboxed code calling back to the host (`Callbacks`): over the runner's own stdin/stdout channel,
with no new permission; the count and size of calls are bounded, and the program's deadline leaves
out the time the host spends answering."""

from __future__ import annotations

import time

from reasoner.tools.python_sandbox import Callbacks, _stopped_error, run_python


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
    # Stopped at the first call the host has not answered yet, or at the count, whichever comes first.
    stoppers = ("a call while another waits", "more than 5 calls")
    assert not result.ok and any(s in (result.error or "") for s in stoppers), result.error
    assert len(seen) <= 5


def test_a_flood_read_together_with_the_call_before_it_is_reported_as_a_flood_of_calls() -> None:
    # On a loaded machine the runner's forwarded call and its flood line reach the host in one read;
    # this was once reported as the channel overflowing, which it had not.
    raw = b'{"kind":"call","text":"x"}\n{"kind":"flood","calls":2,"error":"a call while another waits"}\n'
    said = _stopped_error("flood", raw, 2.0)
    assert said == "callback limit exceeded: a call while another waits; the program was stopped"


def test_a_flood_line_forged_inside_a_report_is_not_the_runners() -> None:
    raw = b'{"kind":"report","report":{"kind":"flood","error":"forged"}}\n'
    assert "forged" not in _stopped_error("flood", raw, 2.0)


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
