"""Program-aided language models (Gao et al. 2022, "PAL: Program-aided Language Models").

The model writes the solution as a Python function `solution()` after worked examples (GSM8K train
problems with programs we wrote); a sandboxed interpreter runs it and its return value is the
answer, so the arithmetic is done by Python, not by the model. Two steps: `program` (the model
call: a plain request, so self-consistency's copies of it merge into one request with n) and `run`
(the sandbox, a tool node). A program that crashes, times out or returns no number is recorded in
the trace and the question goes to chain-of-thought instead (`fallback`, default few-shot-cot, run
in the scope "fallback"); details["fallback"] names the strategy that answered ("none" when no
fallback is set), details["fallback_reason"] says why.
"""

from __future__ import annotations

import asyncio
import math
import re
import textwrap
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import Field

from reasoner.answers import extract_answer, normalize_number
from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import fall_back, logprob_details, strategy_name, templates
from reasoner.tools.base import ToolResult
from reasoner.tools.python_sandbox import run_python

PREFILL = "def solution():\n"
_FENCED = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(?P<code>.*?)(?:```|\Z)", re.S)
_CODE_START = re.compile(r"^(?:import |from |def )", re.M)


def program_from(text: str) -> str:
    """The program in a completion that continues "def solution():\\n" (or, from a chat model
    that ignored the prefix, a whole function, perhaps fenced as markdown)."""
    fenced = _FENCED.search(text)
    if fenced:
        text = fenced["code"]
    if "def solution" not in text:
        first = next((line for line in text.splitlines() if line.strip()), "")
        if first and not first[0].isspace():
            # A weak model may drop the body's indentation; indented, the code at least parses.
            text = textwrap.indent(text, "    ")
        return (PREFILL + text).rstrip()
    start = _CODE_START.search(text)
    return text[start.start() if start else 0 :].rstrip()


def number_from(value: Any) -> str | None:
    """A program's result as a normalised number, or None when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (Decimal, Fraction)) or (not isinstance(value, (int, str)) and hasattr(value, "__float__")):
        value = float(value)
    if isinstance(value, float):
        # Rounded, so 0.1 + 0.2 reads as 0.3; six places are far below GSM8K's precision.
        return normalize_number(f"{value:.6f}") if math.isfinite(value) else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return normalize_number(value.strip()) or extract_answer(value)
    return None


async def run_program(code: str, timeout_s: float) -> ToolResult:
    """Run a program in the sandbox (a subprocess, waited for off the event loop); the result's
    value is what `solution()` returned."""
    return await asyncio.to_thread(run_python, code, timeout_s=timeout_s)


class PAL(Strategy):
    name = "pal"
    summary = "The model writes a Python solution() (few-shot); a sandbox runs it; CoT if it fails (1 call + 1 run)."

    max_tokens: int = Field(320, ge=1, description="tokens for the program")
    timeout_s: float = Field(5.0, gt=0, description="seconds the program may run")
    fallback: Annotated[str, strategy_name("none", excluding="pal", what="fallback strategy")] = Field(
        "few-shot-cot", description="strategy to use when the program fails ('none': no answer)"
    )

    async def forward(self, run: Run, question: str) -> Answer:
        prompt = templates.render("pal/prompt.j2", question=question)
        program = await run.generate(self.turn(prompt, PREFILL, stop=("\nQ:", "\n\n\n")), label="program")
        code = program_from(program.text)
        result = await run.tool(run_program, code, self.timeout_s, label="run")
        answer = number_from(result.value) if result.ok else None
        details = {"program": code, "output": result.output, **logprob_details(program.choices[0])}
        if answer is not None:
            return Answer(answer=answer, text=f"{code}\n\nThe answer is {answer}.", details=details)
        # The failed run stays in the trace (its node's output); the question goes to the fallback.
        reason = f"the program failed: {result.error or result.output}" if not result.ok else f"no number in the result {result.value!r}"
        if program.choices[0].finish_reason == "length":  # else the SyntaxError looks like the model's
            reason = f"the program was cut off at max_tokens ({self.max_tokens} tokens): {reason}"
        if self.fallback == "none":
            return Answer(answer=None, text=code, details={**details, "fallback": "none", "fallback_reason": reason})
        return await fall_back(self, run, question, self.fallback, reason, details)
