"""The handle strategies are written against: steps awaited one after another, siblings gathered
(and still merged into one request with `n`), failures, edges of the trace, typed causes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import PrivateAttr

from reasoner.backends.errors import RateLimitedError
from reasoner.graph import NodeFailed
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.testing.scripted import ScriptedBackend
from reasoner.types import Answer, GenerationRequest


def req(prompt: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kw)


class Written(Strategy):
    """A strategy whose `forward` is given by the test."""

    name = "written"
    summary = "for tests"
    _body: Any = PrivateAttr(None)

    def with_body(self, body: Any) -> Written:
        copy = self.model_copy()
        copy._body = body
        return copy

    async def forward(self, run: Run, question: str) -> Answer:
        return await self._body(run, question)  # type: ignore[no-any-return]


def edges(solution: Any) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in solution.trace["edges"]}


async def test_steps_one_after_another_chain_in_the_trace() -> None:
    backend = ScriptedBackend([(r"count (\d)", lambda r, i: str(int(r.prompt.split()[-1]) + 1))])

    async def loop(run: Run, question: str) -> Answer:
        seen = ["0"]
        while int(seen[-1]) < 3:
            seen.append((await run.generate(req(f"count {seen[-1]}"), label="step")).text)
        return Answer(answer=seen[-1], text=" ".join(seen))

    solution = await Written().with_body(loop).solve("q", backend)
    assert solution.answer == "3" and solution.usage.calls == 3
    steps = [n["id"] for n in solution.trace["nodes"] if n["label"] == "step"]
    assert len(steps) == 3 and steps[0] == "step"
    assert (steps[0], steps[1]) in edges(solution) and (steps[1], steps[2]) in edges(solution)
    waited = {(e["source"], e["target"]) for e in solution.trace["edges"] if e.get("waited")}
    assert waited == {(s, "written") for s in steps}  # the strategy's node used each


async def test_gathered_siblings_merge_into_one_request_with_n_even_through_inner_strategies() -> None:
    backend = ScriptedBackend([("first", ["a", "b", "c", "d"]), ("second", ["w", "x", "y", "z"])])

    class TwoSteps(Strategy):
        name = "two-steps"
        summary = "for tests"

        async def forward(self, run: Run, question: str) -> Answer:
            one = await run.generate(req("first", temperature=0.7, seed=1), label="one")
            two = await run.generate(req("second", temperature=0.7, seed=1), label="two")
            return Answer(answer=two.text, text=one.text + two.text)

    async def fan_out(run: Run, question: str) -> Answer:
        answers = await run.gather(*(run.scope(f"s{i}").solve(TwoSteps(), question) for i in range(4)))
        return Answer(answer=",".join(a.answer for a in answers), text="")  # type: ignore[union-attr, misc]

    solution = await Written().with_body(fan_out).solve("q", backend)
    # Each inner strategy's second call is made after its first returned: the four still meet.
    assert [r.n for r in backend.requests] == [4, 4]
    assert solution.answer == "w,x,y,z"
    assert all((f"s{i}/two-steps", "written") in edges(solution) for i in range(4))
    assert ("s0/one", "s0/two") in edges(solution)


async def test_a_tolerant_gather_gives_failures_in_place() -> None:
    backend = ScriptedBackend([("good", "fine")])

    async def body(run: Run, question: str) -> Answer:
        results = await run.gather(run.generate(req("good"), label="a"), run.generate(req("bad"), label="b"), tolerate=True)
        assert not isinstance(results[0], Exception) and results[0].text == "fine"  # type: ignore[union-attr]
        assert isinstance(results[1], NodeFailed) and "no scripted rule matches" in results[1].error
        after = await run.generate(req("good again"), label="after")
        return Answer(answer=after.text, text="")

    solution = await Written().with_body(body).solve("q", backend)
    assert solution.error is None and solution.answer == "fine"
    # What came next depends on the branch that succeeded, not on the failed one.
    assert ("a", "after") in edges(solution) and ("b", "after") not in edges(solution)


async def test_without_tolerance_the_first_failure_cancels_the_rest_and_is_raised() -> None:
    slow_started = asyncio.Event()
    finished: list[str] = []

    async def slow() -> str:
        slow_started.set()
        await asyncio.sleep(30)
        finished.append("slow")
        return "late"

    async def fail() -> str:
        await slow_started.wait()
        raise RuntimeError("broke")

    async def body(run: Run, question: str) -> Answer:
        await run.gather(run.tool(slow, label="slow"), run.tool(fail, label="fail"))
        raise AssertionError("not reached")

    solution = await asyncio.wait_for(Written().with_body(body).solve("q", ScriptedBackend([])), timeout=10)
    assert solution.error is not None and "RuntimeError: broke" in solution.error
    nodes = {n["id"]: n for n in solution.trace["nodes"]}
    assert nodes["slow"]["status"] == "failed" and nodes["slow"]["error"] == "cancelled" and not finished


async def test_the_node_keeps_the_exception_and_the_solution_its_cause() -> None:
    class Limited(ScriptedBackend):
        async def _generate(self, request: GenerationRequest) -> Any:
            raise RateLimitedError("slow down", retry_after=3.0)

    async def body(run: Run, question: str) -> Answer:
        samples = await run.gather(*(run.generate(req("x"), label=f"s{i}") for i in range(2)), tolerate=True)
        raise RuntimeError("every sample failed") from samples[0]  # type: ignore[misc]

    solution = await Written().with_body(body).solve("q", Limited([], supports_n=False))
    assert solution.error is not None and solution.error.startswith("written: RuntimeError: every sample failed")
    assert isinstance(solution.cause, RuntimeError)
    failed = solution.cause.__cause__
    assert isinstance(failed, NodeFailed) and isinstance(failed.exception, RateLimitedError)
    # The trace keeps text only.
    s0 = next(n for n in solution.trace["nodes"] if n["id"] == "s0")
    assert "exception" not in s0 and s0["error"].startswith("RateLimitedError: slow down")


async def test_a_tool_that_called_a_model_is_billed_on_its_node() -> None:
    from reasoner.types import Choice, Completion

    async def other_model(prompt: str) -> Completion:
        return Completion(choices=[Choice(text=prompt.upper())], prompt_tokens=7, completion_tokens=2)

    async def body(run: Run, question: str) -> Answer:
        said = await run.tool(other_model, "yes", label="judge", request=req("yes"))
        return Answer(answer=said.text, text="")

    solution = await Written().with_body(body).solve("q", ScriptedBackend([]))
    judge = next(n for n in solution.trace["nodes"] if n["id"] == "judge")
    assert (judge["calls"], judge["prompt_tokens"], judge["completion_tokens"]) == (1, 7, 2)
    assert judge["request"]["prompt"] == "yes" and solution.usage.prompt_tokens == 7


async def test_cancelling_a_solve_cancels_the_gathered_calls() -> None:
    backend = ScriptedBackend([("x", "y")], delay_s=30)

    async def body(run: Run, question: str) -> Answer:
        await run.gather(*(run.generate(req(f"x{i}"), label=f"c{i}") for i in range(3)))
        raise AssertionError("not reached")

    task = asyncio.ensure_future(Written().with_body(body).solve("q", backend))
    while backend.in_flight < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.in_flight == 0


async def test_a_branch_awaited_by_several_steps_runs_once_and_orders_the_trace() -> None:
    backend = ScriptedBackend([("base", "1"), ("left", "2"), ("right", "3"), ("join", "6")])

    async def body(run: Run, question: str) -> Answer:
        base = run.branch(run.generate(req("base"), label="base"))

        async def side(name: str) -> str:
            await base  # each side needs the base's answer
            return (await run.generate(req(name), label=name)).text

        left, right = run.branch(side("left")), run.branch(side("right"))
        await left, await right
        joined = await run.generate(req("join"), label="join")
        return Answer(answer=joined.text, text="")

    solution = await Written().with_body(body).solve("q", backend)
    assert solution.answer == "6" and [r.prompt for r in backend.requests].count("base") == 1
    assert {("base", "left"), ("base", "right"), ("left", "join"), ("right", "join")} <= edges(solution)
    assert ("base", "join") not in edges(solution)  # implied by the sides: no redundant edge
