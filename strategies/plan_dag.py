"""Planning as a DAG of sub-questions, solved in parallel where they are independent: the plan-and-
solve idea of Wang et al. 2023 ("Plan-and-Solve Prompting") with LLMCompiler's dependency graph
(Kim et al. 2023, "An LLM Compiler for Parallel Function Calling").

1. plan: the model writes {"steps": [{"id", "question", "depends_on"}]} as JSON (the request
   carries the schema, which backends with structured output enforce; the reply is read leniently).
   The plan must be a DAG (unique ids, known dependencies, no cycle); if not, the model is asked
   once more with the error (`repair`); a second bad plan falls back to few-shot-cot
   (details["fallback"]).
2. solve: each sub-question is a node that waits for its dependencies only, so independent ones
   run concurrently; it is answered by the `inner` strategy (or, with inner="calculator", by an
   arithmetic expression the model writes and the calculator evaluates), its dependencies'
   answers in its prompt.
3. answer: a final model call answers the problem from all the sub-answers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from reasoner.answers import extract_answer
from reasoner.graph import Ctx, Forward, Graph, NodeId
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest
from reasoner.strategies.common import fall_back, inner_strategy, logprob_details, strategy_name, templates
from reasoner.strategies.pal import number_from
from reasoner.tools import default_tools
from reasoner.tools.base import ToolRegistry, ToolResult


class SubQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    id: str
    question: str
    depends_on: list[str]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[SubQuestion]


class Solved(BaseModel):
    question: str
    answer: str


def first_json(text: str) -> Any:
    """The first JSON value in `text` that starts with "{" or "[" (models wrap JSON in prose)."""
    decoder = json.JSONDecoder()
    for i, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("the reply holds no JSON object")


def dependencies(plan: Plan) -> nx.DiGraph:
    """The plan as a graph: an edge from each step to every step that needs its answer."""
    dag = nx.DiGraph()
    dag.add_nodes_from(s.id for s in plan.steps)
    dag.add_edges_from((d, s.id) for s in plan.steps for d in s.depends_on)
    return dag


def parse_plan(text: str, max_steps: int = 8) -> Plan:
    """The plan in a reply, checked to be a DAG; ValueError says what is wrong, for the repair."""
    data = first_json(text)
    steps = data if isinstance(data, list) else data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list) or not steps:
        raise ValueError('the plan needs a non-empty "steps" list')
    if len(steps) > max_steps:
        raise ValueError(f"the plan has {len(steps)} steps; use at most {max_steps}")
    # Lenient: unknown keys are dropped and a missing depends_on means none.
    cleaned = [{k: s.get(k) for k in ("id", "question")} | {"depends_on": s.get("depends_on") or []} if isinstance(s, dict) else s for s in steps]
    try:
        plan = Plan.model_validate({"steps": cleaned})
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    ids = [s.id for s in plan.steps]
    if twice := next((i for i in ids if ids.count(i) > 1), None):
        raise ValueError(f"step ids must be unique, and {twice!r} is used twice")
    if unknown := next(((s.id, d) for s in plan.steps for d in s.depends_on if d not in ids), None):
        raise ValueError(f"step {unknown[0]!r} depends on {unknown[1]!r}, which is not a step")
    dag = dependencies(plan)
    if not nx.is_directed_acyclic_graph(dag):
        cycle = [u for u, _ in nx.find_cycle(dag)]
        raise ValueError(f"the steps depend on each other in a cycle: {' -> '.join(cycle + cycle[:1])}")
    return plan


class PlanDAG(Strategy):
    name = "plan-dag"
    summary = "Plan sub-questions as a JSON DAG, answer independent ones concurrently, then the question (2+n calls)."

    inner: Annotated[str, strategy_name("calculator", what="inner strategy")] = Field("few-shot-cot", description="the inner strategy (plan-dag: answers each sub-question; 'calculator': the model writes an expression, the calculator evaluates it)")
    max_subquestions: int = Field(8, ge=1, description="most sub-questions in a plan (more is a bad plan)")
    plan_max_tokens: int = Field(384, ge=1, description="tokens for the JSON plan")
    _registry: ToolRegistry | None = PrivateAttr(None)

    def with_tools(self, registry: ToolRegistry) -> PlanDAG:
        """This strategy with this registry's `calculator` instead of the default one."""
        copy = self.model_copy()
        copy._registry = registry
        return copy

    def build(self, graph: Graph, question: str) -> NodeId:
        schema = Plan.model_json_schema()

        def ask(previous: str = "", error: str = "") -> GenerationRequest:
            prompt = templates.render("plan_dag/plan.j2", question=question, previous=previous, error=error)
            return self.turn(prompt, max_tokens=self.plan_max_tokens, json_schema=schema)

        first = graph.generate(ask(), label="plan")

        def check(ctx: Ctx) -> Forward:
            try:
                return Forward(self._solve(graph, question, parse_plan(ctx[first].text, self.max_subquestions), first, {"repaired": False}))
            except ValueError as exc:
                error = str(exc)
            repair = graph.generate(lambda c: ask(c[first].text.strip(), error), after=[first], label="repair")

            def recheck(ctx: Ctx) -> Forward:
                notes = {"repaired": True, "plan_errors": [error]}
                try:
                    return Forward(self._solve(graph, question, parse_plan(ctx[repair].text, self.max_subquestions), repair, notes))
                except ValueError as exc:
                    notes["plan_errors"].append(str(exc))
                    return Forward(fall_back(self, graph, question, "few-shot-cot", "no valid plan after one repair", notes))

            return Forward(graph.function(recheck, after=[repair], label="recheck"))

        return graph.function(check, after=[first], label="check")

    def _solve(self, graph: Graph, question: str, plan: Plan, planned: NodeId, notes: dict[str, Any]) -> NodeId:
        """One node per sub-question, waiting for its dependencies only; then the final call."""
        nodes: dict[str, NodeId] = {}
        by_id = {s.id: s for s in plan.steps}

        def solved(ctx: Ctx, ids: list[str]) -> list[Solved]:
            return [Solved(question=by_id[i].question, answer=self._short(ctx[nodes[i]])) for i in ids]

        position = {s.id: i for i, s in enumerate(plan.steps)}
        # Dependencies first (their nodes must exist), otherwise in the plan's order.
        for i, sid in enumerate(nx.lexicographical_topological_sort(dependencies(plan), key=position.__getitem__), 1):
            sub, label = by_id[sid], f"step{i}"

            def solve(ctx: Ctx, sub: SubQuestion = sub, label: str = label) -> Forward:
                return Forward(self._answer_step(graph.scope(label), question, sub.question, solved(ctx, sub.depends_on)))

            nodes[sid] = graph.function(solve, after=[nodes[d] for d in sub.depends_on] or [planned], label=label)
        ids, steps = list(by_id), list(nodes.values())

        def ask(ctx: Ctx) -> GenerationRequest:
            return self.turn(templates.render("plan_dag/final.j2", problem=question, solved=solved(ctx, ids)), "A:", stop=("\nQ:",))

        final = graph.generate(ask, after=steps, label="final")

        def conclude(ctx: Ctx) -> Answer:
            text = ctx[final].text.strip()
            answers = {i: ctx[nodes[i]].answer for i in ids}
            details = {"plan": plan.model_dump()["steps"], "answers": answers, "inner": self.inner, **notes}
            return Answer(answer=extract_answer(text), text=text, details={**details, **logprob_details(ctx[final].choices[0])})

        return graph.function(conclude, after=[final, *steps], label="answer")

    @staticmethod
    def _short(answer: Answer) -> str:
        """A sub-answer as the later prompts show it: its number, else the end of its text."""
        return answer.answer if answer.answer is not None else (answer.text.strip().splitlines() or ["unknown"])[-1][:200]

    def _answer_step(self, graph: Graph, problem: str, sub: str, known: list[Solved]) -> NodeId:
        if self.inner != "calculator":
            question = templates.render("plan_dag/subquestion.j2", problem=problem, known=known, question=sub)
            return inner_strategy(self, self.inner).build(graph, question)
        prompt = templates.render("plan_dag/expression.j2", problem=problem, known=known, question=sub)
        expression = graph.generate(self.turn(prompt, "Expression:", max_tokens=64, stop=("\n",)), label="expression")
        registry = self._registry or default_tools(["calculator"])

        async def calculate(ctx: Ctx) -> ToolResult:
            return await registry.call("calculator", ctx[expression].text.strip())

        ran = graph.tool(calculate, after=[expression], label="calculate")

        def result(ctx: Ctx) -> Answer:
            written, out = ctx[expression].text.strip(), ctx[ran]
            value = number_from(out.value) if out.ok else None
            return Answer(answer=value, text=f"{written} = {out.output}", details={"expression": written, "ok": out.ok})

        return graph.function(result, after=[expression, ran], label="result")
