"""Flowchart reasoning: the problem as sub-steps arranged like a program's flowchart, some repeated
(loops), some taken only when a condition holds (branches), each answered as the flow reaches it.

The model writes the chart once; the engine then runs it, step by step, until it reaches the answer:
1. chart: in the `graph` form, a JSON chart (`flowchart_chart.Chart`: ask / compute / decide / loop /
   answer nodes, each naming the next); the request carries its schema, which backends with
   structured output enforce. In the `program` form, a Python `solution()` calling `ask()` and
   `calc()` (`flowchart_program`), run in the WebAssembly sandbox; a helper it calls but never
   defined is answered by the model, as in Chain of Code (Li et al. 2023).
2. run: every executed step is a node of the run's graph, so the trace is the path taken: an
   `ask` is a model call, a `compute` a calculator call, a `decide` a node naming the condition's
   value and the side taken; each round of a loop is a scope named after the loop and its round
   (`weeks@3/compute grow`).
3. bounds: `max_steps` steps in all and `max_iterations` rounds of any one loop. A chart that does
   not parse, leads nowhere, cycles with no exit, uses an undefined name, loops past the cap or
   reaches no answer goes to chain-of-thought (`fallback`), with the reason in
   details["fallback_reason"], as `pal` and `plan-dag` do.
The answer's text is one line per executed step, so verifiers that judge lines can judge it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from reasoner.answers import extract_answer
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import fall_back, strategy_name, templates
from reasoner.strategies.flowchart_chart import Chart, ChartError, Visit, evaluate, holds, parse_chart, run_chart, substitute
from reasoner.strategies.flowchart_program import Ask, Calc, Helper, run_flow_program
from reasoner.strategies.pal import PREFILL, number_from, program_from
from reasoner.strategies.plan_dag import first_json
from reasoner.tools.base import ToolResult
from reasoner.tools.calculator import CalculatorError, calculate


class Flowchart(Strategy):
    name = "flowchart"
    summary = "The model writes a flowchart (JSON, or a Python program) with loops and branches; the engine runs it step by step, asking the model each sub-question."

    form: Literal["graph", "program"] = Field("graph", description="the chart: a JSON flowchart, or a Python program calling ask() and calc()")
    max_steps: int = Field(40, ge=1, description="most steps the flow may take (asks, computes, decisions)")
    max_iterations: int = Field(20, ge=1, description="most rounds of any one loop")
    chart_max_tokens: int = Field(512, ge=1, description="tokens for the chart or program")
    step_max_tokens: int = Field(64, ge=1, description="tokens for the answer to one sub-question")
    timeout_s: float = Field(5.0, gt=0, description="program form: seconds the program itself may run (time spent answering its calls aside)")
    fallback: Annotated[str, strategy_name("none", excluding="flowchart", what="fallback strategy")] = Field(
        "few-shot-cot", description="strategy to use when the chart fails ('none': no answer)"
    )

    async def forward(self, run: Run, question: str) -> Answer:
        lines: list[str] = []  # one per executed step: the path, readable
        if self.form == "graph":
            ask = self.turn(templates.render("flowchart/graph.j2", question=question), max_tokens=self.chart_max_tokens,
                            json_schema=Chart.model_json_schema(by_alias=True))
            written = await run.generate(ask, label="chart")
            details: dict[str, Any] = {"form": "graph", "chart": written.text.strip()}
            try:
                if written.choices[0].finish_reason == "length":  # else a node inside reads as the chart
                    raise ChartError(f"the chart was cut off at chart_max_tokens ({self.chart_max_tokens} tokens)")
                chart = parse_chart(first_json(written.text))
                walk = await run_chart(chart, ChartSteps(self, run, question, lines), self.max_steps, self.max_iterations)
                details |= {"path": walk.path, "values": walk.values}
                answer = number_from(walk.answer)
            except ValueError as exc:  # ChartError, or no JSON at all
                return await self._fall_back(run, question, str(exc), details, lines)
        else:
            prompt = templates.render("flowchart/program.j2", question=question)
            written = await run.generate(self.turn(prompt, PREFILL, max_tokens=self.chart_max_tokens, stop=("\nProblem:", "\n\n\n")), label="program")
            code = program_from(written.text)
            host = ProgramHost(self, run, question, code, lines)
            result = await run.tool(lambda: run_flow_program(code, host, max_steps=self.max_steps, timeout_s=self.timeout_s), label="run")
            details = {"form": "program", "program": code, "steps": len(lines)}
            answer = number_from(result.value) if result.ok else None
            if answer is None:
                reason = result.error or f"no number in the result {result.value!r}"
                if written.choices[0].finish_reason == "length":  # else the SyntaxError looks like the model's
                    reason = f"the program was cut off at chart_max_tokens ({self.chart_max_tokens} tokens): {reason}"
                return await self._fall_back(run, question, reason, details, lines)
        if answer is None:
            return await self._fall_back(run, question, "the answer is not a number", details, lines)
        return Answer(answer=answer, text="\n".join([*lines, f"The answer is {answer}."]), details=details)

    def generation_reserve(self) -> int:
        """What one call may add to its prompt, for `reasoner chat`'s history budget: the steps are
        separate calls, each carrying the values known so far (a few tokens each), not the steps' texts."""
        return max(self.chart_max_tokens, self.step_max_tokens + 16 * self.max_steps)

    async def _fall_back(self, run: Run, question: str, reason: str, details: dict[str, Any], lines: list[str]) -> Answer:
        details = {**details, "steps": len(lines)}
        if self.fallback == "none":
            return Answer(answer=None, text="\n".join(lines), details={**details, "fallback": "none", "fallback_reason": reason})
        return await fall_back(self, run, question, self.fallback, reason, details)

    async def ask_model(self, run: Run, label: str, template: str, **context: Any) -> str:
        """One sub-question's number, from the model; a reply with none fails the chart."""
        prompt = templates.render(template, **context)
        reply = await run.generate(self.turn(prompt, max_tokens=self.step_max_tokens, stop=("\nProblem:", "\n\n")), label=label)
        value = extract_answer(reply.text)
        if value is None:
            raise ChartError(f"{label}: the model's reply holds no number: {reply.text.strip()[:120]!r}")
        return value


