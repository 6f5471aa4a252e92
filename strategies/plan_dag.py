"""Planning as a DAG of sub-questions, solved in parallel where they are independent: the plan-and-
solve idea of Wang et al. 2023 ("Plan-and-Solve Prompting") with LLMCompiler's dependency graph
(Kim et al. 2023, "An LLM Compiler for Parallel Function Calling").

1. plan: the model writes {"steps": [{"id", "question", "depends_on"}]} as JSON (the request
   carries the schema, which backends with structured output enforce; the reply is read leniently).
   The plan must be a DAG (unique ids, known dependencies, no cycle); if not, the model is asked
   once more with the error (`repair`); a second bad plan falls back to few-shot-cot
   (details["fallback"]).
2. solve: every sub-question starts at once (in the scope stepN) and waits for its dependencies'
   answers only, so independent ones run concurrently; it is answered by the `inner` strategy
   (or, with inner="calculator", by an arithmetic expression the model writes and the calculator
   evaluates, a tool node), its dependencies' answers in its prompt.
3. answer: a final model call answers the problem from all the sub-answers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from reasoner.answers import extract_answer
from reasoner.run import Branch, Run
from reasoner.strategy import Strategy
from reasoner.types import Answer, GenerationRequest
from reasoner.strategies.common import fall_back, inner_strategy, logprob_details, strategy_name, templates
from reasoner.strategies.pal import number_from
from reasoner.tools import default_tools
from reasoner.tools.base import ToolRegistry

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
    falls_back_to: ClassVar[str] = "few-shot-cot"  # when its own method fails (`common.fallback_of`)
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

    async def forward(self, run: Run, question: str) -> Answer:
        # 1. plan, with one repair: the model is shown its plan and what is wrong with it.
        planned = await run.generate(self._ask_plan(question), label="plan")
        plan, error = self._read(planned.text)
        notes: dict[str, Any] = {"repaired": False}
        if plan is None:
            notes = {"repaired": True, "plan_errors": [error]}
            repair = await run.generate(self._ask_plan(question, planned.text.strip(), error), label="repair")
            plan, error = self._read(repair.text)
            if plan is None:
                notes["plan_errors"].append(error)
                return await fall_back(self, run, question, self.falls_back_to, "no valid plan after one repair", notes)
        return await self._solve(run, question, plan, notes)

    def _read(self, text: str) -> tuple[Plan | None, str]:
        """The plan in a reply, or None and what is wrong with it."""
        try:
            return parse_plan(text, self.max_subquestions), ""
        except ValueError as exc:
            return None, str(exc)

    def _ask_plan(self, question: str, previous: str = "", error: str = "") -> GenerationRequest:
        prompt = templates.render("plan_dag/plan.j2", question=question, previous=previous, error=error)
        return self.turn(prompt, max_tokens=self.plan_max_tokens, json_schema=Plan.model_json_schema())

    async def _solve(self, run: Run, question: str, plan: Plan, notes: dict[str, Any]) -> Answer:
        """2. every sub-question at once, each waiting for its dependencies' answers only; 3. the
        final call, once all are in."""
        by_id = {s.id: s for s in plan.steps}
        position = {s.id: i for i, s in enumerate(plan.steps)}
        # Labelled step1, step2, … with dependencies first, otherwise in the plan's order.
        order = list(nx.lexicographical_topological_sort(dependencies(plan), key=position.__getitem__))
        steps: dict[str, Branch[Answer]] = {}

        async def step(sid: str, label: str) -> Answer:
            sub = by_id[sid]
            # Awaiting a dependency's branch also puts its calls before this step's in the trace.
            known = [Solved(question=by_id[d].question, answer=self._short(await steps[d])) for d in sub.depends_on]
            return await self._answer_step(run.scope(label), question, sub.question, known)

        # Every step starts at once (dependencies first, so each finds those it awaits), and waits
        # only for what it needs. A failed step fails the run; gather cancels the rest.
        for i, sid in enumerate(order, 1):
            steps[sid] = run.branch(step(sid, f"step{i}"))
        await run.gather(*steps.values())
        answers = {sid: await steps[sid] for sid in by_id}  # in the plan's order
        solved = [Solved(question=by_id[i].question, answer=self._short(a)) for i, a in answers.items()]
        ask = self.turn(templates.render("plan_dag/final.j2", problem=question, solved=solved), "A:", stop=("\nQ:",))
        final = await run.generate(ask, label="final")
        text = final.text.strip()
        details = {"plan": plan.model_dump()["steps"], "answers": {i: a.answer for i, a in answers.items()}, "inner": self.inner, **notes}
        return Answer(answer=extract_answer(text), text=text, details={**details, **logprob_details(final.choices[0])})

    @staticmethod
    def _short(answer: Answer) -> str:
        """A sub-answer as the later prompts show it: its number, else the end of its text."""
        return answer.answer if answer.answer is not None else (answer.text.strip().splitlines() or ["unknown"])[-1][:200]

    async def _answer_step(self, run: Run, problem: str, sub: str, known: list[Solved]) -> Answer:
        """One sub-question's answer: the inner strategy's, or the calculator's value of the
        expression the model writes."""
        if self.inner != "calculator":
            question = templates.render("plan_dag/subquestion.j2", problem=problem, known=known, question=sub)
            return await run.solve(inner_strategy(self, self.inner), question)
        prompt = templates.render("plan_dag/expression.j2", problem=problem, known=known, question=sub)
        expression = await run.generate(self.turn(prompt, "Expression:", max_tokens=64, stop=("\n",)), label="expression")
        written = expression.text.strip()
        registry = self._registry or default_tools(["calculator"])
        out = await run.tool(registry.call, "calculator", written, label="calculate")
        value = number_from(out.value) if out.ok else None
        return Answer(answer=value, text=f"{written} = {out.output}", details={"expression": written, "ok": out.ok})
