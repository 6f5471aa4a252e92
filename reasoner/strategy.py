"""The base of every strategy, and the registry that finds strategies by name."""

from __future__ import annotations

import warnings
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from reasoner.backends.base import Backend
from reasoner.engine import Engine, NodeListener
from reasoner.graph import Graph, NodeId
from reasoner.run import Run
from reasoner.types import Answer, GenerationRequest, Message, ReasoningEffort, Solution

ENTRY_POINT_GROUP = "reasoner.strategies"
_BUDGET = ("reasoning_effort", "max_reasoning_tokens")


class Strategy(BaseModel):
    """A reasoning strategy: its options are the model's fields; `forward` is its method.

    `forward` is plain async code against a `Run` (`await run.generate(...)`, `run.tool`,
    `run.verify`, `run.gather` for siblings) that returns an `Answer`; every call is a node of the
    graph the engine runs, and the graph is the trace. One strategy is the inner step of another
    through `await run.solve(inner, question, scope=...)` (self-consistency runs its inner
    strategy k times, each in its own scope of the graph).
    """

    model_config = ConfigDict(extra="forbid")

    name: ClassVar[str]
    summary: ClassVar[str]

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, description="tokens per model call")
    seed: int | None = Field(None, description="sampling seed, for reproducible samples")
    logprobs: bool = Field(False, description="ask for token log-probabilities (for weighted votes)")
    # A reasoning model's thinking budget, for every call; sent where the backend takes it
    # (`run.backend.reasoning_controls`), left out elsewhere.
    reasoning_effort: ReasoningEffort | None = Field(None, description="reasoning models: thinking effort (low, medium, high)")
    max_reasoning_tokens: int | None = Field(None, ge=0, description="reasoning models: most tokens spent thinking per call")

    async def forward(self, run: Run, question: str) -> Answer:
        raise NotImplementedError

    def build(self, graph: Graph, question: str) -> NodeId:
        """Lay the strategy out in `graph` as one node (labelled with its name) whose output is its
        `Answer`; its calls become nodes as it makes them."""
        return graph.function(Run.body(graph, lambda run: self.forward(run, question)), label=self.name)

    def request(self, prompt: str, **overrides: Any) -> GenerationRequest:
        """A text-prompt request with this strategy's sampling settings."""
        params: dict[str, Any] = dict(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            logprobs=self.logprobs,
            reasoning_effort=self.reasoning_effort,
            max_reasoning_tokens=self.max_reasoning_tokens,
        )
        params.update(overrides)
        return GenerationRequest(prompt=prompt, **params)

    def turn(self, user: str, prefill: str | None = None, **overrides: Any) -> GenerationRequest:
        """A chat request: a user turn, optionally with the start of the assistant's reply for the
        model to continue (completion backends see the two joined by a newline)."""
        messages = [Message(role="user", content=user)]
        if prefill is not None:
            messages.append(Message(role="assistant", content=prefill))
        return self.request("", **overrides).model_copy(update={"prompt": None, "messages": tuple(messages)})

    def settings(self) -> dict[str, Any]:
        # The thinking budget is left out while unset, so runs recorded before it still compare equal.
        unset = {name for name in _BUDGET if getattr(self, name) is None}
        return {"strategy": self.name, **self.model_dump(mode="json", exclude=unset)}

    async def solve(self, question: str, backend: Backend, *, on_node: NodeListener | None = None) -> Solution:
        """Build the graph for `question` and run it; `on_node` watches steps as they start and end."""
        graph = Graph()
        final = self.build(graph, question)
        usage = await Engine(backend, on_node=on_node).run(graph)
        status = graph.status(final)
        result: Answer | None = graph.output(final) if status == "done" else None
        error = None
        if result is None:
            error = graph.root_cause(final) or f"the final step ended {status}"
        solution = Solution(
            question=question,
            strategy=self.name,
            answer=result.answer if result else None,
            text=result.text if result else "",
            usage=usage,
            trace=graph.to_json(),
            details=result.details if result else {},
            error=error,
        )
        solution._cause = graph.cause(final) if error else None
        return solution


@cache
def available() -> dict[str, type[Strategy]]:
    """Every installed strategy, by name (the `reasoner.strategies` entry-point group).

    Read once per process. A plug-in that fails to import is left out with a warning rather than
    taking every other strategy down with it.
    """
    found: dict[str, type[Strategy]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a plug-in
            warnings.warn(f"strategy {ep.name!r} ({ep.value}) could not be loaded: {exc}", stacklevel=2)
    return found


def get_strategy(name: str | Strategy, **options: Any) -> Strategy:
    """A strategy instance by name with its options validated (unknown options are an error)."""
    if isinstance(name, Strategy):
        return name.model_copy(update=options) if options else name
    strategies = available()
    if name not in strategies:
        known = ", ".join(sorted(strategies)) or "none (is the package installed? `pip install -e .`)"
        raise ValueError(f"unknown strategy {name!r}; known strategies: {known}")
    return strategies[name](**options)
