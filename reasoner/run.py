"""The handle a strategy's `forward` is written against: model calls, tools, verifiers and inner
strategies as plain `await`s, siblings with `run.gather`.

    async def forward(self, run: Run, question: str) -> Answer:
        reply = await run.generate(self.request(prompt), label="reason")
        return answer_from(reply)

Each call adds a node to the graph the engine is running and waits for it, so the graph is still
the trace: a node depends on the nodes its coroutine awaited before it (one chain per asyncio
task), and `run.gather` joins the branches it ran. Siblings a `gather` starts together reach the
engine together, so identical requests become one request with `n`, as before.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reasoner.graph import Capabilities, Ctx, Graph, Kind, NodeFailed, NodeId
from reasoner.types import Answer, Completion, GenerationRequest

if TYPE_CHECKING:
    from reasoner.backends.base import Backend
    from reasoner.strategy import Strategy
    from reasoner.verdict import Verdict, Verifier

T = TypeVar("T")

#: The nodes the running coroutine awaited last: what the next node it adds depends on. A context
#: variable, so each task of a `gather` keeps its own chain.
_after: ContextVar[tuple[NodeId, ...]] = ContextVar("reasoner_run_after", default=())


class Branch(Generic[T]):
    """A step started on its own (`run.branch`). Awaiting it, as often as wanted and from any
    code, gives its result, and makes what the awaiting code calls next depend on its calls."""

    def __init__(self, step: Awaitable[T]) -> None:
        self._began = _after.get()  # where its chain starts: before its calls, so implied by them
        self._task = asyncio.ensure_future(_branch(step))

    def __await__(self) -> Generator[Any, None, T]:
        return self._join().__await__()

    async def _join(self) -> T:
        value, ended = await self._task
        kept = [node for node in _after.get() if node not in self._began]
        _after.set(tuple(dict.fromkeys((*kept, *ended))))
        return value


class Run:
    """What a strategy sees while it runs: `generate`, `tool`, `online`, `verify`, `solve`,
    `gather`, `branch`, `scope` and `backend` (what the model can do). Node ids are `label`s, made unique
    with `#n`."""

    def __init__(self, graph: Graph, node: NodeId, backend: Capabilities) -> None:
        self._graph = graph
        self._node = node  # the node this code runs in: it waits for every node it adds
        self.backend = backend

    @classmethod
    def body(cls, graph: Graph, work: Callable[[Run], Awaitable[T]]) -> Callable[[Ctx], Awaitable[T]]:
        """A function node's callback that runs `work` with a handle on `graph` (a scope)."""

        async def callback(ctx: Ctx) -> T:
            _after.set(())  # this node's own steps begin a new chain
            return await work(cls(graph, ctx.node, ctx.backend))

        return callback

    def scope(self, name: str) -> Run:
        """The same run, its new node ids starting with `name/` (one sample, one round)."""
        return Run(self._graph.scope(name), self._node, self.backend)

    async def generate(self, request: GenerationRequest, *, label: str = "generate") -> Completion:
        """One model call; a `Completion` with `request.n` choices."""
        return await self._wait(self._graph.generate(request, after=self._deps(), label=label))

    async def tool(
        self, fn: Callable[..., T | Awaitable[T]], *args: Any, label: str = "tool", kind: Kind = "tool",
        request: GenerationRequest | None = None,
    ) -> T:
        """`fn(*args)` (sync or async) as a node of its own. A result that is a `Completion`, or
        has a `usage`, is billed on the node (and `request` recorded on it), so a model called
        outside the engine (a judge on another server) is counted like one called through it."""

        async def call(ctx: Ctx) -> T:
            result = fn(*args)
            return (await result) if inspect.isawaitable(result) else result  # type: ignore[return-value]

        return await self._billed(call, kind, label, request)

    async def online(
        self, fn: Callable[[Backend], Awaitable[T]], *, label: str = "online", request: GenerationRequest | None = None
    ) -> T:
        """`fn(backend)` as a tool node, given the engine's backend itself: for work that reacts to
        a model's tokens as they stream (DeepConf cuts a trace mid-generation), which whole calls
        through the engine cannot express. Its result's `usage` is billed on the node, as `tool`'s."""

        async def call(ctx: Ctx) -> T:
            if ctx.model is None:
                raise RuntimeError(f"{label!r} needs the backend itself, and this graph runs without an engine's backend")
            return await fn(ctx.model)

        return await self._billed(call, "tool", label, request)

    async def _billed(
        self, body: Callable[[Ctx], Awaitable[T]], kind: Kind, label: str, request: GenerationRequest | None
    ) -> T:
        async def call(ctx: Ctx) -> T:
            if request is not None:
                self._graph.node(ctx.node).request = request.model_dump(mode="json", exclude_none=True)
            result = await body(ctx)
            _bill(self._graph, ctx.node, result)
            return result

        return await self._wait(self._graph._add(kind, call, self._deps(), label))

    async def verify(self, verifier: Verifier, question: str, steps: list[str], *, label: str = "verify") -> Verdict:
        """`verifier`'s verdict on `steps`, an answer to `question`; its own calls are nodes inside."""
        graph = self._graph

        async def judged(run: Run) -> Verdict:
            verdict = await verifier.verify(run, question, steps)
            _bill(graph, run._node, verdict)  # a verifier that called a server outside the engine
            return verdict

        return await self._wait(graph._add(verifier.kind, Run.body(graph, judged), self._deps(), label))

    async def solve(self, strategy: Strategy, question: str, *, scope: str | None = None) -> Answer:
        """`strategy`'s answer to `question`, run as one node of this graph (in `scope`)."""
        graph = self._graph.scope(scope) if scope else self._graph
        node = graph.function(Run.body(graph, lambda run: strategy.forward(run, question)), after=self._deps(), label=strategy.name)
        answer = await self._wait(node)
        if not isinstance(answer, Answer):
            raise TypeError(f"strategy {strategy.name!r} gave {type(answer).__name__} at {node!r}, not an Answer")
        return answer

    async def gather(self, *steps: Awaitable[T], tolerate: bool = False) -> list[T | Exception]:
        """The results of `steps`, run at once. With `tolerate`, a step that failed gives its
        exception in its place (a vote survives one failed sample); without, the first failure
        cancels the rest and is raised. What comes next depends on every branch that succeeded."""
        tasks = [asyncio.ensure_future(_branch(step)) for step in steps]
        if not tasks:
            return []
        try:
            if not tolerate:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            else:
                await asyncio.wait(tasks)
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        results: list[T | Exception] = []
        # Each branch's chain began with this one's, so the branches' ends are all that is needed.
        after: dict[NodeId, None] = {}
        for task in tasks:
            if task.cancelled():
                raise asyncio.CancelledError()
            error = task.exception()
            if error is not None and not isinstance(error, Exception):
                raise error
            if error is not None:
                results.append(error)
                continue
            value, ended = task.result()
            after.update(dict.fromkeys(ended))
            results.append(value)
        if after:  # else every branch failed: nothing new to follow
            _after.set(tuple(after))
        return results

    def branch(self, step: Awaitable[T]) -> Branch[T]:
        """`step` started now, in a task of its own, for code that awaits results as they come
        rather than all together: plan-dag's sub-questions each await those they depend on."""
        return Branch(step)

    def _deps(self) -> list[NodeId]:
        # Provenance, not gating: these are done (awaited); a failed one, caught, is left out.
        return [node for node in _after.get() if self._graph.status(node) == "done"]

    async def _wait(self, node: NodeId) -> Any:
        graph = self._graph
        # A fresh node has no dependants yet, so waiting on it cannot close a cycle.
        graph.nx.add_edge(node, self._node, waited=True)
        try:
            output = await graph.finished(node)
        except asyncio.CancelledError:
            graph.abandon(node)  # the caller stopped waiting: so does the node
            raise
        except NodeFailed:
            raise NodeFailed(node, _cause(graph, node), graph.cause(node)) from None
        _after.set((node,))
        return output


async def _branch(step: Awaitable[T]) -> tuple[T, tuple[NodeId, ...]]:
    # Runs in a task of its own (a copy of the caller's context): its chain is its own.
    value = await step
    return value, _after.get()


def _cause(graph: Graph, node: NodeId) -> str:
    """The error where `node`'s failure began: its own, or named by the step it began at
    ("reason: BackendError: …")."""
    origin = graph.origin(node)
    if not origin.error:
        return graph.node(node).error or "failed"
    return origin.error if origin.id == node else f"{origin.id}: {origin.error}"


def _bill(graph: Graph, node: NodeId, result: Any) -> None:
    usage = result if isinstance(result, Completion) else getattr(result, "usage", None)
    if usage is None or not hasattr(usage, "prompt_tokens"):
        return
    record = graph.node(node)
    record.calls = usage.calls
    record.prompt_tokens = usage.prompt_tokens
    record.completion_tokens = usage.completion_tokens
    record.reasoning_tokens = usage.reasoning_tokens or None


__all__ = ["Branch", "Run"]
