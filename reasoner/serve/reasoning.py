"""A strategy behind an OpenAI request: the question from the conversation, the run (bounded and
queued), its progress as events, and the answer as an OpenAI response."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reasoner import secrets
from reasoner.backends.base import Backend
from reasoner.prompts import Templates
from reasoner.serve import responses
from reasoner.serve.errors import APIError, backend_error, bad_request, from_backend, overloaded
from reasoner.serve.routes import Route
from reasoner.serve.schemas import ChatRequest, CompletionRequest
from reasoner.serve.traces import TraceStore
from reasoner.strategy import Strategy, get_strategy
from reasoner.types import Solution

templates = Templates("reasoner.serve")
Event = dict[str, Any]
#: Seconds between keep-alive progress events while nothing else happens.
HEARTBEAT_S = 5.0
# Request fields every strategy has, applied when the client sets them and the options do not.
_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "reasoning_effort", "max_reasoning_tokens")


def question_of(request: ChatRequest | CompletionRequest) -> str:
    """The last user message is the question; earlier messages are its context."""
    if isinstance(request, CompletionRequest):
        return request.prompt_text()
    last = request.messages[-1]
    if last.role != "user":
        raise bad_request(f"a strategy answers the last message, which must be from the user, not {last.role!r}",
                          f"messages.{len(request.messages) - 1}.role")  # fmt: skip
    question = last.text()
    if not question.strip():
        raise bad_request("the last user message has no text", f"messages.{len(request.messages) - 1}.content")
    earlier = [{"role": m.role.capitalize(), "text": m.text()} for m in request.messages[:-1] if m.text().strip()]
    return templates.render("conversation.j2", turns=earlier, question=question) if earlier else question


def strategy_for(route: Route, request: ChatRequest | CompletionRequest) -> Strategy:
    if request.n != 1:
        raise bad_request("a strategy gives one answer: n must be 1 (its own options set how many samples it draws)", "n")
    if isinstance(request, ChatRequest) and request.tools:
        raise bad_request("tools are passed through only with a plain model name, not to a strategy", "tools")
    assert route.strategy is not None
    given = {"max_tokens": request.token_limit(), "temperature": request.temperature, "top_p": request.top_p, "seed": request.seed,
             "reasoning_effort": request.reasoning_effort, "max_reasoning_tokens": request.thinking_token_budget}
    options = {k: v for k, v in given.items() if v is not None and k in _SAMPLING}
    try:
        return get_strategy(route.strategy, **{**options, **route.options})
    except ValidationError as exc:  # a sampling field of the request the strategy bounds tighter
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else None
        raise bad_request(f"{route.strategy}: {field}: {first['msg']}", field) from None


@dataclass
class Outcome:
    solution: Solution
    trace_id: str

    def content(self, answer_mode: str) -> str:
        if answer_mode == "final":
            return self.solution.answer or ""
        return self.solution.text

    def reasoning(self) -> str | None:
        """A reasoning model's thinking behind the answer: that of the last sample whose text is
        the answer's text (a vote's winner, a chain's reply). Thinking of the other calls stays in
        the trace: a strategy's many samples are not one thought."""
        found = None
        for node in sorted(self.solution.trace.get("nodes", []), key=lambda n: n.get("order", 0)):
            output = node.get("output")
            if node.get("kind") != "model" or not isinstance(output, dict):
                continue
            for choice in output.get("choices") or []:
                if choice.get("reasoning") and choice.get("text", "").strip() == self.solution.text.strip():
                    found = choice["reasoning"]
        return secrets.scrub(found) if found else None

    def extra(self, route: Route) -> dict[str, Any]:
        details = json.loads(json.dumps(self.solution.details, default=str))
        return secrets.scrub_obj(
            {"strategy": route.strategy, "options": route.options, "answer": self.solution.answer,
             "details": details, "trace_id": self.trace_id}
        )  # fmt: skip