def _at(run: Run, at: Visit) -> Run:
    """The scope of a step inside loops: one level per loop, named after its round."""
    for loop, round_ in at.loops:
        run = run.scope(f"{loop}@{round_}")
    return run


class ChartSteps:
    """The graph form's steps as nodes of the run's graph (`flowchart_chart.Steps`)."""

    def __init__(self, strategy: Flowchart, run: Run, question: str, lines: list[str]) -> None:
        self.strategy, self.run, self.question, self.lines = strategy, run, question, lines

    async def ask(self, at: Visit, question: str, values: dict[str, str]) -> str:
        value = await self.strategy.ask_model(_at(self.run, at), f"ask {at.node.id}", "flowchart/ask.j2",
                                              problem=self.question, values=values, question=question)
        self.lines.append(f"{question} {value}")
        return value

    async def compute(self, at: Visit, expr: str, values: dict[str, str]) -> str:
        where = f"compute node {at.node.id!r}"
        out = await _at(self.run, at).tool(_calculate, expr, values, where, label=f"compute {at.node.id}")
        if not out.ok:
            raise ChartError(out.error or where)
        self.lines.append(f"{at.node.store} = {out.input} = {out.output}")
        return out.output

    async def decide(self, at: Visit, condition: str, values: dict[str, str]) -> bool:
        node = at.node
        out = await _at(self.run, at).tool(_decide, node.id, condition, values, node.yes if node.kind == "decide" else "body",
                                           node.no if node.kind == "decide" else node.next, label=f"decide {node.id}")
        if not out.ok:
            raise ChartError(out.error or condition)
        self.lines.append(f"Is {condition}? {out.output}")
        return bool(out.value)


def _calculate(expr: str, values: dict[str, str], where: str) -> ToolResult:
    try:
        filled = substitute(expr, values, where)
        return ToolResult(tool="calculator", ok=True, input=filled, output=evaluate(expr, values, where))
    except ChartError as exc:
        return ToolResult(tool="calculator", ok=False, input=expr, output=str(exc), error=str(exc))


def _decide(node: str, condition: str, values: dict[str, str], yes: str, no: str) -> ToolResult:
    """The condition's value and the side taken, as the trace shows them."""
    try:
        value, filled = holds(condition, values, f"decide node {node!r}")
    except ChartError as exc:
        return ToolResult(tool="decide", ok=False, input=condition, output=str(exc), error=str(exc))
    said = f"{filled}: {'yes' if value else 'no'} → {yes if value else no}"
    return ToolResult(tool="decide", ok=True, input=condition, output=said, value=value)


class ProgramHost:
    """The program form's calls as nodes of the run's graph (`flowchart_program.Host`)."""

    def __init__(self, strategy: Flowchart, run: Run, question: str, program: str, lines: list[str]) -> None:
        self.strategy, self.run, self.question, self.program, self.lines = strategy, run, question, program, lines

    async def ask(self, call: Ask) -> str:
        value = await self.strategy.ask_model(self.run, f"ask line {call.line}", "flowchart/ask.j2", problem=self.question,
                                              values=call.values, question=call.question)
        self.lines.append(f"{call.question} {value}")
        return value

    async def calc(self, call: Calc) -> str:
        out = await self.run.tool(_calculator, call.expr, label=f"calc line {call.line}")
        if not out.ok:
            raise ChartError(out.error or call.expr)
        self.lines.append(f"{call.expr} = {out.output}")
        return out.output

    async def helper(self, call: Helper) -> str:
        arguments = ", ".join([*call.args, *(f"{k}={v}" for k, v in call.kwargs.items())])
        value = await self.strategy.ask_model(self.run, f"helper {call.name} line {call.line}", "flowchart/helper.j2",
                                              problem=self.question, helper=call.name, arguments=arguments, state=call.state)
        self.lines.append(f"{call.name}({arguments}) = {value}")
        return value


def _calculator(expr: str) -> ToolResult:
    try:
        return ToolResult(tool="calculator", ok=True, input=expr, output=calculate(expr))
    except CalculatorError as exc:
        return ToolResult(tool="calculator", ok=False, input=expr, output=str(exc), error=str(exc))
