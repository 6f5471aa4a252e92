"""Few-shot chain-of-thought (Wei et al. 2022, "Chain-of-Thought Prompting Elicits Reasoning").

k worked exemplars (question, step-by-step solution, "The answer is N.") precede the question;
the model continues in kind. Greedy by default; generation stops at the next "Q:".
"""

from __future__ import annotations

from pydantic import Field

from reasoner.run import Run
from reasoner.strategy import Strategy
from reasoner.types import Answer
from reasoner.strategies.common import answer_from, gsm8k_exemplars, templates


class FewShotCoT(Strategy):
    name = "few-shot-cot"
    summary = "k worked GSM8K exemplars, then the question; the model writes its reasoning (1 call)."

    k: int = Field(8, ge=0, le=8, description="number of exemplars (GSM8K train problems shipped with the package)")

    def prompt(self, question: str) -> str:
        return templates.render("few_shot_cot.j2", exemplars=gsm8k_exemplars()[: self.k], question=question)

    async def forward(self, run: Run, question: str) -> Answer:
        reply = await run.generate(self.request(self.prompt(question), stop=("\nQ:", "\n\n\n")), label="reason")
        return answer_from(reply)