class Runner:
    """Runs strategies on one backend, at most `max_runs` at once; up to `max_waiting` more wait
    their turn, and beyond that a request is refused at once (503 with a Retry-After) rather than
    held for as long as the queue takes, with its memory and its client's connection."""

    def __init__(self, backend: Backend, traces: TraceStore, max_runs: int = 16, max_waiting: int = 128) -> None:
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more, got {max_waiting}")
        self.backend = backend
        self.traces = traces
        self.max_runs = max_runs
        self.max_waiting = max_waiting
        self.running = 0
        self.waiting = 0
        self.refused = 0
        self._mean_run_s: float | None = None
        self._slots: asyncio.Semaphore | None = None

    def admit(self) -> None:
        """Refuse a run the queue has no room for, before the response starts (so a stream still
        gets its status). The Retry-After is about when a run ends and a place frees up."""
        if self.running + self.waiting < self.max_runs + self.max_waiting:
            return
        self.refused += 1
        retry_after = max(1, math.ceil((self._mean_run_s or 1.0) / self.max_runs))
        raise overloaded(f"the gateway is busy: {self.running} strategy runs going and {self.waiting} waiting, the most it "
                         f"queues (--max-runs {self.max_runs}, --max-waiting {self.max_waiting}); try again in about {retry_after} s",
                         retry_after)  # fmt: skip

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # made on the server's loop
            self._slots = asyncio.Semaphore(self.max_runs)
        return self._slots

    async def run(self, route: Route, strategy: Strategy, question: str, tell: Callable[[Event], None] | None = None) -> Outcome:
        """Run `strategy` on `question`; a failure raises APIError with the status its cause stands for."""
        started = time.perf_counter()
        say = tell or (lambda event: None)
        if self.slots.locked():
            say({"event": "queued", "ahead": self.waiting + self.running - self.max_runs + 1})
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        began = time.perf_counter()
        try:
            say({"event": "run.start", "strategy": strategy.name, "t": _since(started)})
            def on_node(status: str, node: str, attrs: dict[str, Any]) -> None:
                event: Event = {"event": "node", "status": status, "node": node, "kind": attrs.get("kind"),
                                "label": attrs.get("label"), "t": _since(started)}  # fmt: skip
                if attrs.get("completion_tokens") is not None:
                    event["completion_tokens"] = attrs["completion_tokens"]
                if attrs.get("error"):
                    event["error"] = attrs["error"]
                say(event)

            solution = await strategy.solve(question, self.backend, on_node=on_node)
        finally:
            self.running -= 1
            self.slots.release()
            took = time.perf_counter() - began
            self._mean_run_s = took if self._mean_run_s is None else 0.8 * self._mean_run_s + 0.2 * took
        trace_id = self.traces.add({
            "created": int(time.time()), "model": route.model, "strategy": route.strategy, "options": route.options,
            "settings": strategy.settings(), "question": question, "answer": solution.answer, "text": solution.text,
            "usage": solution.usage.model_dump(), "details": solution.details, "error": solution.error, "trace": solution.trace,
        })  # fmt: skip
        say({"event": "run.end", "t": _since(started), "usage": responses.usage_json(solution.usage), "trace_id": trace_id})
        if solution.error:
            if (upstream := backend_error(solution.cause)) is not None:
                raise from_backend(upstream)
            raise APIError(500, f"the strategy found no answer: {solution.error} (trace {trace_id})", type="server_error",
                           code="strategy_failed")  # fmt: skip
        return Outcome(solution, trace_id)

    async def answer(
        self, route: Route, request: ChatRequest | CompletionRequest, kind: responses.Kind, answer_mode: str
    ) -> dict[str, Any]:
        strategy, question = strategy_for(route, request), question_of(request)
        self.admit()
        outcome = await self.run(route, strategy, question)
        choice = responses.choice_json(kind, 0, outcome.content(answer_mode), "stop", reasoning=outcome.reasoning())
        return responses.response_json(kind, responses.new_id(kind), request.model, [choice], outcome.solution.usage, outcome.extra(route))

    def stream(
        self, route: Route, request: ChatRequest | CompletionRequest, kind: responses.Kind, answer_mode: str, mode: str
    ) -> AsyncIterator[bytes]:
        """Progress while the graph runs, then the content as ordinary chunks; an error after the
        start is an `error` event (the OpenAI SDK raises it as an APIError). A bad request fails
        here, before any byte is sent, so it still gets its 400."""
        strategy, question = strategy_for(route, request), question_of(request)
        self.admit()
        return self._stream(route, strategy, question, request, kind, answer_mode, mode)

    async def _stream(
        self, route: Route, strategy: Strategy, question: str, request: ChatRequest | CompletionRequest,
        kind: responses.Kind, answer_mode: str, mode: str,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        rid, model = responses.new_id(kind), request.model
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(self.run(route, strategy, question, queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            if kind == "chat":
                yield responses.sse(responses.chunk_json(kind, rid, model, role=True, text=""))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    event = {"event": "heartbeat"}
                if event is None:
                    break
                if mode != "none":
                    yield responses.progress(event, mode)
            try:
                outcome = task.result()
            except APIError as exc:
                yield responses.sse(exc.body())
                return
            if kind == "chat" and (thought := outcome.reasoning()):
                for piece in responses.pieces(thought):
                    yield responses.sse(responses.chunk_json(kind, rid, model, reasoning=piece))
            # Scrubbed whole: a secret split across two pieces would slip past a scrub of each.
            for piece in responses.pieces(secrets.scrub(outcome.content(answer_mode))):
                yield responses.sse(responses.chunk_json(kind, rid, model, text=piece))
            yield responses.sse(responses.chunk_json(kind, rid, model, text="" if kind == "text" else None, finish="stop",
                                                     extra=outcome.extra(route)))  # fmt: skip
            if request.include_usage():
                yield responses.sse(responses.chunk_json(kind, rid, model, usage=outcome.solution.usage))
            yield responses.DONE
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
